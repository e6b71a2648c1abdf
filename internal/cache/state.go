package cache

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bucketmail/bucketmail/internal/osfile"
)

// The state file is text, rewritten whole (temp file, fsync, rename) every
// flushEvery while something changed and at Close:
//
//	bucketmail-cache-state 1
//	tick=T epoch=E agecount=A hits=H misses=M evictions=V
//	NAME READS SCORE EPOCH TICK LASTACCESS_UNIX_NANO DISK BODY KEY
//	...
//
// one line per cached object (NAME the file name, DISK its size, BODY the
// offset of the object's bytes).
//
// Durability. Where the kernel boot id is known, object files are
// installed without an fsync each (it cost as much as the rest of a
// delivery's local work); Flush syncs the filesystem (syncfs(2)) after
// taking the list and before writing it, so every object the state file
// lists is on disk whole. Files installed after the last state write are
// whole too while the machine keeps running (the page cache outlives a
// crashed process), but a crash of the machine may leave them empty or
// cut. Open records the boot id in the file "boot"; when the next Open
// finds another boot id there (the machine restarted since), it deletes
// every object file that the state does not list with its exact size
// instead of rescanning it. A name that the last state file lists and
// that is installed again (evicted and cached anew before the next
// write) is fsynced at install, so a listed name never holds unsynced
// bytes of the same size. Where the boot id is unknown each installed
// file is fsynced. On the same boot, or where the boot id is unknown, a
// lost or unreadable state file costs the counters only: Open rescans
// the object files.
const stateMagic = "bucketmail-cache-state 1"

type stateFileData struct {
	tick, epoch, ageCount   uint64
	hits, misses, evictions uint64
	entries                 map[string]*entry // by name
}

func readState(path string) (*stateFileData, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st := &stateFileData{entries: make(map[string]*entry)}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		t := sc.Text()
		switch line {
		case 1:
			if t != stateMagic {
				return nil, fmt.Errorf("cache: state %s: not a state file", path)
			}
			continue
		case 2:
			for _, kv := range strings.Fields(t) {
				k, v, _ := strings.Cut(kv, "=")
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("cache: state %s line 2: %q", path, kv)
				}
				switch k {
				case "tick":
					st.tick = n
				case "epoch":
					st.epoch = n
				case "agecount":
					st.ageCount = n
				case "hits":
					st.hits = n
				case "misses":
					st.misses = n
				case "evictions":
					st.evictions = n
				}
			}
			continue
		}
		f := strings.Fields(t)
		if len(f) != 9 {
			return nil, fmt.Errorf("cache: state %s line %d: %d fields", path, line, len(f))
		}
		var nums [7]int64
		for i := range nums {
			if nums[i], err = strconv.ParseInt(f[1+i], 10, 64); err != nil {
				return nil, fmt.Errorf("cache: state %s line %d: %w", path, line, err)
			}
		}
		st.entries[f[0]] = &entry{
			name: f[0], reads: nums[0], score: nums[1], epoch: uint64(nums[2]), tick: uint64(nums[3]),
			lastAccess: time.Unix(0, nums[4]), disk: nums[5], body: nums[6], key: f[8],
		}
	}
	if line == 0 {
		return nil, fmt.Errorf("cache: state %s: empty", path)
	}
	return st, sc.Err()
}

