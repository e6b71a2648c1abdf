// Package authcache is the per-server cache in front of a user database
// (issue 5 item 5): it remembers authentication results and lookups so
// that a client logging in again, or LMTP delivering to the same address,
// does not cost a backend round trip and a password hash each time.
//
// What is cached, per address normalised under Options.Policy (which must
// be the backend's):
//
//   - Authenticate: success for Options.PositiveTTL, ErrAuthFailed for
//     Options.NegativeTTL, keyed by (address, HMAC-SHA256 of the password
//     under a key drawn at New from crypto/rand). The password itself is
//     never kept; the key never leaves the process, so the cache's memory
//     gives no offline guessing oracle across restarts or servers.
//   - Lookup: the user for PositiveTTL, ErrNotFound for NegativeTTL.
//
// Anything else (userdb.ErrUnavailable, a cancelled context, any other
// error) is returned and never cached: a backend that is down is asked
// again on the next call. Answers cached before the backend went down
// are still served until they expire.
//
// Size: at most Options.MaxEntries entries of both kinds together; the
// least recently used is evicted first.
//
// Invalidation: Flush(address) drops every entry of an address and
// FlushAll everything. The Manager methods of Cache (when the inner
// backend is a userdb.Manager) flush the address themselves, so
// `bucketmail user` changes made through the Cache on the same server
// take effect at once. Changes made directly on the inner backend (e.g.
// its SetDisabled or SetQuota) must be followed by Flush.
//
// Consistency windows (cluster issue): Bypass(address, until) flushes the
// address and sends its reads to the backend, uncached, until the given
// time; Options.BypassContext (default userdb.WithConsistentRead) is
// applied to the context of those reads, so an eventually consistent
// backend reads fresh data during the window. A server that hears on the
// bus that a user changed calls Bypass for the window's length. A call
// whose own context carries userdb.WithConsistentRead skips the cache
// too: it asks the backend (with that context) and stores the answer.
package authcache

import (
	"container/list"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bucketmail/bucketmail/internal/userdb"
)

// Defaults for the zero Options.
const (
	DefaultPositiveTTL = 5 * time.Minute
	DefaultNegativeTTL = time.Minute
	DefaultMaxEntries  = 10000
)

// Backend is what the cache wraps.
type Backend interface {
	userdb.PassDB
	userdb.UserDB
}

// Options configure New. The zero value is the default.
type Options struct {
	// PositiveTTL: how long a successful authentication or lookup is
	// reused. 0: DefaultPositiveTTL; negative: not cached.
	PositiveTTL time.Duration `toml:"positive_ttl"`
	// NegativeTTL: how long ErrAuthFailed or ErrNotFound is reused.
	// 0: DefaultNegativeTTL; negative: not cached.
	NegativeTTL time.Duration `toml:"negative_ttl"`
	// MaxEntries bounds the number of entries (LRU). <= 0: DefaultMaxEntries.
	MaxEntries int `toml:"max_entries"`
	// Now is the clock (default time.Now); tests control it.
	Now func() time.Time `toml:"-"`
	// BypassContext derives the context of reads made during a Bypass
	// window; nil: userdb.WithConsistentRead.
	BypassContext func(context.Context) context.Context `toml:"-"`
	// Policy: how addresses are made canonical, the same as the
	// backend's (default: the zero userdb.AddressPolicy).
	Policy userdb.AddressPolicy `toml:"-"`
}

// Stats count cache use since New.
type Stats struct {
	Hits    int64 // answered from the cache
	Misses  int64 // asked the backend (bypassed calls included)
	Entries int   // entries held now
}

type kind uint8

const (
	kindAuth kind = iota
	kindLookup
)

type key struct {
	kind    kind
	address string
	mac     [sha256.Size]byte // kindAuth: HMAC of the password
}

type entry struct {
	key     key
	user    *userdb.User // nil for a negative entry
	err     error        // ErrAuthFailed or ErrNotFound chain for a negative entry
	expires time.Time
}

// Cache is a caching userdb.PassDB and userdb.UserDB (and a
// userdb.Manager that flushes what it changes). Safe for concurrent use.
type Cache struct {
	inner    Backend
	pos, neg time.Duration
	max      int
	now      func() time.Time
	bctx     func(context.Context) context.Context
	policy   userdb.AddressPolicy
	hmacKey  [32]byte

	mu      sync.Mutex
	lru     *list.List // of *entry, most recent at the front
	entries map[key]*list.Element
	byAddr  map[string]map[*list.Element]struct{}
	bypass  map[string]time.Time
	flushes uint64 // incremented by every Flush, FlushAll and Bypass
	stats   Stats
}

