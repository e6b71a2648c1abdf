// Package throttle slows down password guessing (issue 5 item 5): it
// counts failed logins per remote IP and per account and says how long
// the next attempt must wait before its credentials are even checked.
//
// Delay: a key (IP or account) with n counted failures waits
// BaseDelay·2^(n-1), capped at MaxDelay (defaults: 250 ms, 500 ms, 1 s,
// 2 s, 4 s, 8 s, then 15 s); an attempt waits the larger of its IP's and
// its account's delay. The wait comes before the check, for good and bad
// passwords alike, so a client cannot learn the answer early by timing
// and dropping slow connections (Dovecot's auth_penalty works the same
// way). It is never a lock: after the wait a correct password logs in,
// so an attacker can slow a victim's logins by at most MaxDelay but never
// keep them out.
//
// Decay: one counted failure is forgiven per DecayInterval (default 1
// minute) without a new failure, so a key is free again at most about
// (log2(MaxDelay/BaseDelay)+3)·DecayInterval after the last failure. A
// successful login forgets its account's failures, not its IP's (an
// attacker holding one valid account could otherwise reset their IP's
// count between guesses).
//
// Keys: the account is the address as the client typed it, normalised
// by the caller (userdb.AddressPolicy) and cut to 256 bytes; an unknown
// user counts exactly like a wrong password. IPv4 addresses count alone,
// IPv6 addresses by their /64 (one subscriber's usual allocation).
// Loopback addresses are not counted per IP unless Options.TrackLoopback
// (a local proxy or webmail carries every user's logins); their accounts
// are. An invalid netip.Addr (a unix socket) counts only the account.
//
// Memory: at most MaxEntries IPs and MaxEntries accounts (default 10,000
// each, about 100 bytes an entry), the least recently failed evicted
// first. Evicting a key only forgets its count early.
package throttle

import (
	"container/list"
	"context"
	"net/netip"
	"sync"
	"time"
)

// Defaults for the zero Options.
const (
	DefaultBaseDelay     = 250 * time.Millisecond
	DefaultMaxDelay      = 15 * time.Second
	DefaultDecayInterval = time.Minute
	DefaultMaxEntries    = 10000
	maxAccountKey        = 256
)

// Options configure New. The zero value is the default.
type Options struct {
	// BaseDelay is the wait after one failure; it doubles with each
	// further one. <= 0: DefaultBaseDelay.
	BaseDelay time.Duration
	// MaxDelay caps the wait (TOML auth.throttle_max_delay). 0:
	// DefaultMaxDelay; negative: throttling off (New returns nil, whose
	// methods do nothing).
	MaxDelay time.Duration
	// DecayInterval: one failure is forgiven per interval without a new
	// failure. <= 0: DefaultDecayInterval.
	DecayInterval time.Duration
	// MaxEntries bounds each table (IPs, accounts). <= 0: DefaultMaxEntries.
	MaxEntries int
	// TrackLoopback counts loopback IPs too (tests; see the package doc).
	TrackLoopback bool
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
}

// Limiter tracks failures. Safe for concurrent use; a nil *Limiter is
// valid and never delays.
type Limiter struct {
	base, max, decay time.Duration
	maxN             int // failure count at which the delay reaches max, +2
	maxEntries       int
	loopback         bool
	now              func() time.Time

	mu       sync.Mutex
	ips      table[netip.Prefix]
	accounts table[string]
}

// Stats are the tables' sizes.
type Stats struct {
	IPs, Accounts int
}

// New returns a limiter, or nil when o.MaxDelay is negative (off).
func New(o Options) *Limiter {
	if o.MaxDelay < 0 {
		return nil
	}
	l := &Limiter{base: o.BaseDelay, max: o.MaxDelay, decay: o.DecayInterval, maxEntries: o.MaxEntries, loopback: o.TrackLoopback, now: o.Now}
	if l.base <= 0 {
		l.base = DefaultBaseDelay
	}
	if l.max == 0 {
		l.max = DefaultMaxDelay
	}
	if l.max < l.base {
		l.base = l.max
	}
	if l.decay <= 0 {
		l.decay = DefaultDecayInterval
	}
	if l.maxEntries <= 0 {
		l.maxEntries = DefaultMaxEntries
	}
	if l.now == nil {
		l.now = time.Now
	}
	n := 1
	for d := l.base; d < l.max; d *= 2 {
		n++
	}
	l.maxN = n + 2
	l.ips.init()
	l.accounts.init()
	return l
}

