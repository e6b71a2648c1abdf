// Package cache is a size-bounded read cache on local disk in front of a
// blob.Store (DESIGN §4): write-through on Put, read-through on a miss, read
// counts and last access per object, eviction by LRU or by read count with
// ageing, and state kept across restarts. A *Cache is itself a blob.Store.
//
// The cache is derived state: every object it holds is also in the inner
// store, and the whole directory may be deleted while the server is
// stopped. It assumes the objects it caches change only through it (or not
// at all, as message objects do): an overwrite or delete done on the inner
// store behind its back is not noticed.
//
// Layout of Config.Dir:
//
//	lock           flock(2)ed by the open Cache: one process at a time
//	state          index: counters and one line per cached object (see state.go)
//	boot           the kernel boot id at the last Open (see state.go)
//	objects/xx/H   cached objects; H is the hex SHA-256 of the key, xx its first byte
//	tmp/           fills in progress; emptied at Open
//
// An object file is self-describing, so a lost state file is rebuilt by a
// scan (with read counts back at zero):
//
//	offset 0    8 bytes  magic "BMCACHE1"
//	offset 8    4 bytes  big-endian uint32 n: length of the header
//	offset 12   n bytes  JSON header {"k": key, "m": metadata or absent}
//	offset 12+n          the object's bytes
//
// Byte accounting counts whole files (header included); the cap bounds
// the installed objects, never exceeded: room is made by evicting before
// a new object is admitted, and an object larger than the cap is not
// cached. Fills in progress live in tmp/ and are not counted until they
// are installed.
//
// Reads. A read is one successful NewRangeReader call. A hit is served
// from the local file (whole or any range) and adds one to the object's
// read count. A miss of a read from offset 0 (length < 0, or length n as
// the IMAP engine asks for BODY[] with the indexed size) may be the whole
// object: it reads [0, n+1) from the inner store (one byte more, to learn
// whether the object ends at n) and streams it to the caller while teeing
// it into tmp/. When the inner store's reader ends at or before n, the
// object is whole: the file is linked in (see state.go for fsync), when the caller
// reads to the end or closes after the n bytes it asked for. A fill cut
// short, failing, or finding more bytes (a header read) leaves nothing.
// Concurrent offset-0 misses of one key share one inner GET when the
// first one fills: the others wait for it and are then served from the
// local copy (they count as hits; they wait as long as the first caller
// takes to read). A miss at another offset is passed to
// the inner store as the same ranged read and is not cached (a part FETCH
// costs about the part's size).
//
// Writes. Put writes the inner store (durability is the inner store's)
// and keeps a local copy: read with ReadAt while the inner store uploads
// when r is an io.ReaderAt and an io.Seeker, from a second pass after the
// upload when r is only an io.Seeker (so the inner store can still
// retry), else from a tee of the single pass. The copy is installed only
// once the inner Put succeeded, before Put returns. A failing local copy never fails Put; it only leaves
// the object uncached. Delete deletes in the inner store, then locally.
// Stat and List pass through (the metadata of objects written through the
// cache is in the object file header, for a later local Stat).
//
// Eviction. Policy "lru" evicts the least recently accessed object (a Put
// is an access: new mail is usually read within seconds). Policy "count"
// evicts the object with the lowest aged score, oldest access first among
// equals: a read adds one to the score, a Put starts it at one, and every
// 1024 reads (all objects together) every score is halved, so mail
// read often long ago gives way to mail read lately. Choosing a "count"
// victim scans every entry (O(objects) per eviction).
package cache

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/osfile"
)

// Defaults and names.
const (
	// DefaultMaxBytes is the byte cap when Config.MaxBytes is 0: 1 GiB.
	DefaultMaxBytes int64 = 1 << 30
	// DirName is the cache directory's name inside a data directory.
	DirName = "cache"

	PolicyLRU   = "lru"
	PolicyCount = "count"

	magic        = "BMCACHE1"
	stateFile    = "state"
	bootFile     = "boot"
	lockFile     = "lock"
	objectsDir   = "objects"
	tmpDir       = "tmp"
	flushEvery   = 10 * time.Second
	defaultAgeOf = 1024 // reads between two halvings of every score
)

