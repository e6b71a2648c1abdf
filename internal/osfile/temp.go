package osfile

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
)

// Temp is a file being written that gets its final name only once it is
// whole: an unnamed inode (OpenUnnamed) where the filesystem has them,
// else a named temporary file.
type Temp struct {
	*os.File
	prefix string // of temporary names, in the directory it was made in
	name   string // the named temporary file; "" for an unnamed inode
	linked bool
}

// CreateTemp opens a Temp in dir. It tries an unnamed inode while
// *named is false and sets *named when the filesystem has none; a named
// file is dir/prefix followed by random characters (os.CreateTemp).
func CreateTemp(dir, prefix string, named *atomic.Bool) (*Temp, error) {
	if !named.Load() {
		f, ok, err := OpenUnnamed(dir)
		if ok {
			if err != nil {
				return nil, err
			}
			return &Temp{File: f, prefix: prefix}, nil
		}
		named.Store(true)
	}
	f, err := os.CreateTemp(dir, prefix+"*")
	if err != nil {
		return nil, err
	}
	return &Temp{File: f, prefix: prefix, name: f.Name()}, nil
}

// Named reports whether t is a named temporary file.
func (t *Temp) Named() bool { return t.name != "" }

// Link gives t the name path, atomically replacing a file already there
// (path must be on t's filesystem). An unnamed inode is linked (linkat(2));
// if path exists it is linked at a temporary name beside path and renamed
// over it. A named file is renamed. The caller has written and, if it
// wants durability, fsynced t; Link does not close t. An error matching
// fs.ErrNotExist means path's directory is missing: the caller may make it
// and call Link again.
func (t *Temp) Link(path string) error {
	if t.linked {
		return errors.New("osfile: temp file linked twice")
	}
	if t.name != "" {
		if err := os.Rename(t.name, path); err != nil {
			return err
		}
		t.linked = true
		return nil
	}
	err := LinkUnnamed(t.File, path)
	if errors.Is(err, iofs.ErrExist) {
		err = t.replace(path)
	}
	if err == nil {
		t.linked = true
	}
	return err
}

// replace links the unnamed inode at a fresh temporary name beside path
// and renames that over path.
func (t *Temp) replace(path string) error {
	dir := filepath.Dir(path)
	for range 100 {
		tmp := filepath.Join(dir, t.prefix+strconv.FormatUint(rand.Uint64(), 36))
		err := LinkUnnamed(t.File, tmp)
		if errors.Is(err, iofs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			os.Remove(tmp)
			return err
		}
		return nil
	}
	return fmt.Errorf("osfile: %s: no free temporary name", dir)
}

// Discard closes t and, unless Link gave it its name, removes it (an
// unnamed inode needs nothing removed: closing frees it).
func (t *Temp) Discard() {
	t.Close()
	if t.name != "" && !t.linked {
		os.Remove(t.name)
	}
}
