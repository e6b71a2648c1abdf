package authcache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/embedded"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
	"github.com/bucketmail/bucketmail/internal/userdb/userdbtest"
)

var ctx = context.Background()

var cheap = func(pw string) (string, error) {
	return password.HashArgon2ID(pw, password.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1})
}

// counting is the embedded backend with call counters.
type counting struct {
	*embedded.DB
	sqldb   *sql.DB
	auths   atomic.Int64
	lookups atomic.Int64
	marked  atomic.Int64 // calls whose ctx carried markKey
	fresh   atomic.Int64 // calls whose ctx carried userdb.WithConsistentRead
}

type markKey struct{}

func (c *counting) Authenticate(ctx context.Context, address, pw string) (*userdb.User, error) {
	c.auths.Add(1)
	if ctx.Value(markKey{}) != nil {
		c.marked.Add(1)
	}
	if userdb.ConsistentRead(ctx) {
		c.fresh.Add(1)
	}
	return c.DB.Authenticate(ctx, address, pw)
}

func (c *counting) Lookup(ctx context.Context, address string) (*userdb.User, error) {
	c.lookups.Add(1)
	if ctx.Value(markKey{}) != nil {
		c.marked.Add(1)
	}
	if userdb.ConsistentRead(ctx) {
		c.fresh.Add(1)
	}
	return c.DB.Lookup(ctx, address)
}

// Down closes the SQLite handle: the embedded backend answers
// ErrUnavailable from then on.
func (c *counting) Down(t *testing.T) { c.sqldb.Close() }

func newBackend(t *testing.T, seed []userdbtest.Seed) *counting {
	t.Helper()
	sqldb, err := metadb.OpenSQLite(ctx, filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqldb.Close() })
	d, err := embedded.New(ctx, sqldb, embedded.WithHasher(cheap))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range seed {
		if err := d.AddUser(ctx, s.Address, s.Password); err != nil {
			t.Fatal(err)
		}
		if s.Disabled {
			if err := d.SetDisabled(ctx, s.Address, true); err != nil {
				t.Fatal(err)
			}
		}
		if s.QuotaBytes != 0 {
			if err := d.SetQuota(ctx, s.Address, s.QuotaBytes); err != nil {
				t.Fatal(err)
			}
		}
	}
	return &counting{DB: d, sqldb: sqldb}
}

// clock is a controllable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// cachedDown is a Cache whose backend can be stopped (for the suite).
type cachedDown struct {
	*Cache
	b *counting
}

// Down stops the backend and empties the cache: within their TTL cached
// answers are served while the backend is down (by design), so the
// suite's check that a down backend gives ErrUnavailable needs an empty
// cache.
func (c cachedDown) Down(t *testing.T) {
	c.b.Down(t)
	c.FlushAll()
}

// TestConformance runs the suite through the cache: cached answers must
// be the backend's answers, and management through the cache must be
// seen at once.
func TestConformance(t *testing.T) {
	userdbtest.Run(t, func(t *testing.T, seed []userdbtest.Seed) userdbtest.Backend {
		b := newBackend(t, seed)
		c := New(b, Options{Now: newClock().Now})
		// Warm the cache with every seed's answers before the subtest runs.
		for _, s := range seed {
			c.Authenticate(ctx, s.Address, s.Password)
			c.Authenticate(ctx, s.Address, "wrong")
			c.Lookup(ctx, s.Address)
		}
		c.Lookup(ctx, "nobody@example.org")
		return cachedDown{c, b}
	})
}