var (
	_ userdb.PassDB  = (*Cache)(nil)
	_ userdb.UserDB  = (*Cache)(nil)
	_ userdb.Manager = (*Cache)(nil)
)

// New returns a cache in front of inner.
func New(inner Backend, o Options) *Cache {
	c := &Cache{
		inner:   inner,
		pos:     o.PositiveTTL,
		neg:     o.NegativeTTL,
		max:     o.MaxEntries,
		now:     o.Now,
		bctx:    o.BypassContext,
		policy:  o.Policy,
		lru:     list.New(),
		entries: make(map[key]*list.Element),
		byAddr:  make(map[string]map[*list.Element]struct{}),
		bypass:  make(map[string]time.Time),
	}
	if c.pos == 0 {
		c.pos = DefaultPositiveTTL
	}
	if c.neg == 0 {
		c.neg = DefaultNegativeTTL
	}
	if c.max <= 0 {
		c.max = DefaultMaxEntries
	}
	if c.now == nil {
		c.now = time.Now
	}
	rand.Read(c.hmacKey[:]) // never fails (crypto/rand panics instead)
	return c
}

// Inner returns the wrapped backend.
func (c *Cache) Inner() Backend { return c.inner }

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Entries = c.lru.Len()
	return s
}

func (c *Cache) passwordMAC(address, pw string) [sha256.Size]byte {
	h := hmac.New(sha256.New, c.hmacKey[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(address)))
	h.Write(n[:])
	h.Write([]byte(address))
	h.Write([]byte(pw))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// get returns a live entry's result; ok false on a miss, during a
// bypass window (bypassed true then), or when fresh (a consistent read:
// a miss whose answer is stored).
func (c *Cache) get(k key, fresh bool) (u *userdb.User, err error, ok, bypassed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if until, found := c.bypass[k.address]; found {
		if now.Before(until) {
			c.stats.Misses++
			return nil, nil, false, true
		}
		delete(c.bypass, k.address)
	}
	el, found := c.entries[k]
	if found && fresh {
		c.remove(el)
		found = false
	}
	if found {
		e := el.Value.(*entry)
		if now.Before(e.expires) {
			c.lru.MoveToFront(el)
			c.stats.Hits++
			if e.user != nil {
				cp := *e.user
				return &cp, nil, true, false
			}
			return nil, e.err, true, false
		}
		c.remove(el)
	}
	c.stats.Misses++
	return nil, nil, false, false
}

// put stores a result if it is cacheable: success, or an error that is
// negative (neg) and not ErrUnavailable. gen guards against storing a
// result read before a Flush that happened during the backend call.
func (c *Cache) put(k key, u *userdb.User, err error, neg error, gen uint64) {
	var ttl time.Duration
	switch {
	case err == nil && u != nil:
		ttl = c.pos
		cp := *u
		u = &cp
	case err != nil && errors.Is(err, neg) && !errors.Is(err, userdb.ErrUnavailable):
		ttl = c.neg
		u = nil
	default:
		return
	}
	if ttl < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.flushes {
		return
	}
	if el, found := c.entries[k]; found {
		c.remove(el)
	}
	el := c.lru.PushFront(&entry{key: k, user: u, err: err, expires: c.now().Add(ttl)})
	c.entries[k] = el
	set := c.byAddr[k.address]
	if set == nil {
		set = make(map[*list.Element]struct{})
		c.byAddr[k.address] = set
	}
	set[el] = struct{}{}
	for c.lru.Len() > c.max {
		c.remove(c.lru.Back())
	}
}

// remove drops one entry; c.mu held.
func (c *Cache) remove(el *list.Element) {
	e := c.lru.Remove(el).(*entry)
	delete(c.entries, e.key)
	if set := c.byAddr[e.key.address]; set != nil {
		delete(set, el)
		if len(set) == 0 {
			delete(c.byAddr, e.key.address)
		}
	}
}

// generation returns the flush counter when a backend call starts: a
// result is stored only if no flush happened during the call (it may
// have been read before the change the flush announced).
func (c *Cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushes
}

// Authenticate implements userdb.PassDB through the cache.
func (c *Cache) Authenticate(ctx context.Context, address, pw string) (*userdb.User, error) {
	address = c.policy.Normalize(address)
	k := key{kind: kindAuth, address: address, mac: c.passwordMAC(address, pw)}
	u, err, ok, bypassed := c.get(k, userdb.ConsistentRead(ctx))
	if ok {
		return u, err
	}
	if bypassed {
		return c.inner.Authenticate(c.bypassCtx(ctx), address, pw)
	}
	gen := c.generation()
	u, err = c.inner.Authenticate(ctx, address, pw)
	if ctx.Err() == nil {
		c.put(k, u, err, userdb.ErrAuthFailed, gen)
	}
	return u, err
}

// Lookup implements userdb.UserDB through the cache.
func (c *Cache) Lookup(ctx context.Context, address string) (*userdb.User, error) {
	address = c.policy.Normalize(address)
	k := key{kind: kindLookup, address: address}
	u, err, ok, bypassed := c.get(k, userdb.ConsistentRead(ctx))
	if ok {
		return u, err
	}
	if bypassed {
		return c.inner.Lookup(c.bypassCtx(ctx), address)
	}
	gen := c.generation()
	u, err = c.inner.Lookup(ctx, address)
	if ctx.Err() == nil {
		c.put(k, u, err, userdb.ErrNotFound, gen)
	}
	return u, err
}

func (c *Cache) bypassCtx(ctx context.Context) context.Context {
	if c.bctx != nil {
		return c.bctx(ctx)
	}
	return userdb.WithConsistentRead(ctx)
}

// Flush drops every cached entry of address (normalised first); results
// of backend calls running meanwhile are not stored.
func (c *Cache) Flush(address string) {
	address = c.policy.Normalize(address)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked(address)
}

func (c *Cache) flushLocked(address string) {
	for el := range c.byAddr[address] {
		c.remove(el)
	}
	c.flushes++
}

// FlushAll drops every entry.
func (c *Cache) FlushAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Init()
	clear(c.entries)
	clear(c.byAddr)
	c.flushes++
}

