// Package blobtest is the conformance suite every blob.Store must pass.
//
// An implementation's test calls
//
//	blobtest.Run(t, func(t *testing.T) blob.Store { return newEmptyStore(t) })
//
// The factory is called once per subtest and must return an empty store
// (a fresh directory, bucket or key prefix); it should register its own
// cleanup with t.Cleanup. The suite asserts the contracts in the blob
// package doc, including the error contracts (ErrNotFound from the open,
// ErrInvalidKey before any storage is touched, ErrSizeMismatch and
// cancellation leaving nothing behind). Its keys follow the key-scheme
// rule of package blob: no key is another key followed by "/" and more,
// which stores on file-backed servers (versitygw posix) cannot hold.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
)

// Run runs the suite. newStore returns an empty store for one subtest.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"PutGet", testPutGet},
		{"Large", testLarge},
		{"Range", testRange},
		{"Metadata", testMetadata},
		{"MetadataLimits", testMetadataLimits},
		{"InvalidKeys", testInvalidKeys},
		{"NotFound", testNotFound},
		{"SizeMismatch", testSizeMismatch},
		{"ReaderError", testReaderError},
		{"Overwrite", testOverwrite},
		{"OverwriteAtomic", testOverwriteAtomic},
		{"List", testList},
		{"ListStop", testListStop},
		{"Concurrent", testConcurrent},
		{"CancelPut", testCancelPut},
		{"Delete", testDelete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

func put(t *testing.T, s blob.Store, key string, data []byte, meta blob.Metadata) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), meta); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func get(t *testing.T, s blob.Store, key string, off, n int64) []byte {
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
	return b.Bytes()
}

