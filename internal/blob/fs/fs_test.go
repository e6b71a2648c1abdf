package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/blob/blobtest"
	"github.com/bucketmail/bucketmail/internal/osfile"
)

// newStore returns a store in a fresh directory and checks, when the
// test ends, that no temporary file was left behind and nothing was
// written outside the root.
func newStore(t *testing.T) blob.Store {
	t.Helper()
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		filepath.WalkDir(parent, func(p string, d iofs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if strings.HasPrefix(d.Name(), tmpPrefix) {
				t.Errorf("temporary file left behind: %s", p)
			}
			if p != parent && p != root && !strings.HasPrefix(p, root+string(filepath.Separator)) {
				t.Errorf("file outside the root: %s", p)
			}
			return nil
		})
	})
	return s
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, newStore)
}

// newNamedStore is newStore with unnamed inodes turned off, as on a
// filesystem without O_TMPFILE.
func newNamedStore(t *testing.T) blob.Store {
	s := newStore(t).(*Store)
	s.named.Store(true)
	return s
}

func TestConformanceNamed(t *testing.T) {
	blobtest.Run(t, newNamedStore)
}

// TestUnnamedUsed checks that on Linux (ext4 or tmpfs under the test's
// temporary directory) Put takes the unnamed-inode path and keeps it.
func TestUnnamedUsed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("O_TMPFILE is Linux only")
	}
	s := newStore(t).(*Store)
	for i := range 3 {
		if err := s.Put(context.Background(), fmt.Sprintf("a/%d", i), strings.NewReader("x"), 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if s.named.Load() {
		t.Fatal("store fell back to named temporary files")
	}
}

// dirRemover removes dir on its first Read: a concurrent Delete that
// emptied the directory while a Put wrote its (unnamed) temporary file.
type dirRemover struct {
	dir  string
	data io.Reader
	done bool
	err  error
}

func (r *dirRemover) Read(p []byte) (int, error) {
	if !r.done {
		r.done = true
		r.err = os.Remove(r.dir)
	}
	return r.data.Read(p)
}

func TestPutDirectoryRemovedMeanwhile(t *testing.T) {
	for _, named := range []bool{false, true} {
		t.Run(fmt.Sprintf("named=%v", named), func(t *testing.T) {
			s := newStore(t).(*Store)
			s.named.Store(named)
			ctx := context.Background()
			r := &dirRemover{dir: filepath.Join(s.Root(), "acct", "msg"), data: strings.NewReader("hello")}
			if err := s.Put(ctx, "acct/msg/1", r, 5, blob.Metadata{"a": "1"}); err != nil {
				t.Fatal(err)
			}
			// A named temp file keeps the directory from being removed;
			// an unnamed inode does not, and Put made it again.
			if named && r.err == nil || !named && r.err != nil {
				t.Fatalf("removing the directory during the Put: %v", r.err)
			}
			rc, err := s.NewRangeReader(ctx, "acct/msg/1", 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != "hello" {
				t.Fatalf("object = %q, want hello", got)
			}
		})
	}
}

// BenchmarkPut measures one durable Put of an 8 KB object into a
// directory that already holds objects, with unnamed inodes and with
// named temporary files.
func BenchmarkPut(b *testing.B) {
	data := strings.Repeat("x", 8000)
	for _, named := range []bool{false, true} {
		b.Run(fmt.Sprintf("named=%v", named), func(b *testing.B) {
			s, err := New(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			s.named.Store(named)
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i++
				if err := s.Put(ctx, fmt.Sprintf("acct/msg/%08d", i), strings.NewReader(data), int64(len(data)), blob.Metadata{"v": "1"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestLayout(t *testing.T) {
	s := newStore(t).(*Store)
	ctx := context.Background()
	if err := s.Put(ctx, "ab/cd", strings.NewReader("hello"), 5, blob.Metadata{"b": "2", "a": "1"}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(s.Root(), "ab", "cd#"))
	if err != nil {
		t.Fatal(err)
	}
	want := "BMBLOB1\n\x00\x00\x00\x08a=1\nb=2\nhello"
	if string(raw) != want {
		t.Fatalf("object file = %q, want %q", raw, want)
	}
	// Delete removes the directories it emptied, not the root.
	if err := s.Delete(ctx, "ab/cd"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "ab")); !errors.Is(err, iofs.ErrNotExist) {
		t.Fatalf("empty directory kept: %v", err)
	}
	if _, err := os.Stat(s.Root()); err != nil {
		t.Fatalf("root removed: %v", err)
	}
}

func TestCorruptAndStrays(t *testing.T) {
	s := newStore(t).(*Store)
	ctx := context.Background()
	root := s.Root()
	// A stray temp file, a foreign file and a truncated object.
	os.WriteFile(filepath.Join(root, "#tmp-123"), []byte("partial"), 0o600)
	os.WriteFile(filepath.Join(root, "README"), []byte("not an object"), 0o600)
	os.WriteFile(filepath.Join(root, "bad#"), []byte("BMBL"), 0o600)
	defer os.Remove(filepath.Join(root, "#tmp-123"))
	if _, err := s.Stat(ctx, "bad"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Stat(bad) = %v, want ErrCorrupt", err)
	}
	if _, err := s.Stat(ctx, "README"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat(README) = %v, want ErrNotFound", err)
	}
	err := s.List(ctx, "", func(a blob.Attrs) error { return nil })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("List over a corrupt object = %v, want ErrCorrupt", err)
	}
	os.Remove(filepath.Join(root, "bad#"))
	n := 0
	if err := s.List(ctx, "", func(a blob.Attrs) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("List = %d objects, %v; want 0", n, err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(""); err == nil {
		t.Fatal("New(\"\") succeeded")
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := New(f); err == nil {
		t.Fatal("New on a regular file succeeded")
	}
}

func TestRemoveStaleTemp(t *testing.T) {
	s := newStore(t).(*Store)
	ctx := context.Background()
	if err := s.Put(ctx, "a/b", strings.NewReader("x"), 1, nil); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, p := range []string{"#tmp-1", "a/#tmp-2", "a/#tmp-3"} {
		full := filepath.Join(s.Root(), filepath.FromSlash(p))
		os.WriteFile(full, []byte("partial"), 0o600)
		if p != "a/#tmp-3" {
			os.Chtimes(full, old, old)
		}
	}
	n, err := s.RemoveStaleTemp(ctx, time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("RemoveStaleTemp = %d, %v; want 2", n, err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "a", "#tmp-3")); err != nil {
		t.Fatalf("fresh temp file removed: %v", err)
	}
	os.Remove(filepath.Join(s.Root(), "a", "#tmp-3"))
	if a, err := s.Stat(ctx, "a/b"); err != nil || a.Size != 1 {
		t.Fatalf("object harmed: %+v %v", a, err)
	}
}

func TestNilReader(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.Put(ctx, "empty", nil, 0, nil); err != nil {
		t.Fatalf("Put(nil reader, 0) = %v", err)
	}
	if err := s.Put(ctx, "short", nil, 1, nil); !errors.Is(err, blob.ErrSizeMismatch) {
		t.Fatalf("Put(nil reader, 1) = %v, want ErrSizeMismatch", err)
	}
}

// BenchmarkRead measures opening and reading a 16 KiB object.
func BenchmarkRead(b *testing.B) {
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := strings.Repeat("x", 16<<10)
	ctx := context.Background()
	if err := s.Put(ctx, "ab/obj", strings.NewReader(data), int64(len(data)), nil); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r, err := s.NewRangeReader(ctx, "ab/obj", 0, -1)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

// BenchmarkPutParallel: concurrent deliveries share the fsync cost.
func BenchmarkPutParallel(b *testing.B) {
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := strings.Repeat("x", 16<<10)
	ctx := context.Background()
	var n atomic.Int64
	b.SetBytes(int64(len(data)))
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			key := fmt.Sprintf("%02x/%08d", i%256, i)
			if err := s.Put(ctx, key, strings.NewReader(data), int64(len(data)), nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestPublishGivesUp: when the object's directory keeps being missing
// (here a dangling symlink, which mkdirs takes for an existing entry),
// publish returns the link error after its retries, never success
// without an object.
func TestPublishGivesUp(t *testing.T) {
	for _, named := range []bool{false, true} {
		t.Run(fmt.Sprintf("named=%v", named), func(t *testing.T) {
			s := newStore(t).(*Store)
			s.named.Store(named)
			dir := filepath.Join(s.Root(), "acct")
			if err := os.Symlink(filepath.Join(t.TempDir(), "gone"), dir); err != nil {
				t.Fatal(err)
			}
			tmp, err := osfile.CreateTemp(s.Root(), tmpPrefix, &s.named)
			if err != nil {
				t.Fatal(err)
			}
			defer tmp.Discard()
			err = s.publish(tmp, dir, filepath.Join(dir, "obj#"))
			if !errors.Is(err, iofs.ErrNotExist) {
				t.Fatalf("publish into a vanished directory = %v, want ErrNotExist", err)
			}
		})
	}
}