// Errors.
var (
	// ErrConfig: Config.Validate found a problem.
	ErrConfig = errors.New("cache: bad config")
	// ErrLocked: another process has the cache directory open.
	ErrLocked = errors.New("cache: directory in use by another process")
	// ErrClosed: the cache was closed.
	ErrClosed = errors.New("cache: closed")
)

// DefaultDir returns the cache directory of a data directory.
func DefaultDir(dataDir string) string { return filepath.Join(dataDir, DirName) }

// Config configures a Cache. The zero value of each field is its default.
type Config struct {
	// Dir holds the cache (see the package doc); required. Created if
	// missing. Use DefaultDir(dataDir) for the usual place.
	Dir string
	// MaxBytes caps the bytes of cached object files; 0 means
	// DefaultMaxBytes. Lowering it evicts at the next Open.
	MaxBytes int64
	// Policy is "lru" (default when empty) or "count" (read count with
	// ageing).
	Policy string
}

// Validate reports every problem with c at once; the error wraps ErrConfig.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, fmt.Errorf("%w: dir is empty", ErrConfig))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("%w: max bytes %d < 0", ErrConfig, c.MaxBytes))
	}
	switch c.Policy {
	case "", PolicyLRU, PolicyCount:
	default:
		errs = append(errs, fmt.Errorf("%w: policy %q: want %q or %q", ErrConfig, c.Policy, PolicyLRU, PolicyCount))
	}
	return errors.Join(errs...)
}

func (c Config) maxBytes() int64 {
	if c.MaxBytes == 0 {
		return DefaultMaxBytes
	}
	return c.MaxBytes
}

func (c Config) policy() string {
	if c.Policy == "" {
		return PolicyLRU
	}
	return c.Policy
}

// entry is one cached object. Guarded by Cache.mu.
type entry struct {
	key        string
	name       string // hex SHA-256 of key
	body       int64  // offset of the object's bytes in the file
	disk       int64  // file size
	reads      int64  // reads served since the object was cached
	lastAccess time.Time
	tick       uint64 // logical time of the last access (orders LRU)
	score      int64  // aged score ("count" policy), as of epoch
	epoch      uint64
	elem       *list.Element // in Cache.lru, front = most recent
}

func (e *entry) size() int64 { return e.disk - e.body }

// fill is a read-through from offset 0 in progress.
type fill struct {
	done   chan struct{} // closed when the fill ended, installed or not
	stale  bool          // a Put/Delete/Purge happened: do not install
	noFill bool          // the object is not being cached (too big, local error)
}

// Cache is a blob.Store that caches another one on local disk.
type Cache struct {
	cfg       Config
	inner     blob.Store
	log       *slog.Logger
	max       int64
	policy    string
	lockF     *os.File
	now       func() time.Time
	agePeriod uint64
	// bootID is the kernel boot id ("" where unknown). Where it is known,
	// installed files are not fsynced one by one: Flush syncs the
	// filesystem before the state file lists them, and load drops what a
	// crash of the machine may have cut (see load).
	bootID string
	// named is set when unnamed temp inodes are not available.
	named atomic.Bool

	mu        sync.Mutex
	closed    bool
	entries   map[string]*entry
	lru       *list.List
	bytes     int64
	tick      uint64
	epoch     uint64
	ageCount  uint64 // reads since the last halving
	hits      uint64
	misses    uint64
	evictions uint64
	fills     map[string]*fill
	keyLocks  map[string]*keyLock
	dirty     bool
	// listed holds the names in the last state file written: a file
	// installed under such a name again (evicted and cached anew within a
	// flush interval) is fsynced, since after a machine crash load keeps
	// a listed name whose size matches (see state.go).
	listed map[string]struct{}

	stop      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ blob.Store = (*Cache)(nil)

type keyLock struct {
	mu sync.Mutex
	n  int
}

// Open opens (creating if needed) the cache in cfg.Dir in front of inner.
// It loads the state file, drops object files that are missing or do not
// match it, rescans files the state does not know, empties tmp/ and evicts
// down to the cap. Errors: ErrConfig, ErrLocked, or an I/O error on the
// directory. A nil logger discards.
func Open(ctx context.Context, cfg Config, inner blob.Store, logger *slog.Logger) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, objectsDir), filepath.Join(cfg.Dir, tmpDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("cache: open %s: %w", cfg.Dir, err)
		}
	}
	lf, err := lockDir(filepath.Join(cfg.Dir, lockFile))
	if err != nil {
		return nil, err
	}
	c := &Cache{
		cfg:       cfg,
		inner:     inner,
		log:       logger,
		max:       cfg.maxBytes(),
		policy:    cfg.policy(),
		lockF:     lf,
		now:       time.Now,
		agePeriod: defaultAgeOf,
		entries:   make(map[string]*entry),
		lru:       list.New(),
		fills:     make(map[string]*fill),
		keyLocks:  make(map[string]*keyLock),
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
		bootID:    osfile.BootID(),
	}
	c.named.Store(!osfile.UnnamedUsable())
	if err := c.load(ctx); err != nil {
		lf.Close()
		return nil, err
	}
	go c.flusher()
	return c, nil
}