// keys lists every key in s under prefix.
func keys(t *testing.T, s blob.Store, prefix string) []string {
	t.Helper()
	out := []string{}
	err := s.List(context.Background(), prefix, func(a blob.Attrs) error {
		out = append(out, a.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}

func assertEmpty(t *testing.T, s blob.Store) {
	t.Helper()
	if k := keys(t, s, ""); len(k) != 0 {
		t.Fatalf("store not empty: %q", k)
	}
}

func assertNotFound(t *testing.T, s blob.Store, key string) {
	t.Helper()
	if _, err := s.Stat(context.Background(), key); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat(%q) = %v, want ErrNotFound", key, err)
	}
}

// gen is a deterministic byte stream of n bytes (xorshift), so large
// objects need no large buffer.
type gen struct {
	n, state uint64
}

func newGen(n int64, seed uint64) *gen { return &gen{n: uint64(n), state: seed | 1} }

func (g *gen) Read(p []byte) (int, error) {
	if g.n == 0 {
		return 0, io.EOF
	}
	if uint64(len(p)) > g.n {
		p = p[:g.n]
	}
	for i := range p {
		g.state ^= g.state << 13
		g.state ^= g.state >> 7
		g.state ^= g.state << 17
		p[i] = byte(g.state >> 32)
	}
	g.n -= uint64(len(p))
	return len(p), nil
}

// short formats b for a failure message: at most 64 bytes, and the length.
func short(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q... (%d bytes)", b[:64], len(b))
}

func allBytes() []byte {
	b := make([]byte, 512)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func testPutGet(t *testing.T, s blob.Store) {
	objs := []struct {
		key  string
		data []byte
	}{
		{"empty", nil},
		{"one", []byte("x")},
		{"all-bytes", allBytes()},
		{"crlf", []byte("Subject: hi\r\n\r\nbody\r\n.\r\nFrom x\n")},
		{"a", []byte("key a")},
		{"a.b/c", []byte("key a.b/c")},
		{"a.b/c+/d", []byte("key a.b/c+/d")},
		{"x9/01HZY3K5Q8W2M7V0A1B2C3D4E5", []byte("ulid-like")},
		{"Mixed.Case_=+-/s", []byte("all key bytes")},
	}
	for _, o := range objs {
		put(t, s, o.key, o.data, nil)
	}
	for _, o := range objs {
		got := get(t, s, o.key, 0, -1)
		if !bytes.Equal(got, o.data) {
			t.Errorf("Get(%q) = %s, want %s", o.key, short(got), short(o.data))
		}
		a, err := s.Stat(context.Background(), o.key)
		if err != nil {
			t.Fatalf("Stat(%q): %v", o.key, err)
		}
		if a.Key != o.key || a.Size != int64(len(o.data)) {
			t.Errorf("Stat(%q) = key %q size %d, want size %d", o.key, a.Key, a.Size, len(o.data))
		}
		if d := time.Since(a.ModTime); d < -time.Minute || d > 10*time.Minute {
			t.Errorf("Stat(%q).ModTime = %v, not near now", o.key, a.ModTime)
		}
		if len(a.Meta) != 0 {
			t.Errorf("Stat(%q).Meta = %v, want empty", o.key, a.Meta)
		}
	}
}

func testLarge(t *testing.T, s blob.Store) {
	const size = 5<<20 + 12345
	if err := s.Put(context.Background(), "big/object", newGen(size, 42), size, blob.Metadata{"k": "v"}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	want := sha256.New()
	io.Copy(want, newGen(size, 42))
	r, err := s.NewRangeReader(context.Background(), "big/object", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := sha256.New()
	n, err := io.Copy(got, r)
	if err != nil || n != size {
		t.Fatalf("read %d bytes, err %v; want %d", n, err, size)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("content differs from what was put")
	}
	// A range deep inside the object.
	const off, ln = 3<<20 + 7, 70000
	g := newGen(size, 42)
	io.CopyN(io.Discard, g, off)
	wantRange := make([]byte, ln)
	io.ReadFull(g, wantRange)
	if gotRange := get(t, s, "big/object", off, ln); !bytes.Equal(gotRange, wantRange) {
		t.Fatalf("range %d+%d differs", off, ln)
	}
}

func testRange(t *testing.T, s blob.Store) {
	data := []byte("0123456789abcdefghij") // 20 bytes
	put(t, s, "r", data, nil)
	put(t, s, "r0", nil, nil)
	cases := []struct {
		key      string
		off, len int64
		want     string
	}{
		{"r", 0, -1, string(data)},
		{"r", 0, 20, string(data)},
		{"r", 0, 1, "0"},
		{"r", 0, 0, ""},
		{"r", 5, 3, "567"},
		{"r", 5, -1, "56789abcdefghij"},
		{"r", 19, 1, "j"},
		{"r", 19, -1, "j"},
		{"r", 15, 100, "fghij"},
		{"r", 20, -1, ""},
		{"r", 20, 5, ""},
		{"r", 25, 5, ""},
		{"r", 1000, -1, ""},
		{"r0", 0, -1, ""},
		{"r0", 0, 10, ""},
		{"r0", 3, -1, ""},
	}
	for _, c := range cases {
		if got := get(t, s, c.key, c.off, c.len); string(got) != c.want {
			t.Errorf("range(%q, %d, %d) = %s, want %q", c.key, c.off, c.len, short(got), c.want)
		}
	}
}

func testMetadata(t *testing.T, s blob.Store) {
	meta := blob.Metadata{
		"account":      "user@example.org",
		"internaldate": "2024-01-02T03:04:05Z",
		"x-odd":        " leading space, = and : and ~!@#$%^&*()[]{}\"'\\ ",
		"empty":        "",
		"0-digits-9":   "1",
	}
	put(t, s, "m/1", []byte("body"), meta)
	a, err := s.Stat(context.Background(), "m/1")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Meta) != len(meta) {
		t.Fatalf("Meta = %q, want %q", a.Meta, meta)
	}
	for k, v := range meta {
		if got, ok := a.Meta[k]; !ok || got != v {
			t.Errorf("Meta[%q] = %q (present %v), want %q", k, got, ok, v)
		}
	}
	// Overwrite replaces the whole set.
	put(t, s, "m/1", []byte("body2"), blob.Metadata{"new": "x"})
	a, err = s.Stat(context.Background(), "m/1")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Meta) != 1 || a.Meta["new"] != "x" {
		t.Fatalf("after overwrite Meta = %q, want map[new:x]", a.Meta)
	}
}

func testMetadataLimits(t *testing.T, s blob.Store) {
	exact := blob.Metadata{"k": strings.Repeat("v", blob.MaxMetadataBytes-1)}
	put(t, s, "exact", []byte("x"), exact)
	a, err := s.Stat(context.Background(), "exact")
	if err != nil {
		t.Fatal(err)
	}
	if a.Meta["k"] != exact["k"] {
		t.Fatalf("2048-byte metadata did not round-trip: %d bytes", len(a.Meta["k"]))
	}
	// Many entries adding up to the limit. (Not hundreds: each is an HTTP
	// header for S3, and servers cap the header section at about 8 KiB.)
	many := blob.Metadata{}
	for i := range 32 {
		many[fmt.Sprintf("k%02d", i)] = strings.Repeat(string(rune('a'+i%26)), 61) // 64 bytes per entry
	}
	put(t, s, "many", []byte("x"), many)
	if a, err := s.Stat(context.Background(), "many"); err != nil || fmt.Sprint(a.Meta) != fmt.Sprint(many) {
		t.Fatalf("Stat(many) = %v, %v; want %v", a.Meta, err, many)
	}
	bad := []blob.Metadata{
		{"k": strings.Repeat("v", blob.MaxMetadataBytes)}, // 2049 bytes
		{"a": strings.Repeat("v", 1500), "b": strings.Repeat("v", 600)},
		{"k": "caf\xc3\xa9"},
		{"k": "line\nbreak"},
		{"k": "tab\t"},
		{"k": "del\x7f"},
		{"Upper": "v"},
		{"under_score": "v"},
		{"sp ace": "v"},
		{"": "v"},
		{"\xc3\xa9": "v"},
	}
	for i, m := range bad {
		key := fmt.Sprintf("bad%d", i)
		err := s.Put(context.Background(), key, strings.NewReader("x"), 1, m)
		if !errors.Is(err, blob.ErrInvalidMetadata) {
			t.Errorf("Put with metadata %d = %v, want ErrInvalidMetadata", i, err)
		}
		assertNotFound(t, s, key)
	}
	// A rejected overwrite leaves the old object.
	err = s.Put(context.Background(), "exact", strings.NewReader("y"), 1, bad[0])
	if !errors.Is(err, blob.ErrInvalidMetadata) {
		t.Fatalf("overwrite with bad metadata = %v", err)
	}
	if got := get(t, s, "exact", 0, -1); string(got) != "x" {
		t.Fatalf("old object changed to %s", short(got))
	}
}

// InvalidKeys are keys every Store must reject with ErrInvalidKey.
var InvalidKeys = []string{
	"",
	"/",
	"/a",
	"a/",
	"a//b",
	".",
	"..",
	"../a",
	"a/..",
	"a/../b",
	"a/../../etc/passwd",
	"./a",
	"a/./b",
	"/etc/passwd",
	"a\x00b",
	"a\x00",
	"a b",
	"a\\b",
	"..\\a",
	"a\nb",
	"caf\xc3\xa9",
	"a#",
	"a~",
	"a:b",
	"%2e%2e/a",
	strings.Repeat("a", blob.MaxSegment+1),
	strings.Repeat("a/", blob.MaxKeyBytes/2) + "a", // 1025 bytes
}

func testInvalidKeys(t *testing.T, s blob.Store) {
	ctx := context.Background()
	for _, k := range InvalidKeys {
		if err := s.Put(ctx, k, strings.NewReader("x"), 1, nil); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", k, err)
		}
		if r, err := s.NewRangeReader(ctx, k, 0, -1); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("NewRangeReader(%q) = %v, want ErrInvalidKey", k, err)
			if r != nil {
				r.Close()
			}
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
	assertEmpty(t, s)
	// The longest valid key works.
	long := strings.Repeat(strings.Repeat("k", blob.MaxSegment)+"/", 5)[:blob.MaxKeyBytes]
	long = strings.TrimSuffix(long, "/")
	put(t, s, long, []byte("long"), nil)
	if got := get(t, s, long, 0, -1); string(got) != "long" {
		t.Fatalf("long key read %q", got)
	}
	// Prefixes that cannot match a valid key list nothing and do not fail.
	for _, p := range []string{"../", "/", "a//", "\x00", "../../etc/"} {
		if k := keys(t, s, p); len(k) != 0 {
			t.Errorf("List(%q) = %q, want nothing", p, k)
		}
	}
}

func testNotFound(t *testing.T, s blob.Store) {
	ctx := context.Background()
	put(t, s, "present/x", []byte("x"), nil)
	for _, k := range []string{"missing", "present/missing", "present/x/deeper", "present", "nodir/x"} {
		r, err := s.NewRangeReader(ctx, k, 0, -1)
		if !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("NewRangeReader(%q) = %v, want ErrNotFound from the open", k, err)
		}
		if r != nil {
			t.Errorf("NewRangeReader(%q) returned a reader with the error", k)
			r.Close()
		}
		if _, err := s.NewRangeReader(ctx, k, 5, 10); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("NewRangeReader(%q, 5, 10) = %v, want ErrNotFound", k, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Stat(%q) = %v, want ErrNotFound", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Delete(%q) = %v, want ErrNotFound", k, err)
		}
	}
	if got := keys(t, s, ""); len(got) != 1 || got[0] != "present/x" {
		t.Fatalf("List = %q, want [present/x]", got)
	}
}

func testSizeMismatch(t *testing.T, s blob.Store) {
	ctx := context.Background()
	cases := []struct {
		data string
		size int64
	}{
		{"short", 10},
		{"longer than said", 5},
		{"", 1},
		{"x", 0},
		{"x", -1},
	}
	for i, c := range cases {
		key := fmt.Sprintf("sm/%d", i)
		err := s.Put(ctx, key, strings.NewReader(c.data), c.size, nil)
		if !errors.Is(err, blob.ErrSizeMismatch) {
			t.Errorf("Put(%q, %d bytes, size %d) = %v, want ErrSizeMismatch", key, len(c.data), c.size, err)
		}
		assertNotFound(t, s, key)
	}
	assertEmpty(t, s)
	// A failed overwrite leaves the old object whole.
	put(t, s, "sm/keep", []byte("old content"), blob.Metadata{"v": "1"})
	err := s.Put(ctx, "sm/keep", strings.NewReader("new"), 100, blob.Metadata{"v": "2"})
	if !errors.Is(err, blob.ErrSizeMismatch) {
		t.Fatalf("overwrite = %v, want ErrSizeMismatch", err)
	}
	if got := get(t, s, "sm/keep", 0, -1); string(got) != "old content" {
		t.Fatalf("old object = %s, want it unchanged", short(got))
	}
	if a, _ := s.Stat(ctx, "sm/keep"); a.Meta["v"] != "1" {
		t.Fatalf("old metadata = %q", a.Meta)
	}
	if k := keys(t, s, ""); len(k) != 1 {
		t.Fatalf("List = %q, want [sm/keep]", k)
	}
}

var errBroken = errors.New("blobtest: broken reader")

type brokenReader struct{ n int }

func (b *brokenReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errBroken
	}
	if len(p) > b.n {
		p = p[:b.n]
	}
	for i := range p {
		p[i] = 'b'
	}
	b.n -= len(p)
	return len(p), nil
}

