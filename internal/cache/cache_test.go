package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/blob/blobtest"
	"github.com/bucketmail/bucketmail/internal/blob/fs"
	"github.com/bucketmail/bucketmail/internal/osfile"
)

// counting is a real store that records the reads it is asked for.
type counting struct {
	blob.Store
	mu    sync.Mutex
	reads []readCall
	gate  chan struct{} // if set, NewRangeReader waits for it
}

type readCall struct {
	key            string
	offset, length int64
}

func (c *counting) NewRangeReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	c.mu.Lock()
	c.reads = append(c.reads, readCall{key, offset, length})
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return c.Store.NewRangeReader(ctx, key, offset, length)
}

func (c *counting) calls() []readCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]readCall(nil), c.reads...)
}

func newInner(t *testing.T) *counting {
	t.Helper()
	s, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &counting{Store: s}
}

func openCache(t *testing.T, cfg Config, inner blob.Store) *Cache {
	t.Helper()
	c, err := Open(context.Background(), cfg, inner, nil)
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readAll(t *testing.T, s blob.Store, key string, off, n int64) string {
	t.Helper()
	r, err := s.NewRangeReader(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("NewRangeReader(%q, %d, %d): %v", key, off, n, err)
	}
	defer r.Close()
	var b bytes.Buffer
	if _, err := io.Copy(&b, r); err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b.String()
}

func putString(t *testing.T, s blob.Store, key, data string) {
	t.Helper()
	if err := s.Put(context.Background(), key, strings.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

// onlyReader hides every method but Read (no Seek: the tee path).
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestConformance(t *testing.T) {
	for _, policy := range []string{PolicyLRU, PolicyCount} {
		t.Run(policy, func(t *testing.T) {
			blobtest.Run(t, func(t *testing.T) blob.Store {
				return openCache(t, Config{Dir: t.TempDir(), Policy: policy}, newInner(t))
			})
		})
	}
	// A cap smaller than some objects: those go uncached.
	t.Run("small", func(t *testing.T) {
		blobtest.Run(t, func(t *testing.T) blob.Store {
			return openCache(t, Config{Dir: t.TempDir(), MaxBytes: 4096}, newInner(t))
		})
	})
}

func TestConfigValidate(t *testing.T) {
	err := Config{MaxBytes: -1, Policy: "mru"}.Validate()
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Validate = %v, want ErrConfig", err)
	}
	for _, want := range []string{"dir is empty", "max bytes -1", `policy "mru"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %q, missing %q", err, want)
		}
	}
	if err := (Config{Dir: "x"}).Validate(); err != nil {
		t.Fatalf("Validate(zero but Dir) = %v", err)
	}
	if got := (Config{}).maxBytes(); got != 1<<30 {
		t.Fatalf("default max = %d", got)
	}
}

func TestSecondReadNoInnerRequest(t *testing.T) {
	inner := newInner(t)
	putString(t, inner, "m/1", "hello world") // not through the cache: cold
	c := openCache(t, Config{Dir: t.TempDir()}, inner)
	if got := readAll(t, c, "m/1", 0, -1); got != "hello world" {
		t.Fatalf("first read = %q", got)
	}
	if got := readAll(t, c, "m/1", 0, -1); got != "hello world" {
		t.Fatalf("second read = %q", got)
	}
	if got := readAll(t, c, "m/1", 6, 3); got != "wor" {
		t.Fatalf("ranged hit = %q", got)
	}
	if got, want := inner.calls(), []readCall{{"m/1", 0, -1}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("inner reads = %v, want %v", got, want)
	}
	s := c.Stats()
	if s.Hits != 2 || s.Misses != 1 || s.Objects != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestWriteThrough(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    func(string) io.Reader
	}{
		{"seeker", func(s string) io.Reader { return strings.NewReader(s) }},
		{"section", func(s string) io.Reader { return io.NewSectionReader(strings.NewReader("xx"+s), 2, int64(len(s))) }},
		{"tee", func(s string) io.Reader { return onlyReader{strings.NewReader(s)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := newInner(t)
			c := openCache(t, Config{Dir: t.TempDir()}, inner)
			data := strings.Repeat("0123456789", 1000)
			if err := c.Put(context.Background(), "k", tc.r(data), int64(len(data)), blob.Metadata{"a": "b"}); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, c, "k", 0, -1); got != data {
				t.Fatalf("read %d bytes, want %d", len(got), len(data))
			}
			if got := readAll(t, inner.Store, "k", 0, -1); got != data {
				t.Fatalf("inner has %d bytes, want %d", len(got), len(data))
			}
			if n := len(inner.calls()); n != 0 {
				t.Fatalf("inner reads after write-through = %d, want 0", n)
			}
			if s := c.Stats(); s.Hits != 1 || s.Misses != 0 {
				t.Fatalf("stats = %+v", s)
			}
		})
	}
}

func TestPutSizeMismatchNotCached(t *testing.T) {
	inner := newInner(t)
	c := openCache(t, Config{Dir: t.TempDir()}, inner)
	putString(t, c, "k", "old")
	err := c.Put(context.Background(), "k", onlyReader{strings.NewReader("toolong")}, 3, nil)
	if !errors.Is(err, blob.ErrSizeMismatch) {
		t.Fatalf("Put = %v, want ErrSizeMismatch", err)
	}
	if got := readAll(t, c, "k", 0, -1); got != "old" {
		t.Fatalf("read = %q, want old", got)
	}
	if n := len(inner.calls()); n != 1 {
		t.Fatalf("inner reads = %d, want 1 (the failed Put dropped the local copy)", n)
	}
}

func TestRangedMissAsksForRange(t *testing.T) {
	inner := newInner(t)
	data := strings.Repeat("abcdefghij", 10000) // 100000 bytes
	putString(t, inner, "big", data)
	c := openCache(t, Config{Dir: t.TempDir()}, inner)
	if got := readAll(t, c, "big", 5000, 1200); got != data[5000:6200] {
		t.Fatalf("ranged read = %d bytes", len(got))
	}
	if got, want := inner.calls(), []readCall{{"big", 5000, 1200}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("inner reads = %v, want %v", got, want)
	}
	if s := c.Stats(); s.Misses != 1 || s.Objects != 0 || s.Bytes != 0 {
		t.Fatalf("stats = %+v: a range miss is counted, not cached", s)
	}
}

func TestInterruptedFillLeavesNothing(t *testing.T) {
	inner := newInner(t)
	data := strings.Repeat("x", 100000)
	putString(t, inner, "k", data)
	dir := t.TempDir()
	c := openCache(t, Config{Dir: dir}, inner)
	r, err := c.NewRangeReader(context.Background(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if s := c.Stats(); s.Objects != 0 || s.Bytes != 0 {
		t.Fatalf("stats after a cut fill = %+v", s)
	}
	if n := countFiles(t, dir); n != 0 {
		t.Fatalf("%d object or temp files left", n)
	}
	readAll(t, c, "k", 0, -1)
	if s := c.Stats(); s.Objects != 1 || s.Bytes != int64(len(header("k", nil))+len(data)) {
		t.Fatalf("stats after a whole fill = %+v", s)
	}
}

// countFiles counts files under dir/objects and dir/tmp.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	for _, sub := range []string{objectsDir, tmpDir} {
		filepath.WalkDir(filepath.Join(dir, sub), func(_ string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
	}
	return n
}

func TestDeleteRemovesLocal(t *testing.T) {
	inner := newInner(t)
	dir := t.TempDir()
	c := openCache(t, Config{Dir: dir}, inner)
	putString(t, c, "k", "data")
	if err := c.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewRangeReader(context.Background(), "k", 0, -1); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("read after delete: %v, want ErrNotFound", err)
	}
	if n := countFiles(t, dir); n != 0 {
		t.Fatalf("%d files left after delete", n)
	}
}

func TestConcurrentMissesOneInnerGet(t *testing.T) {
	for _, n := range []int64{-1, 50000} { // whole, and BODY[] as [0, size)
		t.Run(fmt.Sprint(n), func(t *testing.T) { concurrentMisses(t, n) })
	}
}

func concurrentMisses(t *testing.T, length int64) {
	inner := newInner(t)
	data := strings.Repeat("y", 50000)
	putString(t, inner, "k", data)
	inner.gate = make(chan struct{})
	c := openCache(t, Config{Dir: t.TempDir()}, inner)
	const readers = 8
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.NewRangeReader(context.Background(), "k", 0, length)
			if err != nil {
				errs <- err
				return
			}
			defer r.Close()
			var b bytes.Buffer
			io.Copy(&b, r)
			if b.String() != data {
				errs <- fmt.Errorf("read %d bytes", b.Len())
			}
		}()
	}
	// Wait until the first reader reached the inner store and the others
	// are queued behind its fill, then let it go.
	deadline := time.Now().Add(5 * time.Second)
	for len(inner.calls()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(inner.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(inner.calls()); n != 1 {
		t.Fatalf("inner GETs = %d, want 1", n)
	}
	if s := c.Stats(); s.Hits+s.Misses != readers || s.Misses != 1 {
		t.Fatalf("stats = %+v, want %d reads, 1 miss", s, readers)
	}
}

func TestRestartKeepsCounts(t *testing.T) {
	inner := newInner(t)
	dir := t.TempDir()
	c, err := Open(context.Background(), Config{Dir: dir, Policy: PolicyCount}, inner, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), Config{Dir: dir}, inner, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	putString(t, c, "a", "aaaa")
	putString(t, c, "b", "bbbbbbbb")
	for range 3 {
		readAll(t, c, "a", 0, -1)
	}
	readAll(t, c, "b", 1, 2)
	before := c.Stats()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := openCache(t, Config{Dir: dir, Policy: PolicyCount}, inner)
	after := c2.Stats()
	if fmt.Sprintf("%+v", before) != fmt.Sprintf("%+v", after) {
		t.Fatalf("after restart\n%+v\nwant\n%+v", after, before)
	}
	if after.Hits != 4 || after.Objects != 2 || after.Histogram[1].Objects != 1 || after.Histogram[3].Objects != 1 {
		t.Fatalf("stats = %+v", after)
	}
	off, err := ReadStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	off.MaxBytes = after.MaxBytes
	if fmt.Sprintf("%+v", off) != fmt.Sprintf("%+v", after) {
		t.Fatalf("ReadStats\n%+v\nwant\n%+v", off, after)
	}
	if n := len(inner.calls()); n != 0 {
		t.Fatalf("inner reads = %d", n)
	}
	c2.mu.Lock()
	reads, tick := c2.entries["a"].reads, c2.entries["a"].tick
	c2.mu.Unlock()
	if reads != 3 || tick != 5 {
		t.Fatalf("a: reads %d tick %d, want 3 and 5", reads, tick)
	}
}

func TestLostStateRescans(t *testing.T) {
	inner := newInner(t)
	dir := t.TempDir()
	c, err := Open(context.Background(), Config{Dir: dir}, inner, nil)
	if err != nil {
		t.Fatal(err)
	}
	putString(t, c, "a/1", "one")
	putString(t, c, "b/2", "two!")
	c.Close()
	if err := os.Remove(filepath.Join(dir, stateFile)); err != nil {
		t.Fatal(err)
	}
	// A torn file in objects/ is dropped.
	os.WriteFile(filepath.Join(dir, objectsDir, "zz"), []byte("BMCACHE1junk"), 0o600)
	c2 := openCache(t, Config{Dir: dir}, inner)
	if s := c2.Stats(); s.Objects != 2 || s.Hits != 0 {
		t.Fatalf("stats after rescan = %+v", s)
	}
	if got := readAll(t, c2, "b/2", 0, -1); got != "two!" {
		t.Fatalf("read = %q", got)
	}
	if n := len(inner.calls()); n != 0 {
		t.Fatalf("inner reads = %d, want 0", n)
	}
	if n := countFiles(t, dir); n != 2 {
		t.Fatalf("files = %d, want 2", n)
	}
}

func TestPurge(t *testing.T) {
	inner := newInner(t)
	dir := t.TempDir()
	c := openCache(t, Config{Dir: dir}, inner)
	putString(t, c, "a", "one")
	readAll(t, c, "a", 0, -1)
	if err := c.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Objects != 0 || s.Bytes != 0 || s.Hits != 0 || len(s.Histogram) != 0 {
		t.Fatalf("stats after purge = %+v", s)
	}
	if n := countFiles(t, dir); n != 0 {
		t.Fatalf("files after purge = %d", n)
	}
	if got := readAll(t, c, "a", 0, -1); got != "one" {
		t.Fatalf("read after purge = %q", got)
	}
}

func TestLocalFailureNeverFailsPut(t *testing.T) {
	inner := newInner(t)
	dir := t.TempDir()
	c := openCache(t, Config{Dir: dir}, inner)
	if err := os.RemoveAll(filepath.Join(dir, tmpDir)); err != nil {
		t.Fatal(err)
	}
	for _, r := range []io.Reader{strings.NewReader("seek"), onlyReader{strings.NewReader("tees")}} {
		if err := c.Put(context.Background(), "k", r, 4, nil); err != nil {
			t.Fatalf("Put with no temp dir: %v", err)
		}
	}
	if got := readAll(t, inner.Store, "k", 0, -1); got != "tees" {
		t.Fatalf("inner has %q", got)
	}
	if s := c.Stats(); s.Objects != 0 {
		t.Fatalf("stats = %+v, want nothing cached", s)
	}
	// Reads still work, uncached.
	if got := readAll(t, c, "k", 0, -1); got != "tees" {
		t.Fatalf("read = %q", got)
	}
}

// TestPutDuringFill: a fill that began before a Put of the same key does
// not install the old bytes over the new.
func TestPutDuringFill(t *testing.T) {
	inner := newInner(t)
	old := strings.Repeat("o", 10000)
	putString(t, inner, "k", old)
	c := openCache(t, Config{Dir: t.TempDir()}, inner)
	r, err := c.NewRangeReader(context.Background(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	putString(t, c, "k", "new")
	var rest bytes.Buffer
	if _, err := io.Copy(&rest, r); err != nil || rest.Len() != len(old)-100 {
		t.Fatalf("rest of the old read: %d bytes, %v", rest.Len(), err)
	}
	r.Close()
	if got := readAll(t, c, "k", 0, -1); got != "new" {
		t.Fatalf("after put during fill: %d bytes %.10q, want new", len(got), got)
	}
	if s := c.Stats(); s.Objects != 1 || s.Bytes != int64(len(header("k", nil))+3) {
		t.Fatalf("stats = %+v", s)
	}
}

// TestPrefixReads: the IMAP engine reads BODY[] as [0, size) and a header
// as [0, header size). The first fills the cache (one extra byte asked
// proves the object ends there), the second does not.
func TestPrefixReads(t *testing.T) {
	for _, closeEarly := range []bool{false, true} {
		t.Run(fmt.Sprintf("close-after-range=%v", closeEarly), func(t *testing.T) {
			inner := newInner(t)
			data := strings.Repeat("0123456789", 3000)
			putString(t, inner, "k", data)
			dir := t.TempDir()
			c := openCache(t, Config{Dir: dir}, inner)
			get := func(off, n int64) string {
				r, err := c.NewRangeReader(context.Background(), "k", off, n)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				var b bytes.Buffer
				if closeEarly && n >= 0 {
					// io.CopyN stops after n bytes and never sees EOF.
					_, err = io.CopyN(&b, r, n)
				} else {
					_, err = io.Copy(&b, r)
				}
				if err != nil {
					t.Fatal(err)
				}
				return b.String()
			}
			if got := get(0, 100); got != data[:100] {
				t.Fatalf("header read = %q", got)
			}
			if s := c.Stats(); s.Objects != 0 || countFiles(t, dir) != 0 {
				t.Fatalf("a header read cached something: %+v", s)
			}
			if got := get(0, int64(len(data))); got != data {
				t.Fatalf("body read: %d bytes", len(got))
			}
			if got := get(0, int64(len(data))); got != data {
				t.Fatalf("second body read: %d bytes", len(got))
			}
			if got := get(0, 100); got != data[:100] {
				t.Fatalf("header hit = %q", got)
			}
			want := []readCall{{"k", 0, 101}, {"k", 0, int64(len(data)) + 1}}
			if got := inner.calls(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("inner reads = %v, want %v", got, want)
			}
			if s := c.Stats(); s.Objects != 1 || s.Hits != 2 || s.Misses != 2 {
				t.Fatalf("stats = %+v", s)
			}
		})
	}
}

// TestStress mixes Put, whole and ranged reads and Delete of a few keys
// under a small cap; every read returns the key's bytes or ErrNotFound,
// and afterwards the accounting matches the files.
func TestStress(t *testing.T) {
	inner := newInner(t)
	dir := t.TempDir()
	c := openCache(t, Config{Dir: dir, MaxBytes: 20000, Policy: PolicyCount}, inner)
	content := func(k int) string { return strings.Repeat(fmt.Sprintf("<%d>", k), 300+k*97) }
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				k := (w*7 + i*13) % 10
				key := fmt.Sprintf("s/%d", k)
				want := content(k)
				switch (w + i) % 5 {
				case 0:
					var r io.Reader = strings.NewReader(want)
					if i%2 == 0 {
						r = onlyReader{r}
					}
					if err := c.Put(context.Background(), key, r, int64(len(want)), nil); err != nil {
						errs <- err
						return
					}
				case 1:
					if err := c.Delete(context.Background(), key); err != nil && !errors.Is(err, blob.ErrNotFound) {
						errs <- err
						return
					}
				default:
					off, n := int64(0), int64(-1)
					switch i % 3 {
					case 1:
						n = int64(len(want))
					case 2:
						off, n = 5, 50
					}
					r, err := c.NewRangeReader(context.Background(), key, off, n)
					if errors.Is(err, blob.ErrNotFound) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					var b bytes.Buffer
					_, err = io.Copy(&b, r)
					r.Close()
					exp := want[off:]
					if n >= 0 {
						exp = exp[:n]
					}
					if err == nil && b.String() != exp {
						err = fmt.Errorf("%s [%d,%d): got %d bytes, want %d", key, off, n, b.Len(), len(exp))
					}
					if err != nil && !errors.Is(err, blob.ErrNotFound) {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	describe(t, c, "") // cap and accounting
	if n, s := countFiles(t, dir), c.Stats(); n != s.Objects {
		t.Fatalf("%d files, %d objects", n, s.Objects)
	}
}

// TestMachineRestartDropsUnlisted: object files installed after the last
// state write are rescanned on the same boot but deleted after a restart
// of the machine (they were never fsynced one by one); listed ones stay.
func TestMachineRestartDropsUnlisted(t *testing.T) {
	if osfile.BootID() == "" {
		t.Skip("no boot id here: every installed file is fsynced")
	}
	for _, restarted := range []bool{false, true} {
		t.Run(fmt.Sprintf("restarted=%v", restarted), func(t *testing.T) {
			inner := newInner(t)
			dir := t.TempDir()
			c, err := Open(context.Background(), Config{Dir: dir}, inner, nil)
			if err != nil {
				t.Fatal(err)
			}
			putString(t, c, "a/1", "one")
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			listed, err := os.ReadFile(filepath.Join(dir, stateFile))
			if err != nil {
				t.Fatal(err)
			}
			putString(t, c, "b/2", "two!")
			c.Close()
			// As if the process had died before its next state write.
			if err := os.WriteFile(filepath.Join(dir, stateFile), listed, 0o600); err != nil {
				t.Fatal(err)
			}
			if restarted {
				os.WriteFile(filepath.Join(dir, bootFile), []byte("00000000-0000-0000-0000-000000000000\n"), 0o600)
			}
			c2 := openCache(t, Config{Dir: dir}, inner)
			want := 2
			if restarted {
				want = 1
			}
			if s := c2.Stats(); s.Objects != want {
				t.Fatalf("objects after reopen = %d, want %d", s.Objects, want)
			}
			if n := countFiles(t, dir); n != want {
				t.Fatalf("files = %d, want %d", n, want)
			}
			if got := readAll(t, c2, "a/1", 0, -1); got != "one" {
				t.Fatalf("read a/1 = %q", got)
			}
			if n := len(inner.calls()); n != 0 {
				t.Fatalf("inner reads for a listed object = %d, want 0", n)
			}
			if got := readAll(t, c2, "b/2", 0, -1); got != "two!" {
				t.Fatalf("read b/2 = %q", got)
			}
			wantInner := 0
			if restarted {
				wantInner = 1 // dropped, read through again
			}
			if n := len(inner.calls()); n != wantInner {
				t.Fatalf("inner reads for b/2 = %d, want %d", n, wantInner)
			}
			boot, _ := os.ReadFile(filepath.Join(dir, bootFile))
			if strings.TrimSpace(string(boot)) != osfile.BootID() {
				t.Fatalf("boot file = %q, want this boot's id", boot)
			}
		})
	}
}