// flusher writes the state file every flushEvery while it is dirty.
func (c *Cache) flusher() {
	defer close(c.stopped)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if err := c.Flush(); err != nil {
				c.log.Warn("cache: write state", "err", err)
			}
		}
	}
}

// Close writes the state file and releases the directory. Readers already
// open keep working; reads after Close fail with ErrClosed, and a fill
// still in progress is not installed.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.stopped
		err := c.Flush()
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.closeErr = errors.Join(err, c.lockF.Close())
	})
	return c.closeErr
}

func objName(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func (c *Cache) objPath(name string) string {
	return filepath.Join(c.cfg.Dir, objectsDir, name[:2], name)
}

// header returns the file header for key: magic, length, JSON.
func header(key string, meta blob.Metadata) []byte {
	j, _ := json.Marshal(struct {
		K string        `json:"k"`
		M blob.Metadata `json:"m,omitempty"`
	}{key, meta})
	b := make([]byte, 0, 12+len(j))
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(j)))
	return append(b, j...)
}

// readHeader reads an object file's header: the key and the body offset.
func readHeader(f *os.File) (key string, body int64, err error) {
	var fixed [12]byte
	if _, err := io.ReadFull(f, fixed[:]); err != nil {
		return "", 0, err
	}
	if string(fixed[:8]) != magic {
		return "", 0, errors.New("bad magic")
	}
	n := binary.BigEndian.Uint32(fixed[8:])
	if n > 64<<10 {
		return "", 0, fmt.Errorf("header of %d bytes", n)
	}
	j := make([]byte, n)
	if _, err := io.ReadFull(f, j); err != nil {
		return "", 0, err
	}
	var h struct {
		K string `json:"k"`
	}
	if err := json.Unmarshal(j, &h); err != nil {
		return "", 0, err
	}
	if blob.ValidateKey(h.K) != nil {
		return "", 0, fmt.Errorf("bad key %q", h.K)
	}
	return h.K, 12 + int64(n), nil
}

// lockKey serialises Put and Delete of one key, so the local copy follows
// the inner store's order of writes.
func (c *Cache) lockKey(key string) func() {
	c.mu.Lock()
	kl := c.keyLocks[key]
	if kl == nil {
		kl = &keyLock{}
		c.keyLocks[key] = kl
	}
	kl.n++
	c.mu.Unlock()
	kl.mu.Lock()
	return func() {
		kl.mu.Unlock()
		c.mu.Lock()
		if kl.n--; kl.n == 0 {
			delete(c.keyLocks, key)
		}
		c.mu.Unlock()
	}
}