func testReaderError(t *testing.T, s blob.Store) {
	err := s.Put(context.Background(), "re/x", &brokenReader{n: 100 << 10}, 1<<20, nil)
	if !errors.Is(err, errBroken) {
		t.Fatalf("Put with failing reader = %v, want the reader's error", err)
	}
	assertEmpty(t, s)
}

func testOverwrite(t *testing.T, s blob.Store) {
	put(t, s, "o", []byte("first version, longer"), blob.Metadata{"v": "1"})
	put(t, s, "o", []byte("second"), blob.Metadata{"v": "2"})
	if got := get(t, s, "o", 0, -1); string(got) != "second" {
		t.Fatalf("after overwrite = %s", short(got))
	}
	a, err := s.Stat(context.Background(), "o")
	if err != nil || a.Size != 6 || a.Meta["v"] != "2" {
		t.Fatalf("Stat = %+v, %v", a, err)
	}
	if k := keys(t, s, ""); len(k) != 1 || k[0] != "o" {
		t.Fatalf("List = %q", k)
	}
}

// testOverwriteAtomic overwrites one key with two contents of different
// size while readers check that every read sees one of them whole.
func testOverwriteAtomic(t *testing.T, s blob.Store) {
	ctx := context.Background()
	a := bytes.Repeat([]byte("a"), 200<<10)
	b := bytes.Repeat([]byte("b"), 300<<10+7)
	put(t, s, "atomic", a, nil)
	const writes = 20
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 16)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := range writes {
			d := a
			if i%2 == 0 {
				d = b
			}
			if err := s.Put(ctx, "atomic", bytes.NewReader(d), int64(len(d)), nil); err != nil {
				errs <- err
				return
			}
		}
	}()
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				r, err := s.NewRangeReader(ctx, "atomic", 0, -1)
				if err != nil {
					errs <- fmt.Errorf("open during overwrite: %w", err)
					return
				}
				var buf bytes.Buffer
				_, err = io.Copy(&buf, r)
				r.Close()
				if err != nil {
					errs <- err
					return
				}
				if got := buf.Bytes(); !bytes.Equal(got, a) && !bytes.Equal(got, b) {
					errs <- fmt.Errorf("read %d bytes that are neither version whole", len(got))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := get(t, s, "atomic", 0, -1); !bytes.Equal(got, a) {
		t.Fatalf("final version has %d bytes, want the last one written (%d)", len(got), len(a))
	}
}