// TestPolicies: the cache keys addresses under the backend's policy
// (issue 5 item 4), warmed so that answers come from the cache.
func TestPolicies(t *testing.T) {
	userdbtest.RunPolicies(t, func(t *testing.T, p userdb.AddressPolicy, seed []userdbtest.Seed) userdbtest.Backend {
		sqldb, err := metadb.OpenSQLite(ctx, filepath.Join(t.TempDir(), "index.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sqldb.Close() })
		d, err := embedded.New(ctx, sqldb, embedded.WithHasher(cheap), embedded.WithPolicy(p))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range seed {
			if err := d.AddUser(ctx, s.Address, s.Password); err != nil {
				t.Fatal(err)
			}
		}
		c := New(d, Options{Now: newClock().Now, Policy: p})
		for _, s := range seed {
			c.Authenticate(ctx, s.Address, s.Password)
			c.Lookup(ctx, s.Address)
			c.Lookup(ctx, strings.ToUpper(s.Address))
		}
		return c
	})
}

const (
	alicePW = "correct horse battery staple"
	pos     = 10 * time.Second
	neg     = 3 * time.Second
)

func setup(t *testing.T, o Options) (*Cache, *counting, *clock) {
	t.Helper()
	b := newBackend(t, userdbtest.Seeds)
	clk := newClock()
	if o.PositiveTTL == 0 {
		o.PositiveTTL = pos
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = neg
	}
	o.Now = clk.Now
	return New(b, o), b, clk
}

// expect checks the backend call counts and the cache's stats.
func expect(t *testing.T, c *Cache, b *counting, auths, lookups, hits, misses int64, entries int) {
	t.Helper()
	s := c.Stats()
	if b.auths.Load() != auths || b.lookups.Load() != lookups || s.Hits != hits || s.Misses != misses || s.Entries != entries {
		t.Fatalf("backend auths %d lookups %d, stats %+v; want auths %d lookups %d, {Hits:%d Misses:%d Entries:%d}",
			b.auths.Load(), b.lookups.Load(), s, auths, lookups, hits, misses, entries)
	}
}

func auth(t *testing.T, c *Cache, address, pw string, wantOK bool) {
	t.Helper()
	u, err := c.Authenticate(ctx, address, pw)
	if wantOK {
		if err != nil || u.Address != userdb.Normalize(address) {
			t.Fatalf("Authenticate(%q) = %+v, %v; want success", address, u, err)
		}
		return
	}
	if !errors.Is(err, userdb.ErrAuthFailed) || u != nil {
		t.Fatalf("Authenticate(%q, %q) = %+v, %v; want ErrAuthFailed", address, pw, u, err)
	}
}

func TestPositiveTTL(t *testing.T) {
	c, b, clk := setup(t, Options{})
	auth(t, c, "alice@example.org", alicePW, true)
	expect(t, c, b, 1, 0, 0, 1, 1)
	auth(t, c, "ALICE@example.org ", alicePW, true) // same normalised address
	auth(t, c, "alice@example.org", alicePW, true)
	expect(t, c, b, 1, 0, 2, 1, 1)
	clk.Advance(pos - time.Nanosecond)
	auth(t, c, "alice@example.org", alicePW, true)
	expect(t, c, b, 1, 0, 3, 1, 1)
	clk.Advance(time.Nanosecond) // expired at exactly PositiveTTL
	auth(t, c, "alice@example.org", alicePW, true)
	expect(t, c, b, 2, 0, 3, 2, 1)
	// The returned user is a copy: changing it does not change the cache.
	u, _ := c.Authenticate(ctx, "alice@example.org", alicePW)
	u.Account = "changed"
	if u2, _ := c.Authenticate(ctx, "alice@example.org", alicePW); u2.Account != "alice@example.org" {
		t.Fatalf("cached user changed through a returned pointer: %+v", *u2)
	}
}

func TestNegativeTTL(t *testing.T) {
	c, b, clk := setup(t, Options{})
	auth(t, c, "alice@example.org", "wrong", false)
	auth(t, c, "alice@example.org", "wrong", false)
	expect(t, c, b, 1, 0, 1, 1, 1)
	// Another password is another key: the right one still works.
	auth(t, c, "alice@example.org", alicePW, true)
	expect(t, c, b, 2, 0, 1, 2, 2)
	// Unknown user and disabled user are negative entries too.
	auth(t, c, "nobody@example.org", "x", false)
	auth(t, c, "nobody@example.org", "x", false)
	auth(t, c, "carol@example.org", "carol-pw", false)
	auth(t, c, "carol@example.org", "carol-pw", false)
	expect(t, c, b, 4, 0, 3, 4, 4)
	clk.Advance(neg)
	auth(t, c, "alice@example.org", "wrong", false) // expired: backend
	auth(t, c, "alice@example.org", alicePW, true)  // positive lives on
	auth(t, c, "nobody@example.org", "x", false)    // expired: backend
	expect(t, c, b, 6, 0, 4, 6, 4)
}

func TestDisabledTTL(t *testing.T) {
	c, b, _ := setup(t, Options{PositiveTTL: -1, NegativeTTL: -1})
	for range 2 {
		auth(t, c, "alice@example.org", alicePW, true)
		auth(t, c, "alice@example.org", "wrong", false)
		if _, err := c.Lookup(ctx, "nobody@example.org"); !errors.Is(err, userdb.ErrNotFound) {
			t.Fatal(err)
		}
	}
	expect(t, c, b, 4, 2, 0, 6, 0)
}

func TestLookup(t *testing.T) {
	c, b, clk := setup(t, Options{})
	lookup := func(address string, wantQuota int64) {
		t.Helper()
		u, err := c.Lookup(ctx, address)
		if err != nil || u.QuotaBytes != wantQuota {
			t.Fatalf("Lookup(%q) = %+v, %v; want quota %d", address, u, err, wantQuota)
		}
	}
	lookup("quota@example.net", 1<<30)
	lookup("Quota@Example.net", 1<<30)
	expect(t, c, b, 0, 1, 1, 1, 1)
	for range 2 {
		if u, err := c.Lookup(ctx, "nobody@example.org"); !errors.Is(err, userdb.ErrNotFound) || u != nil {
			t.Fatalf("Lookup(unknown) = %v, %v", u, err)
		}
	}
	expect(t, c, b, 0, 2, 2, 2, 2)
	// LookupRecipient goes through the cache too.
	if u, err := userdb.LookupRecipient(ctx, c, "quota+x@example.net", "+"); err != nil || u.Address != "quota@example.net" {
		t.Fatalf("LookupRecipient = %v, %v", u, err)
	}
	expect(t, c, b, 0, 3, 3, 3, 3)
	// A change made on the backend directly is seen after Flush, not before.
	if err := b.SetQuota(ctx, "quota@example.net", 5); err != nil {
		t.Fatal(err)
	}
	lookup("quota@example.net", 1<<30)
	c.Flush("QUOTA@example.net")
	lookup("quota@example.net", 5)
	expect(t, c, b, 0, 4, 4, 4, 3)
	// The unknown answer expires after NegativeTTL, the user after PositiveTTL.
	if err := b.AddUser(ctx, "nobody@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(neg - time.Nanosecond)
	if _, err := c.Lookup(ctx, "nobody@example.org"); !errors.Is(err, userdb.ErrNotFound) {
		t.Fatalf("before NegativeTTL: %v", err)
	}
	clk.Advance(time.Nanosecond)
	lookup("nobody@example.org", 0)
	expect(t, c, b, 0, 5, 5, 5, 3)
}

func TestManagerFlushes(t *testing.T) {
	c, b, _ := setup(t, Options{})
	auth(t, c, "alice@example.org", alicePW, true)
	auth(t, c, "alice@example.org", "new pw", false)
	if err := c.SetPassword(ctx, "Alice@example.org", "new pw"); err != nil {
		t.Fatal(err)
	}
	auth(t, c, "alice@example.org", alicePW, false)
	auth(t, c, "alice@example.org", "new pw", true)

	auth(t, c, "new@example.org", "pw", false)
	if _, err := c.Lookup(ctx, "new@example.org"); !errors.Is(err, userdb.ErrNotFound) {
		t.Fatal(err)
	}
	if err := c.AddUser(ctx, "new@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	auth(t, c, "new@example.org", "pw", true)
	if _, err := c.Lookup(ctx, "new@example.org"); err != nil {
		t.Fatal(err)
	}

	if err := c.DeleteUser(ctx, "new@example.org"); err != nil {
		t.Fatal(err)
	}
	auth(t, c, "new@example.org", "pw", false)
	if _, err := c.Lookup(ctx, "new@example.org"); !errors.Is(err, userdb.ErrNotFound) {
		t.Fatal(err)
	}
	list, err := c.ListUsers(ctx)
	if err != nil || len(list) != len(userdbtest.Seeds) {
		t.Fatalf("ListUsers = %d, %v", len(list), err)
	}
	// Every call above went to the backend; alice's two and new's two
	// answers since the delete are cached.
	expect(t, c, b, 7, 3, 0, 10, 4)

	// FlushAll empties the cache.
	c.FlushAll()
	expect(t, c, b, 7, 3, 0, 10, 0)
	auth(t, c, "alice@example.org", "new pw", true)
	expect(t, c, b, 8, 3, 0, 11, 1)
}

func TestReadOnlyInner(t *testing.T) {
	b := newBackend(t, userdbtest.Seeds)
	c := New(struct {
		userdb.PassDB
		userdb.UserDB
	}{b, b}, Options{})
	for _, err := range []error{
		c.AddUser(ctx, "x@example.org", "pw"),
		c.SetPassword(ctx, "alice@example.org", "pw"),
		c.DeleteUser(ctx, "alice@example.org"),
	} {
		if !errors.Is(err, userdb.ErrReadOnly) {
			t.Errorf("write through a read-only backend = %v, want ErrReadOnly", err)
		}
	}
	if _, err := c.ListUsers(ctx); !errors.Is(err, userdb.ErrReadOnly) {
		t.Errorf("ListUsers = %v, want ErrReadOnly", err)
	}
}

func TestLRU(t *testing.T) {
	c, b, _ := setup(t, Options{MaxEntries: 3})
	for _, a := range []string{"alice@example.org", "bob@example.org", "dave@example.org"} {
		if _, err := c.Lookup(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, c, b, 0, 3, 0, 3, 3)
	c.Lookup(ctx, "alice@example.org") // alice is now the most recent; bob the least
	c.Lookup(ctx, "quota@example.net") // evicts bob
	expect(t, c, b, 0, 4, 1, 4, 3)
	c.Lookup(ctx, "alice@example.org") // hit
	c.Lookup(ctx, "dave@example.org")  // hit
	c.Lookup(ctx, "bob@example.org")   // miss, evicts quota
	expect(t, c, b, 0, 5, 3, 5, 3)
	c.Lookup(ctx, "quota@example.net") // miss, evicts alice
	c.Lookup(ctx, "dave@example.org")  // hit
	expect(t, c, b, 0, 6, 4, 6, 3)
	// Failed logins with many passwords cannot grow it past the bound.
	for i := range 20 {
		auth(t, c, "alice@example.org", fmt.Sprint("guess", i), false)
	}
	expect(t, c, b, 20, 6, 4, 26, 3)
}

func TestUnavailableNotCached(t *testing.T) {
	c, b, _ := setup(t, Options{})
	auth(t, c, "alice@example.org", alicePW, true)
	b.Down(t)
	for range 2 {
		if u, err := c.Lookup(ctx, "bob@example.org"); !errors.Is(err, userdb.ErrUnavailable) || u != nil {
			t.Fatalf("Lookup with backend down = %v, %v", u, err)
		}
		if _, err := c.Authenticate(ctx, "bob@example.org", "Secret"); !errors.Is(err, userdb.ErrUnavailable) {
			t.Fatalf("Authenticate with backend down = %v", err)
		}
	}
	// What was cached before stays valid; nothing was added.
	auth(t, c, "alice@example.org", alicePW, true)
	expect(t, c, b, 3, 2, 1, 5, 1)

	// A cancelled context is not cached either.
	c2, b2, _ := setup(t, Options{})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for range 2 {
		if _, err := c2.Authenticate(cctx, "alice@example.org", alicePW); err == nil {
			t.Fatal("Authenticate with a cancelled context succeeded")
		}
	}
	expect(t, c2, b2, 2, 0, 0, 2, 0)
}

// TestConsistentRead: a call under userdb.WithConsistentRead skips the
// cache, asks the backend with that context and stores the fresh answer;
// a Bypass window without BypassContext reads with it too.
func TestConsistentRead(t *testing.T) {
	c, b, clk := setup(t, Options{})
	fresh := userdb.WithConsistentRead(ctx)
	auth(t, c, "alice@example.org", alicePW, true)
	auth(t, c, "alice@example.org", alicePW, true)
	expect(t, c, b, 1, 0, 1, 1, 1)
	// The password changes behind the cache's back (another server).
	if err := b.DB.SetPassword(ctx, "alice@example.org", "new"); err != nil {
		t.Fatal(err)
	}
	auth(t, c, "alice@example.org", alicePW, true) // stale, from the cache
	if u, err := c.Authenticate(fresh, "alice@example.org", alicePW); !errors.Is(err, userdb.ErrAuthFailed) {
		t.Fatalf("consistent Authenticate with the old password = %v, %v; want ErrAuthFailed", u, err)
	}
	expect(t, c, b, 2, 0, 2, 2, 1)
	auth(t, c, "alice@example.org", alicePW, false) // the fresh answer was stored
	expect(t, c, b, 2, 0, 3, 2, 1)
	if u, err := c.Lookup(fresh, "bob@example.org"); err != nil || u.Address != "bob@example.org" {
		t.Fatalf("consistent Lookup = %v, %v", u, err)
	}
	if _, err := c.Lookup(fresh, "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	expect(t, c, b, 2, 2, 3, 4, 2)
	if n := b.fresh.Load(); n != 3 {
		t.Fatalf("backend calls with WithConsistentRead = %d, want 3", n)
	}
	// Bypass with the default BypassContext.
	c.Bypass("bob@example.org", clk.Now().Add(time.Second))
	if _, err := c.Lookup(ctx, "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if n := b.fresh.Load(); n != 4 {
		t.Fatalf("Bypass read without WithConsistentRead (%d fresh calls, want 4)", n)
	}
}

func TestBypass(t *testing.T) {
	c, b, clk := setup(t, Options{BypassContext: func(ctx context.Context) context.Context {
		return context.WithValue(ctx, markKey{}, true)
	}})
	auth(t, c, "alice@example.org", alicePW, true)
	auth(t, c, "bob@example.org", "Secret", true)
	expect(t, c, b, 2, 0, 0, 2, 2)
	c.Bypass("Alice@Example.org", clk.Now().Add(2*time.Second))
	expect(t, c, b, 2, 0, 0, 2, 1) // alice flushed
	auth(t, c, "alice@example.org", alicePW, true)
	auth(t, c, "alice@example.org", alicePW, true)
	if _, err := c.Lookup(ctx, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	auth(t, c, "bob@example.org", "Secret", true) // other users stay cached
	expect(t, c, b, 4, 1, 1, 5, 1)
	if b.marked.Load() != 3 {
		t.Fatalf("BypassContext applied to %d backend calls, want 3", b.marked.Load())
	}
	clk.Advance(2 * time.Second) // the window ends at until
	auth(t, c, "alice@example.org", alicePW, true)
	auth(t, c, "alice@example.org", alicePW, true)
	expect(t, c, b, 5, 1, 2, 6, 2)
	if b.marked.Load() != 3 {
		t.Fatalf("BypassContext applied after the window: %d", b.marked.Load())
	}
	// A window in the past only flushes.
	c.Bypass("alice@example.org", clk.Now())
	auth(t, c, "alice@example.org", alicePW, true)
	auth(t, c, "alice@example.org", alicePW, true)
	expect(t, c, b, 6, 1, 3, 7, 2)
}

func TestPasswordNotKept(t *testing.T) {
	c1, _, _ := setup(t, Options{})
	c2, _, _ := setup(t, Options{})
	m := c1.passwordMAC("alice@example.org", alicePW)
	if m != c1.passwordMAC("alice@example.org", alicePW) {
		t.Fatal("MAC not deterministic within a cache")
	}
	if m == c2.passwordMAC("alice@example.org", alicePW) {
		t.Fatal("two caches share the MAC key")
	}
	if m == c1.passwordMAC("bob@example.org", alicePW) || m == c1.passwordMAC("alice@example.org", alicePW+" ") {
		t.Fatal("MAC ignores the address or the password")
	}
	// (address, password) pairs that concatenate alike differ.
	if c1.passwordMAC("a@b", "c") == c1.passwordMAC("a@bc", "") {
		t.Fatal("MAC is ambiguous across the address/password boundary")
	}
	auth(t, c1, "alice@example.org", alicePW, true)
	auth(t, c1, "alice@example.org", "wrong", false)
	c1.mu.Lock()
	defer c1.mu.Unlock()
	for k, el := range c1.entries {
		e := el.Value.(*entry)
		if k.mac != c1.passwordMAC("alice@example.org", alicePW) && k.mac != c1.passwordMAC("alice@example.org", "wrong") {
			t.Errorf("entry key %x is not a MAC of a tried password", k.mac)
		}
		if e.err != nil && (contains(e.err.Error(), alicePW) || contains(e.err.Error(), "wrong")) {
			t.Errorf("cached error holds the password: %v", e.err)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestConcurrentFlush races logins against flushes (for -race) and checks
// that a password change through the cache is never hidden by a result
// read before it.
func TestConcurrentFlush(t *testing.T) {
	c, _, _ := setup(t, Options{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.Authenticate(ctx, "bob@example.org", "Secret")
				c.Lookup(ctx, "bob@example.org")
				if i == 0 {
					c.Flush("bob@example.org")
				}
				if i == 1 {
					c.FlushAll()
				}
			}
		}()
	}
	if err := c.SetPassword(ctx, "bob@example.org", "changed"); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	auth(t, c, "bob@example.org", "Secret", false)
	auth(t, c, "bob@example.org", "changed", true)
}