// Put stores the object in the inner store, then keeps a local copy (see
// the package doc). Errors are the inner store's; a failing local copy is
// logged at debug level and leaves the object uncached.
func (c *Cache) Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.Metadata) error {
	if err := blob.ValidateKey(key); err != nil {
		return fmt.Errorf("cache: put %q: %w", key, err)
	}
	unlock := c.lockKey(key)
	defer unlock()

	hdr := header(key, meta)
	cacheIt := size >= 0 && int64(len(hdr))+size <= c.max
	var start int64 = -1
	rs, seekable := r.(io.ReadSeeker)
	if seekable && cacheIt {
		if off, err := rs.Seek(0, io.SeekCurrent); err == nil {
			start = off
		}
	}
	var tmp *osfile.Temp
	var tee *safeWriter
	body := r
	// A reader with ReadAt (the spool's bytes.Reader or SectionReader)
	// is copied locally while the inner store uploads it: ReadAt does not
	// move the reader's position, and the local file's creation (the
	// costly part) overlaps the upload instead of following it.
	var local chan localCopy
	if ra, ok := r.(io.ReaderAt); ok && start >= 0 {
		local = make(chan localCopy, 1)
		go func() {
			t, err := c.createTemp(hdr)
			if err == nil {
				var n int64
				n, err = io.Copy(t, io.NewSectionReader(ra, start, size))
				if err == nil && n != size {
					err = fmt.Errorf("local copy read %d bytes, want %d", n, size)
				}
				if err != nil {
					t.Discard()
					t = nil
				}
			}
			local <- localCopy{t, err}
		}()
	}
	if cacheIt && start < 0 {
		var err error
		if tmp, err = c.createTemp(hdr); err != nil {
			c.log.Debug("cache: put: temp file", "key", key, "err", err)
		} else {
			tee = &safeWriter{w: tmp}
			body = io.TeeReader(r, tee)
		}
	}
	abort := func() {
		if tmp != nil {
			tmp.Discard()
		}
	}
	if local != nil {
		defer func() {
			// The local copy is waited for on every path (it reads r).
			if lc, ok := <-local; ok && lc.t != nil {
				lc.t.Discard()
			}
		}()
	}
	if err := c.inner.Put(ctx, key, body, size, meta); err != nil {
		abort()
		c.drop(key) // the inner object may have changed (an ambiguous failure)
		return err
	}
	if !cacheIt {
		c.drop(key)
		return nil
	}
	var err error
	switch {
	case local != nil:
		lc := <-local
		close(local)
		tmp, err = lc.t, lc.err
	case start >= 0:
		if tmp, err = c.createTemp(hdr); err == nil {
			if _, err = rs.Seek(start, io.SeekStart); err == nil {
				var n int64
				n, err = io.Copy(tmp, io.LimitReader(rs, size))
				if err == nil && n != size {
					err = fmt.Errorf("second pass read %d bytes, want %d", n, size)
				}
			}
		}
	case tee != nil:
		err = tee.err
		if err == nil && tee.n != size {
			err = fmt.Errorf("tee wrote %d bytes, want %d", tee.n, size)
		}
	default:
		err = errors.New("no temp file")
	}
	if err != nil {
		c.log.Debug("cache: put: local copy", "key", key, "err", err)
		abort()
		c.drop(key)
		return nil
	}
	c.install(key, tmp, int64(len(hdr)), size, false, nil)
	return nil
}

// localCopy is the result of Put's concurrent local copy.
type localCopy struct {
	t   *osfile.Temp
	err error
}

// safeWriter records the first write error instead of returning it, so a
// failing local copy cannot fail the inner Put it tees.
type safeWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (s *safeWriter) Write(p []byte) (int, error) {
	if s.err == nil {
		n, err := s.w.Write(p)
		s.n += int64(n)
		s.err = err
	}
	return len(p), nil
}

// createTemp creates a temp file in tmp/ holding hdr (an unnamed inode
// where the filesystem has them).
func (c *Cache) createTemp(hdr []byte) (*osfile.Temp, error) {
	f, err := osfile.CreateTemp(filepath.Join(c.cfg.Dir, tmpDir), "fill-", &c.named)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(hdr); err != nil {
		f.Discard()
		return nil, err
	}
	return f, nil
}

