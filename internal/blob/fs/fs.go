// Package fs is a blob.Store on the local filesystem: the embedded default.
//
// Layout under the root directory: a key "a/b/c" is stored in the file
// root/a/b/c# ('#' is not a key byte, so object files never collide with
// the directories that hold longer keys: "a" and "a/b" can both exist, as
// in S3). Temporary files are root/.../#tmp-* and are never listed; a crash
// may leave one behind (safe to delete when no Put is running).
//
// Each object file is self-describing, so an object is never visible
// without its metadata and an overwrite swaps both at once:
//
//	offset 0   8 bytes  magic "BMBLOB1\n"
//	offset 8   4 bytes  big-endian uint32 n: length of the metadata section
//	offset 12  n bytes  metadata, one "key=value\n" line per entry, keys sorted
//	offset 12+n         the object's bytes
//
// Put writes a temporary file in the target directory (on Linux an
// unnamed O_TMPFILE inode, which a crash frees by itself), fsyncs it,
// gives it the object's name (link(2), or rename(2) over an existing
// object) and fsyncs the directory (and every directory it had to
// create), so a successful Put survives a crash. A crash during Put
// leaves no object (at most a named temporary file, where O_TMPFILE is
// missing or an existing object was being replaced); a Put that fails
// after the link (closing the file or the directory fsync failed) may
// leave the object in place while returning the error. Readers that opened the old file keep reading it whole.
// Delete removes the object file and then any directories left empty.
package fs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/osfile"
)

const (
	magic       = "BMBLOB1\n"
	headerFixed = len(magic) + 4
	// maxMetaSection bounds the metadata section read from disk; a valid
	// set encodes to at most 2*MaxMetadataBytes (one '=' and one '\n' per
	// entry, each entry at least one key byte).
	maxMetaSection = 3 * blob.MaxMetadataBytes
	objSuffix      = "#"
	tmpPrefix      = "#tmp-"
	copyBuf        = 256 << 10
)

// ErrCorrupt is returned when an object file does not have the layout in
// the package doc.
var ErrCorrupt = errors.New("blob/fs: corrupt object file")

// Store is a filesystem blob.Store. It is safe for concurrent use, also by
// several processes on the same root.
type Store struct {
	root string
	// named is set when unnamed inodes (O_TMPFILE) are not available
	// under root: Put then writes named temporary files.
	named atomic.Bool
}

var _ blob.Store = (*Store)(nil)

// New returns a Store rooted at dir, creating the directory (mode 0700) if
// it does not exist.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("blob/fs: empty root directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("blob/fs: root %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("blob/fs: root %s: %w", abs, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("blob/fs: root %s: %w", abs, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("blob/fs: root %s: not a directory", abs)
	}
	s := &Store{root: abs}
	s.named.Store(!osfile.UnnamedUsable())
	return s, nil
}

// Root returns the absolute root directory.
func (s *Store) Root() string { return s.root }

// objPath returns the object file path of a key that passed ValidateKey.
func (s *Store) objPath(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key)) + objSuffix
}