// load rebuilds the in-memory state from the state file and the object
// files (see Open).
func (c *Cache) load(ctx context.Context) error {
	tmp := filepath.Join(c.cfg.Dir, tmpDir)
	if des, err := os.ReadDir(tmp); err == nil {
		for _, de := range des {
			os.Remove(filepath.Join(tmp, de.Name()))
		}
	}
	st, err := readState(filepath.Join(c.cfg.Dir, stateFile))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("cache: state lost, rescanning", "err", err)
		}
		st = &stateFileData{entries: map[string]*entry{}}
	}
	// Unsynced files may be cut after a crash of the machine (see the
	// state file's doc): after a restart, trust only what the state lists.
	bootPath := filepath.Join(c.cfg.Dir, bootFile)
	rescanOK := true
	if c.bootID != "" {
		last, _ := os.ReadFile(bootPath)
		rescanOK = strings.TrimSpace(string(last)) == c.bootID
	}
	dropped := 0
	c.listed = make(map[string]struct{}, len(st.entries))
	for name := range st.entries {
		c.listed[name] = struct{}{}
	}
	c.tick, c.epoch, c.ageCount = st.tick, st.epoch, st.ageCount
	c.hits, c.misses, c.evictions = st.hits, st.misses, st.evictions

	var loaded []*entry
	root := filepath.Join(c.cfg.Dir, objectsDir)
	err = filepath.WalkDir(root, func(path string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		name := d.Name()
		if e := st.entries[name]; e != nil && e.disk == info.Size() && objName(e.key) == name {
			loaded = append(loaded, e)
			return nil
		}
		if !rescanOK {
			os.Remove(path)
			dropped++
			return nil
		}
		e, err := rescan(path, name, info)
		if err != nil {
			c.log.Debug("cache: drop unreadable object file", "path", path, "err", err)
			os.Remove(path)
			return nil
		}
		c.log.Debug("cache: rescanned object file", "key", e.key)
		loaded = append(loaded, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache: open %s: %w", c.cfg.Dir, err)
	}
	if dropped > 0 {
		c.log.Info("cache: the machine restarted since the last state write; dropped the object files it did not list",
			"dropped", dropped, "kept", len(loaded))
	}
	if c.bootID != "" && !rescanOK {
		if err := writeFileAtomic(bootPath, []byte(c.bootID+"\n")); err != nil {
			return fmt.Errorf("cache: open %s: %w", c.cfg.Dir, err)
		}
	}
	sort.Slice(loaded, func(i, j int) bool {
		if loaded[i].tick != loaded[j].tick {
			return loaded[i].tick < loaded[j].tick
		}
		return loaded[i].key < loaded[j].key
	})
	for _, e := range loaded {
		e.elem = c.lru.PushFront(e)
		c.entries[e.key] = e
		c.bytes += e.disk
		if e.epoch > c.epoch {
			e.epoch = c.epoch
		}
	}
	for c.bytes > c.max {
		c.removeLocked(c.victimLocked())
		c.evictions++
	}
	c.dirty = true
	return nil
}

// rescan makes an entry from an object file's header, with no reads.
func rescan(path, name string, info iofs.FileInfo) (*entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	key, body, err := readHeader(f)
	if err != nil {
		return nil, err
	}
	if objName(key) != name || body > info.Size() {
		return nil, fmt.Errorf("file name does not match key %q", key)
	}
	return &entry{key: key, name: name, body: body, disk: info.Size(), score: 1, lastAccess: info.ModTime()}, nil
}

// Flush writes the state file now if anything changed since the last
// write. The Cache does it by itself every few seconds and at Close.
func (c *Cache) Flush() error {
	c.mu.Lock()
	if !c.dirty {
		c.mu.Unlock()
		return nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\ntick=%d epoch=%d agecount=%d hits=%d misses=%d evictions=%d\n",
		stateMagic, c.tick, c.epoch, c.ageCount, c.hits, c.misses, c.evictions)
	for el := c.lru.Back(); el != nil; el = el.Prev() {
		e := el.Value.(*entry)
		fmt.Fprintf(&b, "%s %d %d %d %d %d %d %d %s\n",
			e.name, e.reads, e.score, e.epoch, e.tick, e.lastAccess.UnixNano(), e.disk, e.body, e.key)
	}
	names := make(map[string]struct{}, c.lru.Len())
	for el := c.lru.Front(); el != nil; el = el.Next() {
		names[el.Value.(*entry).name] = struct{}{}
	}
	c.dirty = false
	c.mu.Unlock()

	var err error
	if c.bootID != "" {
		// Everything listed must be on disk before the list is.
		err = osfile.SyncFS(c.cfg.Dir)
	}
	if err == nil {
		err = writeFileAtomic(filepath.Join(c.cfg.Dir, stateFile), b.Bytes())
	}
	if err == nil {
		c.mu.Lock()
		c.listed = names
		c.mu.Unlock()
	}
	if err != nil {
		c.mu.Lock()
		c.dirty = true
		c.mu.Unlock()
		return fmt.Errorf("cache: write state: %w", err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// Stats is a snapshot of the cache's counters.
type Stats struct {
	Hits      uint64  // reads served from a local copy
	Misses    uint64  // reads that went to the inner store
	HitRatio  float64 // Hits / (Hits + Misses); 0 before any read
	Evictions uint64  // objects evicted to make room
	Bytes     int64   // bytes of cached object files (headers included)
	MaxBytes  int64   // the cap; 0 from ReadStats (not recorded)
	Objects   int     // cached objects
	// Histogram counts cached objects by read count, in buckets 0, 1, 2,
	// 3-4, 5-8, ... (powers of two) up to the largest count present.
	Histogram []Bucket
}

// Bucket is one histogram bucket: objects read Min..Max times (inclusive).
type Bucket struct {
	Min, Max int64
	Objects  int
	Bytes    int64
}

// Stats returns the current counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{Hits: c.hits, Misses: c.misses, Evictions: c.evictions, Bytes: c.bytes, MaxBytes: c.max, Objects: len(c.entries)}
	reads := make([]entry, 0, len(c.entries))
	for _, e := range c.entries {
		reads = append(reads, entry{reads: e.reads, disk: e.disk})
	}
	s.fill(reads)
	return s
}

// ReadStats reads the counters from the state file in dir without opening
// the cache (it works while a server has it open, as of its last state
// write, every few seconds).
func ReadStats(dir string) (Stats, error) {
	st, err := readState(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return Stats{}, nil
	}
	if err != nil {
		return Stats{}, err
	}
	s := Stats{Hits: st.hits, Misses: st.misses, Evictions: st.evictions, Objects: len(st.entries)}
	reads := make([]entry, 0, len(st.entries))
	for _, e := range st.entries {
		s.Bytes += e.disk
		reads = append(reads, entry{reads: e.reads, disk: e.disk})
	}
	s.fill(reads)
	return s, nil
}

// fill sets the hit ratio and the histogram.
func (s *Stats) fill(es []entry) {
	if s.Hits+s.Misses > 0 {
		s.HitRatio = float64(s.Hits) / float64(s.Hits+s.Misses)
	}
	if len(es) == 0 {
		return
	}
	var most int64
	for _, e := range es {
		most = max(most, e.reads)
	}
	s.Histogram = []Bucket{{Min: 0, Max: 0}}
	for lo, hi := int64(1), int64(1); lo <= most; lo, hi = hi+1, hi*2 {
		s.Histogram = append(s.Histogram, Bucket{Min: lo, Max: hi})
	}
	for _, e := range es {
		i := 0
		for i < len(s.Histogram)-1 && e.reads > s.Histogram[i].Max {
			i++
		}
		s.Histogram[i].Objects++
		s.Histogram[i].Bytes += e.disk
	}
}