// install makes tmp (header of hdrLen bytes, then size bytes) the cached
// copy of key, evicting to make room, and closes it. Where the boot id is
// unknown, or the name is in the last state file written, it fsyncs tmp
// first; else Flush syncs it before the state file lists it. fromRead marks a read-through fill (its read counts as the
// object's first read); f, if not nil, is that fill, and is not installed
// when stale. install always consumes tmp.
func (c *Cache) install(key string, tmp *osfile.Temp, hdrLen, size int64, fromRead bool, f *fill) {
	name := objName(key)
	c.mu.Lock()
	_, listed := c.listed[name]
	c.mu.Unlock()
	if c.bootID == "" || listed {
		if err := tmp.Sync(); err != nil {
			c.log.Debug("cache: install", "key", key, "err", err)
			tmp.Discard()
			return
		}
	}
	path := c.objPath(name)
	disk := hdrLen + size

	c.mu.Lock()
	defer c.mu.Unlock()
	defer tmp.Discard()
	if c.closed || (f != nil && f.stale) || disk > c.max {
		return
	}
	if !fromRead {
		if fl := c.fills[key]; fl != nil {
			fl.stale = true
		}
	}
	if old := c.entries[key]; old != nil {
		c.removeLocked(old)
	}
	for c.bytes+disk > c.max {
		v := c.victimLocked()
		if v == nil {
			break
		}
		c.removeLocked(v)
		c.evictions++
	}
	err := os.MkdirAll(filepath.Dir(path), 0o700)
	if err == nil {
		err = tmp.Link(path)
	}
	if err != nil {
		c.log.Debug("cache: install", "key", key, "err", err)
		return
	}
	e := &entry{key: key, name: name, body: hdrLen, disk: disk, score: 1, epoch: c.epoch}
	c.tick++
	e.tick = c.tick
	e.lastAccess = c.now()
	if fromRead {
		e.reads = 1
	}
	e.elem = c.lru.PushFront(e)
	c.entries[key] = e
	c.bytes += disk
	c.dirty = true
}

// drop removes key's local copy, if any, and spoils a fill in progress.
func (c *Cache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.fills[key]; f != nil {
		f.stale = true
	}
	if e := c.entries[key]; e != nil {
		c.removeLocked(e)
	}
}

// removeLocked forgets e and deletes its file (readers that have it open
// keep reading).
func (c *Cache) removeLocked(e *entry) {
	delete(c.entries, e.key)
	c.lru.Remove(e.elem)
	c.bytes -= e.disk
	c.dirty = true
	if err := os.Remove(c.objPath(e.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Debug("cache: remove", "key", e.key, "err", err)
	}
}

// decayed returns e's score as of the current epoch.
func (c *Cache) decayed(e *entry) int64 {
	d := c.epoch - e.epoch
	if d >= 63 {
		return 0
	}
	return e.score >> d
}

// victimLocked returns the next object to evict, or nil when empty.
func (c *Cache) victimLocked() *entry {
	back := c.lru.Back()
	if back == nil {
		return nil
	}
	if c.policy == PolicyLRU {
		return back.Value.(*entry)
	}
	var best *entry
	var bestScore int64
	// Walk from the least recent, so that among equal scores the oldest
	// access wins.
	for el := back; el != nil; el = el.Prev() {
		e := el.Value.(*entry)
		if s := c.decayed(e); best == nil || s < bestScore {
			best, bestScore = e, s
		}
	}
	return best
}

// touchLocked records a read of e.
func (c *Cache) touchLocked(e *entry) {
	c.tick++
	e.tick = c.tick
	e.lastAccess = c.now()
	e.reads++
	e.score = c.decayed(e) + 1
	e.epoch = c.epoch
	c.lru.MoveToFront(e.elem)
	c.dirty = true
}

// countReadLocked advances the ageing clock by one read.
func (c *Cache) countReadLocked() {
	c.ageCount++
	if c.ageCount >= c.agePeriod {
		c.ageCount = 0
		c.epoch++
	}
	c.dirty = true
}

// NewRangeReader serves the range from the local copy on a hit; on a miss
// it reads through (see the package doc). Errors are the inner store's
// (ErrNotFound from this call), ErrInvalidKey, or ErrClosed.
func (c *Cache) NewRangeReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("cache: get %q: %w", key, err)
	}
	prefix := offset == 0 && length != 0
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, fmt.Errorf("cache: get %q: %w", key, ErrClosed)
		}
		if e := c.entries[key]; e != nil {
			r, err := c.openLocked(e, offset, length)
			if err == nil {
				c.hits++
				c.countReadLocked()
				c.touchLocked(e)
				c.mu.Unlock()
				return r, nil
			}
			c.log.Warn("cache: open cached object", "key", key, "err", err)
			c.removeLocked(e)
		}
		if !prefix {
			c.mu.Unlock()
			break
		}
		if f := c.fills[key]; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("cache: get %q: %w", key, ctx.Err())
			}
			if f.noFill {
				break // read it ourselves, uncached
			}
			continue // look again: installed, or not and we try
		}
		f := &fill{done: make(chan struct{})}
		c.fills[key] = f
		c.mu.Unlock()
		return c.readThrough(ctx, key, length, f)
	}
	r, err := c.inner.NewRangeReader(ctx, key, offset, length)
	if err == nil {
		c.countMiss()
	}
	return r, err
}