// ipKey returns the IP's table key; ok false if the IP is not counted.
func (l *Limiter) ipKey(ip netip.Addr) (netip.Prefix, bool) {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() && !l.loopback {
		return netip.Prefix{}, false
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}

func accountKey(account string) string {
	if len(account) > maxAccountKey {
		return account[:maxAccountKey]
	}
	return account
}

// delayFor is the wait for n failures.
func (l *Limiter) delayFor(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := l.base
	for i := 1; i < n && d < l.max; i++ {
		d *= 2
	}
	return min(d, l.max)
}

// Delay returns how long an attempt from ip for account must wait before
// its credentials are checked: the larger of the two keys' delays
// (0 if neither has failures).
func (l *Limiter) Delay(ip netip.Addr, account string) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	n := l.accounts.count(accountKey(account), now, l.decay)
	if k, ok := l.ipKey(ip); ok {
		n = max(n, l.ips.count(k, now, l.decay))
	}
	return l.delayFor(n)
}

// Wait sleeps for Delay(ip, account). It returns early with ctx's error
// if ctx ends first, else nil.
func (l *Limiter) Wait(ctx context.Context, ip netip.Addr, account string) error {
	d := l.Delay(ip, account)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Failure counts a failed login (wrong password, unknown user or
// disabled user alike) against ip and account.
func (l *Limiter) Failure(ip netip.Addr, account string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.accounts.fail(accountKey(account), now, l.decay, l.maxN, l.maxEntries)
	if k, ok := l.ipKey(ip); ok {
		l.ips.fail(k, now, l.decay, l.maxN, l.maxEntries)
	}
}

// Success forgets account's failures (not ip's: see the package doc).
func (l *Limiter) Success(ip netip.Addr, account string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accounts.remove(accountKey(account))
}

// Stats returns the number of tracked IPs and accounts.
func (l *Limiter) Stats() Stats {
	if l == nil {
		return Stats{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{IPs: l.ips.lru.Len(), Accounts: l.accounts.lru.Len()}
}

// table is an LRU map of failure records.
type table[K comparable] struct {
	lru *list.List // of *record[K], most recently failed at the front
	m   map[K]*list.Element
}

type record[K comparable] struct {
	key  K
	n    int       // failures counted at last
	last time.Time // last failure
}

func (t *table[K]) init() {
	t.lru = list.New()
	t.m = make(map[K]*list.Element)
}

// decayed is r's count at now.
func (r *record[K]) decayed(now time.Time, decay time.Duration) int {
	el := now.Sub(r.last)
	if el <= 0 {
		return r.n
	}
	return max(r.n-int(el/decay), 0)
}

// count returns k's decayed count, dropping a record that reached 0.
func (t *table[K]) count(k K, now time.Time, decay time.Duration) int {
	el, ok := t.m[k]
	if !ok {
		return 0
	}
	n := el.Value.(*record[K]).decayed(now, decay)
	if n == 0 {
		t.remove(k)
	}
	return n
}

func (t *table[K]) fail(k K, now time.Time, decay time.Duration, maxN, maxEntries int) {
	if el, ok := t.m[k]; ok {
		r := el.Value.(*record[K])
		r.n = min(r.decayed(now, decay)+1, maxN)
		r.last = now
		t.lru.MoveToFront(el)
		return
	}
	t.m[k] = t.lru.PushFront(&record[K]{key: k, n: 1, last: now})
	for t.lru.Len() > maxEntries {
		t.remove(t.lru.Back().Value.(*record[K]).key)
	}
}

func (t *table[K]) remove(k K) {
	if el, ok := t.m[k]; ok {
		t.lru.Remove(el)
		delete(t.m, k)
	}
}