// wrap adds the "blob: op key:" prefix and maps OS errors to the blob
// sentinels: a missing file or directory is ErrNotFound, a full disk or
// quota is ErrUnavailable (delivery should answer a temporary failure).
func wrap(op, key string, err error) error {
	switch {
	case errors.Is(err, iofs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("blob: %s %s: %w: %w", op, key, blob.ErrNotFound, err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("blob: %s %s: %w: %w", op, key, blob.ErrUnavailable, err)
	}
	return fmt.Errorf("blob: %s %s: %w", op, key, err)
}

// encodeMeta returns the header (magic, length, metadata section).
func encodeMeta(meta blob.Metadata) []byte {
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sec bytes.Buffer
	for _, k := range keys {
		sec.WriteString(k)
		sec.WriteByte('=')
		sec.WriteString(meta[k])
		sec.WriteByte('\n')
	}
	h := make([]byte, headerFixed, headerFixed+sec.Len())
	copy(h, magic)
	binary.BigEndian.PutUint32(h[len(magic):], uint32(sec.Len()))
	return append(h, sec.Bytes()...)
}

// readHeader reads the header of an open object file and returns the
// data offset and the metadata.
func readHeader(f *os.File) (int64, blob.Metadata, error) {
	var fixed [headerFixed]byte
	if _, err := f.ReadAt(fixed[:], 0); err != nil {
		return 0, nil, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	if string(fixed[:len(magic)]) != magic {
		return 0, nil, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	n := binary.BigEndian.Uint32(fixed[len(magic):])
	if n > maxMetaSection {
		return 0, nil, fmt.Errorf("%w: metadata section of %d bytes", ErrCorrupt, n)
	}
	sec := make([]byte, n)
	if _, err := f.ReadAt(sec, int64(headerFixed)); err != nil {
		return 0, nil, fmt.Errorf("%w: metadata: %v", ErrCorrupt, err)
	}
	var meta blob.Metadata
	if n > 0 {
		meta = blob.Metadata{}
	}
	for len(sec) > 0 {
		nl := bytes.IndexByte(sec, '\n')
		if nl < 0 {
			return 0, nil, fmt.Errorf("%w: unterminated metadata line", ErrCorrupt)
		}
		line := sec[:nl]
		sec = sec[nl+1:]
		eq := bytes.IndexByte(line, '=')
		if eq <= 0 {
			return 0, nil, fmt.Errorf("%w: metadata line %q", ErrCorrupt, line)
		}
		meta[string(line[:eq])] = string(line[eq+1:])
	}
	return int64(headerFixed) + int64(n), meta, nil
}

// ctxReader fails reads once ctx is done, so a cancelled Put stops at the
// next chunk.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// eofReader is the reader of a nil io.Reader: empty.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// mkdirs creates dir and its missing parents under the root, fsyncing
// the parent of each directory it creates so the new entries are durable.
func (s *Store) mkdirs(dir string) error {
	if dir == s.root {
		return nil
	}
	st, err := os.Stat(dir)
	if err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s: not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, iofs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if err := s.mkdirs(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, iofs.ErrExist) {
			return nil
		}
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// createTemp makes dir and the temporary file of a Put in it (an
// unnamed inode where the filesystem has them). A concurrent Delete may
// remove the freshly made, still empty directory before the temp file
// exists; retry a few times.
func (s *Store) createTemp(dir string) (*osfile.Temp, error) {
	var err error
	for range 10 {
		if err = s.mkdirs(dir); err == nil {
			var t *osfile.Temp
			if t, err = osfile.CreateTemp(dir, tmpPrefix, &s.named); err == nil {
				return t, nil
			}
		}
		if !errors.Is(err, iofs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, err
}

// publish gives the written, fsynced temporary file the object's name.
// An unnamed inode leaves its directory empty, so a concurrent Delete may
// remove the directory meanwhile: it is made again, up to 10 times; then
// the last link error is returned (never nil without a link).
func (s *Store) publish(t *osfile.Temp, dir, path string) error {
	err := t.Link(path)
	for range 10 {
		if !errors.Is(err, iofs.ErrNotExist) {
			break
		}
		// A Delete may also remove a parent between mkdirs' stat and
		// its mkdir: that too is retried.
		if merr := s.mkdirs(dir); merr != nil && !errors.Is(merr, iofs.ErrNotExist) {
			err = merr
			break
		}
		err = t.Link(path)
	}
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	return err
}

// Put implements blob.Store. See the package doc for the write protocol.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.Metadata) (err error) {
	if err := blob.ValidateKey(key); err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	if err := blob.ValidateMetadata(meta); err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	if size < 0 {
		return fmt.Errorf("blob: put %s: %w: negative size %d", key, blob.ErrSizeMismatch, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	if r == nil {
		r = eofReader{}
	}
	path := s.objPath(key)
	dir := filepath.Dir(path)
	f, err := s.createTemp(dir)
	if err != nil {
		return wrap("put", key, err)
	}
	defer func() {
		if err != nil {
			f.Discard()
		}
	}()
	if _, err := f.Write(encodeMeta(meta)); err != nil {
		return wrap("put", key, err)
	}
	cr := ctxReader{ctx: ctx, r: r}
	n, err := io.CopyBuffer(f, io.LimitReader(cr, size), make([]byte, copyBuf))
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("blob: put %s: %w", key, ctx.Err())
		}
		return wrap("put", key, err)
	}
	if n != size {
		return fmt.Errorf("blob: put %s: %w: read %d bytes, want %d", key, blob.ErrSizeMismatch, n, size)
	}
	// The reader must be exhausted: one more byte means it was too long.
	var one [1]byte
	for tries := 0; ; tries++ {
		if tries == 100 {
			return wrap("put", key, io.ErrNoProgress)
		}
		m, rerr := cr.Read(one[:])
		if m > 0 {
			return fmt.Errorf("blob: put %s: %w: more than %d bytes", key, blob.ErrSizeMismatch, size)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("blob: put %s: %w", key, ctx.Err())
			}
			return wrap("put", key, rerr)
		}
	}
	if err := f.Sync(); err != nil {
		return wrap("put", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	if err := s.publish(f, dir, path); err != nil {
		return wrap("put", key, err)
	}
	// From here the object is in place; a failed directory sync means we
	// cannot promise durability, so report the error (the caller will not
	// index the object; an orphan is harmless).
	if err := syncDir(dir); err != nil {
		return wrap("put", key, err)
	}
	return nil
}

// rangeReader is an io.SectionReader over the open object file.
type rangeReader struct {
	*io.SectionReader
	f *os.File
}

func (r *rangeReader) Close() error { return r.f.Close() }

// open validates key and opens its object file, returning the file, its
// data offset, size and metadata.
func (s *Store) open(op, key string) (*os.File, int64, int64, blob.Metadata, os.FileInfo, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, 0, 0, nil, nil, fmt.Errorf("blob: %s %s: %w", op, key, err)
	}
	f, err := os.Open(s.objPath(key))
	if err != nil {
		return nil, 0, 0, nil, nil, wrap(op, key, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, 0, nil, nil, wrap(op, key, err)
	}
	off, meta, err := readHeader(f)
	if err != nil {
		f.Close()
		return nil, 0, 0, nil, nil, fmt.Errorf("blob: %s %s: %w", op, key, err)
	}
	size := st.Size() - off
	if size < 0 {
		f.Close()
		return nil, 0, 0, nil, nil, fmt.Errorf("blob: %s %s: %w: truncated", op, key, ErrCorrupt)
	}
	return f, off, size, meta, st, nil
}

// NewRangeReader implements blob.Store.
func (s *Store) NewRangeReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blob: read %s: %w", key, err)
	}
	if offset < 0 {
		return nil, fmt.Errorf("blob: read %s: negative offset %d", key, offset)
	}
	f, off, size, _, _, err := s.open("read", key)
	if err != nil {
		return nil, err
	}
	if offset > size {
		offset = size
	}
	if length < 0 || offset+length > size {
		length = size - offset
	}
	return &rangeReader{SectionReader: io.NewSectionReader(f, off+offset, length), f: f}, nil
}

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, key string) (blob.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return blob.Attrs{}, fmt.Errorf("blob: stat %s: %w", key, err)
	}
	f, _, size, meta, st, err := s.open("stat", key)
	if err != nil {
		return blob.Attrs{}, err
	}
	f.Close()
	return blob.Attrs{Key: key, Size: size, ModTime: st.ModTime(), Meta: meta}, nil
}

// Delete implements blob.Store. Directories left empty are removed
// (best effort).
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return fmt.Errorf("blob: delete %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: delete %s: %w", key, err)
	}
	path := s.objPath(key)
	if err := os.Remove(path); err != nil {
		return wrap("delete", key, err)
	}
	dir := filepath.Dir(path)
	// A concurrent Delete may already have removed the emptied directory
	// (and synced its parent): nothing left to sync then.
	if err := syncDir(dir); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return wrap("delete", key, err)
	}
	for dir != s.root && strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		if os.Remove(dir) != nil { // not empty (or gone): stop
			break
		}
		dir = filepath.Dir(dir)
		_ = syncDir(dir)
	}
	return nil
}