// countMiss counts a read that was not served from a local copy.
func (c *Cache) countMiss() {
	c.mu.Lock()
	c.misses++
	c.countReadLocked()
	c.mu.Unlock()
}

// openLocked opens e's file at the range.
func (c *Cache) openLocked(e *entry, offset, length int64) (io.ReadCloser, error) {
	f, err := os.Open(c.objPath(e.name))
	if err != nil {
		return nil, err
	}
	size := e.size()
	if offset > size {
		offset = size
	}
	if length < 0 || offset+length > size {
		length = size - offset
	}
	return &fileReader{SectionReader: io.NewSectionReader(f, e.body+offset, length), f: f}, nil
}

type fileReader struct {
	*io.SectionReader
	f *os.File
}

func (r *fileReader) Close() error { return r.f.Close() }

// endFill ends f: it leaves the fills map and wakes the waiters.
func (c *Cache) endFill(key string, f *fill) {
	c.mu.Lock()
	if c.fills[key] == f {
		delete(c.fills, key)
	}
	c.mu.Unlock()
	close(f.done)
}

// readThrough opens [0, length+1) of the object in the inner store (the
// whole object when length < 0) and tees it into a temp file as the
// caller reads its length bytes.
func (c *Cache) readThrough(ctx context.Context, key string, length int64, f *fill) (io.ReadCloser, error) {
	ask := int64(-1)
	if length >= 0 {
		ask = length + 1
	}
	r, err := c.inner.NewRangeReader(ctx, key, 0, ask)
	if err != nil {
		c.endFill(key, f)
		return nil, err
	}
	c.countMiss()
	hdr := header(key, nil)
	tr := &teeReader{c: c, key: key, f: f, r: r, hdrLen: int64(len(hdr)), want: length}
	if tr.tmp, err = c.createTemp(hdr); err != nil {
		c.log.Debug("cache: fill: temp file", "key", key, "err", err)
		f.noFill = true
		c.endFill(key, f)
		tr.f = nil
	}
	return tr, nil
}

// teeReader streams an inner reader to the caller while filling the cache.
type teeReader struct {
	c      *Cache
	key    string
	f      *fill // nil once the fill has ended
	r      io.ReadCloser
	tmp    *osfile.Temp
	hdrLen int64
	want   int64 // bytes the caller asked for; < 0: all
	n      int64 // bytes read from r
	given  int64 // bytes given to the caller
	eof    bool  // r is at its end
}

// readInner reads from r into p, teeing into the temp file while the fill
// lasts, and ends the fill at r's end: installed if r held the whole
// object (no more than want bytes), else dropped.
func (t *teeReader) readInner(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if t.f != nil && n > 0 {
		t.n += int64(n)
		if t.hdrLen+t.n > t.c.max {
			t.f.noFill = true
			t.abort()
		} else if t.want >= 0 && t.n > t.want {
			t.abort() // the object goes on past the range: not whole
		} else if _, werr := t.tmp.Write(p[:n]); werr != nil {
			t.c.log.Debug("cache: fill: write", "key", t.key, "err", werr)
			t.abort()
		}
	}
	if err == io.EOF {
		t.eof = true
	}
	if t.f != nil && err != nil {
		if err == io.EOF {
			t.c.install(t.key, t.tmp, t.hdrLen, t.n, true, t.f)
			t.c.endFill(t.key, t.f)
			t.f = nil
		} else {
			t.abort()
		}
	}
	return n, err
}

