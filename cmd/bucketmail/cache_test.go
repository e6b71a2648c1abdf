package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bucketmail/bucketmail/internal/blob/fs"
	"github.com/bucketmail/bucketmail/internal/cache"
)

// TestCacheCommands fills a cache, then runs "cache stats" (while the
// cache is open, as under serve, and after) and "cache purge".
func TestCacheCommands(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	inner, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(ctx, cache.Config{Dir: cache.DefaultDir(data)}, inner, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if err := c.Put(ctx, k, strings.NewReader("12345"), 5, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"a", "a", "a", "b"} {
		r, err := c.NewRangeReader(ctx, k, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	want := `cache      ` + filepath.Join(data, "cache") + `
objects    3
bytes      78
hits       4
misses     0
hit ratio  100.0%
evictions  0

reads  objects  bytes
0      1        26
1      1        26
2      0        0
3-4    1        26
`
	run1 := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(ctx, func() {}, append(args, "--data-dir", data), strings.NewReader(""), &out, &errb)
		return out.String(), errb.String(), code
	}
	if out, errs, code := run1("cache", "stats"); code != 0 || out != want {
		t.Fatalf("cache stats (open) = %d %q\n%s\nwant\n%s", code, errs, out, want)
	}
	if _, errs, code := run1("cache", "purge"); code != 1 || !strings.Contains(errs, "is serve running?") {
		t.Fatalf("cache purge while open = %d %q", code, errs)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := run1("cache", "stats"); code != 0 || out != want {
		t.Fatalf("cache stats (closed) = %d %q\n%s", code, errs, out)
	}
	if out, errs, code := run1("cache", "purge"); code != 0 || out != "purged "+filepath.Join(data, "cache")+": 3 objects, 78 bytes\n" {
		t.Fatalf("cache purge = %d %q %q", code, out, errs)
	}
	out, _, _ := run1("cache", "stats")
	if !strings.Contains(out, "objects    0\n") || strings.Contains(out, "reads") {
		t.Fatalf("stats after purge:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(data, "cache", "state")); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run1("cache", "frobnicate"); code != 2 || !strings.Contains(errs, `unknown cache subcommand "frobnicate"`) {
		t.Fatalf("bad subcommand = %d %q", code, errs)
	}
}

// TestCacheStatsConfigDir: stats reads [cache] dir from the config file.
func TestCacheStatsConfigDir(t *testing.T) {
	data, dir := t.TempDir(), t.TempDir()
	c, err := cache.Open(context.Background(), cache.Config{Dir: dir}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "bucketmail.toml")
	if err := os.WriteFile(conf, []byte("data_dir = \""+data+"\"\n[cache]\ndir = \""+dir+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), func() {}, []string{"cache", "stats", "--config", conf}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("cache stats = %d %q", code, errb.String())
	}
	if first, _, _ := strings.Cut(out.String(), "\n"); first != "cache      "+dir {
		t.Fatalf("first line %q, want the [cache] dir %s", first, dir)
	}
}