// List implements blob.Store. It walks only the directory named by the
// part of prefix up to its last '/', sorting each directory so that keys
// come out in lexical byte order. Attrs carry Size, ModTime and Meta.
func (s *Store) List(ctx context.Context, prefix string, fn func(blob.Attrs) error) error {
	dirKey := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dirKey = prefix[:i]
		if blob.ValidateKey(dirKey) != nil {
			return nil // no valid key can have this prefix
		}
	}
	dir := s.root
	if dirKey != "" {
		dir = filepath.Join(s.root, filepath.FromSlash(dirKey))
	}
	return s.walk(ctx, dir, dirKey, prefix, fn)
}

type entry struct {
	sortKey string // key segment, with "/" appended for directories
	name    string // file name
	dir     bool
}

// walk lists dir, whose key prefix is dirKey ("" for the root).
func (s *Store) walk(ctx context.Context, dir, dirKey, prefix string, fn func(blob.Attrs) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: list %s: %w", prefix, err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) && dir != s.root {
			return nil // removed by a concurrent Delete, or never there
		}
		return fmt.Errorf("blob: list %s: %w", prefix, err)
	}
	ents := make([]entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		switch {
		case de.IsDir():
			if blob.ValidateKey(name) == nil {
				ents = append(ents, entry{sortKey: name + "/", name: name, dir: true})
			}
		case de.Type().IsRegular() && strings.HasSuffix(name, objSuffix) && !strings.HasPrefix(name, tmpPrefix):
			seg := strings.TrimSuffix(name, objSuffix)
			if blob.ValidateKey(seg) == nil {
				ents = append(ents, entry{sortKey: seg, name: name})
			}
		}
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].sortKey < ents[j].sortKey })
	for _, e := range ents {
		full := e.sortKey
		if dirKey != "" {
			full = dirKey + "/" + e.sortKey
		}
		if e.dir {
			// Descend only if some key below can start with prefix.
			if strings.HasPrefix(full, prefix) || strings.HasPrefix(prefix, full) {
				if err := s.walk(ctx, filepath.Join(dir, e.name), strings.TrimSuffix(full, "/"), prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(full, prefix) {
			continue
		}
		a, err := s.Stat(ctx, full)
		if errors.Is(err, blob.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		if err := fn(a); err != nil {
			return err
		}
	}
	return nil
}

// RemoveStaleTemp deletes temporary files (left by a crash during Put)
// whose modification time is older than olderThan, and returns how many
// it removed. A Put in progress keeps writing its temp file, so an age of
// an hour or more is safe while the store is in use; call it at start-up
// or from fsck.
func (s *Store) RemoveStaleTemp(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	err := filepath.WalkDir(s.root, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				return nil // removed by a concurrent Delete
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			return nil
		}
		if err := os.Remove(p); err == nil {
			removed++
		}
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("blob/fs: remove stale temp files: %w", err)
	}
	return removed, nil
}