func testList(t *testing.T, s blob.Store) {
	all := []string{
		"a", "a+", "a-c", "a.b", "a0", "aa", "c/b", "c/b+/c", "c/bc-", "c/bc/d",
		"b/1", "b/2/3", "B", "Z/z", "_x", "x=y",
	}
	for i, k := range all {
		put(t, s, k, bytes.Repeat([]byte("x"), i), nil)
	}
	sorted := append([]string(nil), all...)
	sort.Strings(sorted)
	for _, prefix := range []string{"", "a", "a/", "c", "c/", "c/b", "c/b/", "c/bc", "c/bc/d", "c/bc/d/", "a-", "b", "b/", "b/2", "B", "cc", "zz", "c/x", "A"} {
		var want []string
		for _, k := range sorted {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		var got []string
		err := s.List(context.Background(), prefix, func(a blob.Attrs) error {
			got = append(got, a.Key)
			i := -1
			for j, k := range all {
				if k == a.Key {
					i = j
				}
			}
			if i < 0 || a.Size != int64(i) {
				t.Errorf("List(%q): %q has size %d, want %d", prefix, a.Key, a.Size, i)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func testListStop(t *testing.T, s blob.Store) {
	for _, k := range []string{"l/1", "l/2", "l/3"} {
		put(t, s, k, []byte(k), nil)
	}
	stop := errors.New("stop")
	var seen []string
	err := s.List(context.Background(), "l/", func(a blob.Attrs) error {
		seen = append(seen, a.Key)
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List = %v, want the callback's error", err)
	}
	if strings.Join(seen, " ") != "l/1 l/2" {
		t.Fatalf("List visited %q before stopping", seen)
	}
}

func testConcurrent(t *testing.T, s blob.Store) {
	ctx := context.Background()
	const workers, per = 8, 12
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				key := fmt.Sprintf("c%d/%02d", w%3, w*per+i) // shared directories
				data := []byte(strings.Repeat(key, 100+i))
				if err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data)), blob.Metadata{"k": key}); err != nil {
					errs <- err
					return
				}
				r, err := s.NewRangeReader(ctx, key, 0, -1)
				if err != nil {
					errs <- err
					return
				}
				var buf bytes.Buffer
				io.Copy(&buf, r)
				r.Close()
				if !bytes.Equal(buf.Bytes(), data) {
					errs <- fmt.Errorf("%s: read back %d bytes, want %d", key, buf.Len(), len(data))
				}
				if i%3 == 0 { // deletes race with puts into the same directory
					if err := s.Delete(ctx, key); err != nil {
						errs <- err
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
	if n := len(keys(t, s, "")); n != workers*per*2/3 {
		t.Fatalf("List has %d keys, want %d", n, workers*per*2/3)
	}
}

// cancelReader cancels its context after n bytes and then keeps going.
type cancelReader struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	if len(p) > 32<<10 {
		p = p[:32<<10]
	}
	for i := range p {
		p[i] = 'c'
	}
	c.n -= len(p)
	return len(p), nil
}

func testCancelPut(t *testing.T, s blob.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := s.Put(ctx, "cancel/mid", &cancelReader{n: 256 << 10, cancel: cancel}, 4<<20, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put cancelled mid-stream = %v, want context.Canceled", err)
	}
	assertNotFound(t, s, "cancel/mid")

	err = s.Put(ctx, "cancel/before", strings.NewReader("x"), 1, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with cancelled ctx = %v, want context.Canceled", err)
	}
	assertNotFound(t, s, "cancel/before")
	assertEmpty(t, s)

	// Cancelling an overwrite keeps the old object.
	put(t, s, "cancel/keep", []byte("old"), nil)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	err = s.Put(ctx2, "cancel/keep", &cancelReader{n: 64 << 10, cancel: cancel2}, 1<<20, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled overwrite = %v", err)
	}
	if got := get(t, s, "cancel/keep", 0, -1); string(got) != "old" {
		t.Fatalf("old object = %s, want it unchanged", short(got))
	}
}

func testDelete(t *testing.T, s blob.Store) {
	ctx := context.Background()
	put(t, s, "d/x/1", []byte("1"), nil)
	put(t, s, "d/x/2", []byte("2"), nil)
	put(t, s, "d+", []byte("d"), nil)
	if err := s.Delete(ctx, "d/x/1"); err != nil {
		t.Fatal(err)
	}
	assertNotFound(t, s, "d/x/1")
	if err := s.Delete(ctx, "d/x/1"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
	if got := keys(t, s, ""); strings.Join(got, " ") != "d+ d/x/2" {
		t.Fatalf("List = %q", got)
	}
	// An open reader keeps working after Delete where the backend allows
	// it; at least it must not turn the delete into an error.
	r, err := s.NewRangeReader(ctx, "d/x/2", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "d/x/2"); err != nil {
		t.Fatalf("Delete with an open reader: %v", err)
	}
	r.Close()
	if err := s.Delete(ctx, "d+"); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s)
	// The key can be used again.
	put(t, s, "d/x/2", []byte("again"), nil)
	if got := get(t, s, "d/x/2", 0, -1); string(got) != "again" {
		t.Fatalf("re-put = %s", short(got))
	}
}
