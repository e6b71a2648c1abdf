package throttle

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)} }

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

var (
	attacker = netip.MustParseAddr("198.51.100.7")
	good     = netip.MustParseAddr("203.0.113.9")
	nobody   = netip.Addr{}
)

const ms = time.Millisecond

func TestDoubling(t *testing.T) {
	clk := newClock()
	l := New(Options{Now: clk.Now})
	want := []time.Duration{0, 250 * ms, 500 * ms, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second, 15 * time.Second, 15 * time.Second}
	for i, w := range want {
		if d := l.Delay(attacker, "alice@example.org"); d != w {
			t.Fatalf("after %d failures: Delay = %v, want %v", i, d, w)
		}
		l.Failure(attacker, "alice@example.org")
	}
	// Another account from the same IP waits as long (per IP) ...
	if d := l.Delay(attacker, "bob@example.org"); d != 15*time.Second {
		t.Errorf("attacker IP, other account: %v, want 15s", d)
	}
	// ... and so does the account from a good IP (per account): slowed,
	// never locked (the caller checks the password after the wait).
	if d := l.Delay(good, "alice@example.org"); d != 15*time.Second {
		t.Errorf("good IP, attacked account: %v, want 15s", d)
	}
	if d := l.Delay(good, "bob@example.org"); d != 0 {
		t.Errorf("good IP, other account: %v, want 0", d)
	}
	if s := l.Stats(); s != (Stats{IPs: 1, Accounts: 1}) {
		t.Errorf("Stats = %+v", s)
	}
}

func TestMaxDelay(t *testing.T) {
	clk := newClock()
	l := New(Options{Now: clk.Now, BaseDelay: 100 * ms, MaxDelay: 300 * ms})
	var got []time.Duration
	for range 5 {
		l.Failure(attacker, "a")
		got = append(got, l.Delay(attacker, "a"))
	}
	if fmt.Sprint(got) != "[100ms 200ms 300ms 300ms 300ms]" {
		t.Errorf("delays %v", got)
	}
	if l := New(Options{MaxDelay: -1}); l != nil {
		t.Fatalf("MaxDelay < 0: New = %v, want nil", l)
	}
	var off *Limiter
	off.Failure(attacker, "a")
	off.Success(attacker, "a")
	if d := off.Delay(attacker, "a"); d != 0 || off.Stats() != (Stats{}) {
		t.Errorf("nil limiter: Delay = %v", d)
	}
}

// TestDecay: one failure forgiven per DecayInterval without failures.
func TestDecay(t *testing.T) {
	clk := newClock()
	l := New(Options{Now: clk.Now, DecayInterval: time.Minute})
	for range 4 {
		l.Failure(attacker, "a")
	}
	for _, w := range []time.Duration{2 * time.Second, 2 * time.Second, time.Second, 500 * ms, 250 * ms, 0} {
		if d := l.Delay(attacker, "a"); d != w {
			t.Fatalf("at +%v: Delay = %v, want %v", clk.Now().Sub(newClock().Now()), d, w)
		}
		if w == 2*time.Second && clk.Now().Equal(newClock().Now()) {
			clk.Advance(59 * time.Second) // not yet a whole interval
			continue
		}
		clk.Advance(time.Minute)
	}
	if s := l.Stats(); s != (Stats{}) {
		t.Errorf("decayed records not dropped: %+v", s)
	}
	// The count is capped a little above the max, so a long attack is
	// forgotten in bounded time: 7 failures reach 15s, cap 9.
	for range 1000 {
		l.Failure(attacker, "a")
	}
	clk.Advance(2 * time.Minute)
	if d := l.Delay(attacker, "a"); d != 15*time.Second {
		t.Errorf("2 intervals after 1000 failures: %v, want 15s", d)
	}
	clk.Advance(7 * time.Minute)
	if d := l.Delay(attacker, "a"); d != 0 {
		t.Errorf("9 intervals after 1000 failures: %v, want 0", d)
	}
}

// TestSuccess: a login forgets the account's failures but not the IP's.
func TestSuccess(t *testing.T) {
	clk := newClock()
	l := New(Options{Now: clk.Now})
	for range 3 {
		l.Failure(attacker, "alice")
	}
	l.Success(attacker, "alice")
	if d := l.Delay(good, "alice"); d != 0 {
		t.Errorf("account after success: %v, want 0", d)
	}
	if d := l.Delay(attacker, "mallory"); d != time.Second {
		t.Errorf("IP after a success: %v, want 1s (not forgiven)", d)
	}
}