func (t *teeReader) Read(p []byte) (int, error) {
	if t.want >= 0 {
		left := t.want - t.given
		if left <= 0 {
			t.finish()
			return 0, io.EOF
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
	}
	n, err := t.readInner(p)
	t.given += int64(n)
	return n, err
}

// finish reads on past the caller's range (at most the one extra byte
// asked for) to learn whether the object ended there.
func (t *teeReader) finish() {
	var b [1]byte
	for t.f != nil && !t.eof {
		if _, err := t.readInner(b[:]); err != nil {
			return
		}
	}
}

// abort ends the fill without installing anything.
func (t *teeReader) abort() {
	if t.f == nil {
		return
	}
	t.tmp.Discard()
	t.c.endFill(t.key, t.f)
	t.f = nil
}

// Close installs the fill if the caller read the whole range it asked for
// and the object ended there; otherwise the fill is dropped.
func (t *teeReader) Close() error {
	if t.want >= 0 && t.given >= t.want {
		t.finish()
	}
	t.abort()
	return t.r.Close()
}

// Stat passes through to the inner store.
func (c *Cache) Stat(ctx context.Context, key string) (blob.Attrs, error) {
	return c.inner.Stat(ctx, key)
}

// List passes through to the inner store.
func (c *Cache) List(ctx context.Context, prefix string, fn func(blob.Attrs) error) error {
	return c.inner.List(ctx, prefix, fn)
}

// Delete deletes the object in the inner store, then its local copy
// (whatever the inner store answered). Errors are the inner store's.
func (c *Cache) Delete(ctx context.Context, key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return fmt.Errorf("cache: delete %q: %w", key, err)
	}
	unlock := c.lockKey(key)
	defer unlock()
	err := c.inner.Delete(ctx, key)
	c.drop(key)
	return err
}

// Keys returns the keys of the objects cached now whose key starts with
// prefix ("" for all), in no particular order. It scans every entry
// (O(objects)); the cluster glue calls it when another server expunged
// mail of an account (prefix: the account's key prefix).
func (c *Cache) Keys(prefix string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k := range c.entries {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

// Evict drops the local copies of keys (those cached; others are
// ignored) and spoils fills of them in progress. The inner store is
// untouched: for objects another server deleted, or that must not stay
// on this disk (a deleted account). It returns how many copies it
// dropped; they do not count as evictions in Stats (which counts room
// made by the policy).
func (c *Cache) Evict(keys ...string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range keys {
		if f := c.fills[k]; f != nil {
			f.stale = true
		}
		if e := c.entries[k]; e != nil {
			c.removeLocked(e)
			n++
		}
	}
	return n
}

// EvictPrefix drops the local copy of every object whose key starts with
// prefix (e.g. everything of a deleted account) and spoils fills of such
// keys in progress; the inner store is untouched. It returns how many
// copies it dropped.
func (c *Cache) EvictPrefix(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, f := range c.fills {
		if strings.HasPrefix(k, prefix) {
			f.stale = true
		}
	}
	n := 0
	for k, e := range c.entries {
		if strings.HasPrefix(k, prefix) {
			c.removeLocked(e)
			n++
		}
	}
	return n
}

// Purge empties the cache: every local copy and every counter. Fills in
// progress are not installed. The inner store is untouched.
func (c *Cache) Purge(ctx context.Context) error {
	c.mu.Lock()
	for _, f := range c.fills {
		f.stale = true
	}
	for _, e := range c.entries {
		c.removeLocked(e)
	}
	c.hits, c.misses, c.evictions = 0, 0, 0
	c.dirty = true
	c.mu.Unlock()
	return c.Flush()
}