// Bypass flushes address and sends its Authenticate and Lookup calls to
// the backend, uncached and with Options.BypassContext applied, until
// the time until (by Options.Now). A later Bypass of the same address
// replaces the time. Expired windows are forgotten lazily.
func (c *Cache) Bypass(address string, until time.Time) {
	address = c.policy.Normalize(address)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked(address)
	now := c.now()
	if len(c.bypass) >= 1024 {
		for a, t := range c.bypass {
			if !now.Before(t) {
				delete(c.bypass, a)
			}
		}
	}
	if now.Before(until) {
		c.bypass[address] = until
	} else {
		delete(c.bypass, address)
	}
}

// manager returns the inner Manager or ErrReadOnly.
func (c *Cache) manager(op, address string) (userdb.Manager, error) {
	m, ok := c.inner.(userdb.Manager)
	if !ok {
		return nil, fmt.Errorf("userdb: %s %s: %w", op, address, userdb.ErrReadOnly)
	}
	return m, nil
}

// AddUser implements userdb.Manager: the inner backend's, then Flush (an
// "unknown user" answer may be cached). ErrReadOnly if the backend
// cannot be written.
func (c *Cache) AddUser(ctx context.Context, address, pw string) error {
	m, err := c.manager("add", address)
	if err != nil {
		return err
	}
	defer c.Flush(address)
	return m.AddUser(ctx, address, pw)
}

// SetPassword implements userdb.Manager, then Flush.
func (c *Cache) SetPassword(ctx context.Context, address, pw string) error {
	m, err := c.manager("passwd", address)
	if err != nil {
		return err
	}
	defer c.Flush(address)
	return m.SetPassword(ctx, address, pw)
}

// DeleteUser implements userdb.Manager, then Flush.
func (c *Cache) DeleteUser(ctx context.Context, address string) error {
	m, err := c.manager("delete", address)
	if err != nil {
		return err
	}
	defer c.Flush(address)
	return m.DeleteUser(ctx, address)
}

// ListUsers implements userdb.Manager (never cached).
func (c *Cache) ListUsers(ctx context.Context) ([]userdb.User, error) {
	m, err := c.manager("list", "")
	if err != nil {
		return nil, err
	}
	return m.ListUsers(ctx)
}