// TestUnknownSame: the limiter cannot tell an unknown user from a known
// one; both are keys with the same arithmetic.
func TestUnknownSame(t *testing.T) {
	clk := newClock()
	l := New(Options{Now: clk.Now})
	for range 3 {
		l.Failure(good, "alice@example.org")
		l.Failure(attacker, "nobody@example.org")
	}
	if a, b := l.Delay(netip.Addr{}, "alice@example.org"), l.Delay(netip.Addr{}, "nobody@example.org"); a != b || a != time.Second {
		t.Errorf("known %v, unknown %v; want 1s each", a, b)
	}
}

func TestKeys(t *testing.T) {
	clk := newClock()
	l := New(Options{Now: clk.Now})
	// IPv6: one /64 is one key.
	l.Failure(netip.MustParseAddr("2001:db8:1:2::1"), "a")
	if d := l.Delay(netip.MustParseAddr("2001:db8:1:2:ffff::9"), "b"); d != 250*ms {
		t.Errorf("same /64: %v, want 250ms", d)
	}
	if d := l.Delay(netip.MustParseAddr("2001:db8:1:3::1"), "b"); d != 0 {
		t.Errorf("other /64: %v, want 0", d)
	}
	// IPv4-mapped IPv6 is the IPv4 address.
	l.Failure(netip.MustParseAddr("::ffff:192.0.2.1"), "c")
	if d := l.Delay(netip.MustParseAddr("192.0.2.1"), "d"); d != 250*ms {
		t.Errorf("mapped: %v, want 250ms", d)
	}
	// Loopback and unix sockets: only the account counts.
	for range 3 {
		l.Failure(netip.MustParseAddr("127.0.0.1"), "e")
		l.Failure(netip.MustParseAddr("::1"), "e")
		l.Failure(nobody, "e")
	}
	if d := l.Delay(netip.MustParseAddr("127.0.0.1"), "f"); d != 0 {
		t.Errorf("loopback IP counted: %v", d)
	}
	if d := l.Delay(netip.MustParseAddr("127.0.0.1"), "e"); d != 15*time.Second {
		t.Errorf("account over loopback: %v, want 15s (9 failures)", d)
	}
	lb := New(Options{Now: clk.Now, TrackLoopback: true})
	lb.Failure(netip.MustParseAddr("127.0.0.1"), "e")
	if d := lb.Delay(netip.MustParseAddr("127.0.0.1"), "f"); d != 250*ms {
		t.Errorf("TrackLoopback: %v, want 250ms", d)
	}
	// Long account names share their first 256 bytes.
	long := strings.Repeat("x", 300)
	l.Failure(nobody, long+"1")
	if d := l.Delay(nobody, long+"2"); d != 250*ms {
		t.Errorf("long account: %v", d)
	}
}

// TestBounded: at most MaxEntries per table, least recently failed out.
func TestBounded(t *testing.T) {
	clk := newClock()
	l := New(Options{Now: clk.Now, MaxEntries: 100})
	victim := netip.MustParseAddr("192.0.2.200")
	l.Failure(victim, "victim")
	for i := range 1000 {
		l.Failure(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), fmt.Sprintf("u%d", i))
	}
	if s := l.Stats(); s != (Stats{IPs: 100, Accounts: 100}) {
		t.Fatalf("Stats = %+v, want 100 each", s)
	}
	if d := l.Delay(victim, "victim"); d != 0 {
		t.Errorf("evicted keys still delay: %v", d)
	}
	if d := l.Delay(netip.AddrFrom4([4]byte{10, 0, 3, 231}), "u999"); d != 250*ms {
		t.Errorf("newest key: %v, want 250ms", d)
	}
}

func TestWait(t *testing.T) {
	l := New(Options{BaseDelay: 50 * ms})
	start := time.Now()
	if err := l.Wait(context.Background(), attacker, "a"); err != nil || time.Since(start) > time.Second {
		t.Fatalf("Wait without failures = %v after %v", err, time.Since(start))
	}
	l.Failure(attacker, "a")
	start = time.Now()
	if err := l.Wait(context.Background(), attacker, "a"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*ms {
		t.Errorf("Wait returned after %v, want >= 50ms", d)
	}
	for range 10 {
		l.Failure(attacker, "a")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*ms)
	defer cancel()
	start = time.Now()
	if err := l.Wait(ctx, attacker, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with a short ctx = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Wait ignored ctx: %v", d)
	}
}

func TestConcurrent(t *testing.T) {
	l := New(Options{MaxEntries: 50})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				ip := netip.AddrFrom4([4]byte{10, byte(g), 0, byte(i)})
				l.Failure(ip, fmt.Sprint(i%70))
				l.Delay(ip, "x")
				if i%7 == 0 {
					l.Success(ip, fmt.Sprint(i%70))
				}
			}
		}()
	}
	wg.Wait()
	if s := l.Stats(); s.IPs > 50 || s.Accounts > 50 {
		t.Errorf("Stats = %+v, want <= 50 each", s)
	}
}
