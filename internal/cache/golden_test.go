package cache

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.txt with the current output")

// TestGolden replays the scripts in testdata (datadriven style: a command,
// "----", the expected output, a blank line) and checks after every step
// that the cap holds and the accounted bytes are the files on disk.
//
// Commands:
//
//	open policy=P max=N [age=N]  a fresh cache and inner store (fs)
//	inner KEY SIZE               put into the inner store only (a cold object)
//	put KEY SIZE                 put through the cache
//	read KEY [OFFSET LENGTH]     read the whole object or a range
//	delete KEY
//	restart                      Close and Open the same directory
//
// The output is the counters and the cached objects in eviction order,
// next victim first.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no testdata/*.txt")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runGolden(t, file) })
	}
}

type goldenBlock struct {
	pre  []string // comments and blank lines before the command
	cmd  string
	want string
}

func parseGolden(t *testing.T, file string) []goldenBlock {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var blocks []goldenBlock
	var cur goldenBlock
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if l == "" || strings.HasPrefix(l, "#") {
			cur.pre = append(cur.pre, l)
			continue
		}
		cur.cmd = l
		i++
		if i >= len(lines) || lines[i] != "----" {
			t.Fatalf("%s:%d: want ---- after %q", file, i+1, l)
		}
		var want []string
		for i++; i < len(lines) && lines[i] != ""; i++ {
			want = append(want, lines[i])
		}
		cur.want = strings.Join(want, "\n")
		blocks = append(blocks, cur)
		cur = goldenBlock{}
	}
	return blocks
}

func runGolden(t *testing.T, file string) {
	blocks := parseGolden(t, file)
	ctx := context.Background()
	var (
		c     *Cache
		inner *counting
		cfg   Config
		age   uint64
	)
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	reopen := func() {
		var err error
		if c, err = Open(ctx, cfg, inner, nil); err != nil {
			t.Fatal(err)
		}
		c.now = func() time.Time { return fixed }
		if age > 0 {
			c.agePeriod = age
		}
	}
	t.Cleanup(func() {
		if c != nil {
			c.Close()
		}
	})
	var out strings.Builder
	for _, blk := range blocks {
		f := strings.Fields(blk.cmd)
		arg := func(i int) int64 {
			n, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				t.Fatalf("%q: %v", blk.cmd, err)
			}
			return n
		}
		var note string
		switch f[0] {
		case "open":
			if c != nil {
				c.Close()
			}
			cfg, age = Config{Dir: t.TempDir()}, 0
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "policy":
					cfg.Policy = v
				case "max":
					cfg.MaxBytes, _ = strconv.ParseInt(v, 10, 64)
				case "age":
					age, _ = strconv.ParseUint(v, 10, 64)
				}
			}
			inner = newInner(t)
			reopen()
		case "inner":
			putString(t, inner.Store, f[1], strings.Repeat("i", int(arg(2))))
		case "put":
			putString(t, c, f[1], strings.Repeat("p", int(arg(2))))
		case "read":
			before := len(inner.calls())
			if len(f) == 4 {
				got := readAll(t, c, f[1], arg(2), arg(3))
				note = fmt.Sprintf("read %d bytes", len(got))
			} else {
				got := readAll(t, c, f[1], 0, -1)
				note = fmt.Sprintf("read %d bytes", len(got))
			}
			if calls := inner.calls(); len(calls) > before {
				last := calls[len(calls)-1]
				note += fmt.Sprintf(", inner GET %d+%d", last.offset, last.length)
			}
		case "delete":
			if err := c.Delete(ctx, f[1]); err != nil {
				note = err.Error()
			}
		case "restart":
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			reopen()
		default:
			t.Fatalf("unknown command %q", blk.cmd)
		}
		got := describe(t, c, note)
		for _, p := range blk.pre {
			out.WriteString(p + "\n")
		}
		fmt.Fprintf(&out, "%s\n----\n%s\n\n", blk.cmd, got)
		if !*rewrite && got != blk.want {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", file, blk.cmd, got, blk.want)
		}
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// describe prints the counters and the eviction order, and checks the
// invariants: bytes <= cap, bytes == the sum of the object files.
func describe(t *testing.T, c *Cache, note string) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bytes > c.max {
		t.Errorf("bytes %d over the cap %d", c.bytes, c.max)
	}
	var onDisk int64
	filepath.WalkDir(filepath.Join(c.cfg.Dir, objectsDir), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				onDisk += info.Size()
			}
		}
		return nil
	})
	if onDisk != c.bytes {
		t.Errorf("accounted bytes %d, object files hold %d", c.bytes, onDisk)
	}
	var b strings.Builder
	if note != "" {
		b.WriteString(note + "\n")
	}
	fmt.Fprintf(&b, "bytes=%d/%d hits=%d misses=%d evictions=%d epoch=%d", c.bytes, c.max, c.hits, c.misses, c.evictions, c.epoch)
	var order []*entry
	for el := c.lru.Back(); el != nil; el = el.Prev() {
		order = append(order, el.Value.(*entry))
	}
	if c.policy == PolicyCount {
		sort.SliceStable(order, func(i, j int) bool { return c.decayed(order[i]) < c.decayed(order[j]) })
	}
	for _, e := range order {
		fmt.Fprintf(&b, "\n  %s size=%d reads=%d score=%d", e.key, e.size(), e.reads, c.decayed(e))
	}
	return b.String()
}
