package imapserver

import (
	"bufio"
	"encoding/base64"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/throttle"
)

// dialFrom is dialRaw from a chosen loopback source address (Linux
// routes all of 127/8 to lo), so tests can be several client IPs.
func dialFrom(t *testing.T, addr, from string) *rawClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot dial from %s: %v", from, err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	if g := c.line(); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("greeting %q", g)
	}
	return c
}

// timed sends a command and returns its tagged answer and how long it
// took.
func timed(c *rawClient, tag, cmd string) (string, time.Duration) {
	c.t.Helper()
	start := time.Now()
	c.send(tag + " " + cmd + "\r\n")
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return l, time.Since(start)
		}
	}
}

// plain is a SASL PLAIN initial response (RFC 4616).
func plain(authz, authc, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + authc + "\x00" + pw))
}

const failedAnswer = "NO [AUTHENTICATIONFAILED] Authentication failed"

// TestThrottleLogin: failed logins from one IP make its next attempts
// wait longer (doubling), an unknown user counts and answers exactly
// like a wrong password, and a correct password still logs in after the
// wait (never a hard lock).
func TestThrottleLogin(t *testing.T) {
	const base = 100 * time.Millisecond
	thr := throttle.New(throttle.Options{BaseDelay: base, MaxDelay: 4 * base, TrackLoopback: true})
	env := newTestEnv(t, func(o *Options) { o.Throttle = thr })
	c := dialFrom(t, env.addr, "127.0.0.2")
	ip := netip.MustParseAddr("127.0.0.2")
	steps := []struct {
		cmd, want string
		min       time.Duration // the wait the earlier failures earned
	}{
		{"LOGIN alice wrong", failedAnswer, 0},
		{"LOGIN nobody wrong", failedAnswer, base},
		{"LOGIN alice wrong2", failedAnswer, 2 * base},
		{"LOGIN alice secret", "OK", 4 * base},
	}
	for i, s := range steps {
		tag := string(rune('a' + i))
		got, took := timed(c, tag, s.cmd)
		if !strings.HasPrefix(got, tag+" "+s.want) {
			t.Fatalf("%s: got %q, want %s", s.cmd, got, s.want)
		}
		if took < s.min {
			t.Errorf("%s answered after %v, want at least %v", s.cmd, took, s.min)
		}
		t.Logf("%s: %v (earned %v)", s.cmd, took.Round(time.Millisecond), s.min)
	}
	// The success forgave alice, not the IP; "nobody" counted like alice.
	if d := thr.Delay(netip.Addr{}, "alice"); d != 0 {
		t.Errorf("alice after login: Delay = %v, want 0", d)
	}
	if d := thr.Delay(netip.Addr{}, "nobody"); d != base {
		t.Errorf("unknown user: Delay = %v, want %v (one failure)", d, base)
	}
	if d := thr.Delay(ip, "x"); d != 4*base {
		t.Errorf("IP after 3 failures and a login: Delay = %v, want %v", d, 4*base)
	}
}

// TestThrottleAccount: failures against one account from one IP slow its
// logins from another IP too, and the right password gets in there.
func TestThrottleAccount(t *testing.T) {
	const base = 100 * time.Millisecond
	thr := throttle.New(throttle.Options{BaseDelay: base, MaxDelay: 3 * base, TrackLoopback: true})
	env := newTestEnv(t, func(o *Options) { o.Throttle = thr })
	bad := dialFrom(t, env.addr, "127.0.0.3")
	for i := range 3 {
		if got, _ := timed(bad, string(rune('a'+i)), "AUTHENTICATE PLAIN "+plain("", "bob", "guess")); got != string(rune('a'+i))+" "+failedAnswer {
			t.Fatalf("got %q", got)
		}
	}
	good := dialFrom(t, env.addr, "127.0.0.4")
	got, took := timed(good, "g1", "LOGIN BOB hunter2")
	if !strings.HasPrefix(got, "g1 OK") {
		t.Fatalf("good IP, right password: %q", got)
	}
	if took < 3*base {
		t.Errorf("good IP for the attacked account answered after %v, want at least %v", took, 3*base)
	}
	t.Logf("attacked account from a good IP: %v", took.Round(time.Millisecond))
	if d := thr.Delay(netip.MustParseAddr("127.0.0.4"), "carol@example.org"); d != 0 {
		t.Errorf("good IP, other account: %v, want 0", d)
	}
}

// TestThrottleDefault: a server made without throttling options has the
// default limiter (serve needs no wiring); loopback clients count per
// account only, so tests and local proxies are not slowed per IP.
func TestThrottleDefault(t *testing.T) {
	env := newTestEnv(t, nil)
	if env.srv.throttle == nil {
		t.Fatal("no default limiter")
	}
	c := dialRaw(t, env.addr)
	if got, _ := timed(c, "a", "LOGIN alice wrong"); got != "a "+failedAnswer {
		t.Fatalf("got %q", got)
	}
	if d := env.srv.throttle.Delay(netip.Addr{}, "alice"); d != throttle.DefaultBaseDelay {
		t.Errorf("account Delay = %v, want %v", d, throttle.DefaultBaseDelay)
	}
	if d := env.srv.throttle.Delay(netip.MustParseAddr("127.0.0.1"), "bob"); d != 0 {
		t.Errorf("loopback IP counted: %v", d)
	}
	off := New(Options{Store: env.store, Auth: testUsers, ThrottleMaxDelay: -1})
	if off.throttle != nil {
		t.Errorf("ThrottleMaxDelay < 0: limiter %v, want none", off.throttle)
	}
}

// TestLoginPolicy: LOGIN normalises with Options.AddressPolicy before
// asking Auth (and throttling).
func TestLoginPolicy(t *testing.T) {
	users := testPassDB{"Carol@example.org": "pw", "carol@example.org": "lower"}
	env := newTestEnv(t, func(o *Options) {
		o.Auth = users
		o.AddressPolicy = userdb.AddressPolicy{KeepLocalCase: true}
	})
	c := dialRaw(t, env.addr)
	if got, _ := timed(c, "a", "LOGIN Carol@EXAMPLE.org pw"); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("keep: LOGIN Carol@EXAMPLE.org = %q", got)
	}
	c2 := dialRaw(t, env.addr)
	if got, _ := timed(c2, "b", "LOGIN carol@example.org pw"); got != "b "+failedAnswer {
		t.Fatalf("keep: LOGIN carol@ with Carol's password = %q", got)
	}
}

// TestThrottleOffByeAfterFive: with throttling off (ThrottleMaxDelay < 0)
// the per-connection rule stays: the fifth failure ends the connection.
func TestThrottleOffByeAfterFive(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.ThrottleMaxDelay = -1 })
	if env.srv.throttle != nil {
		t.Fatal("limiter with ThrottleMaxDelay < 0")
	}
	c := dialRaw(t, env.addr)
	for i := range 4 {
		tag := string(rune('a' + i))
		if got, _ := timed(c, tag, "LOGIN alice wrong"); got != tag+" "+failedAnswer {
			t.Fatalf("failure %d: %q", i+1, got)
		}
	}
	c.send("e LOGIN alice wrong\r\n")
	if l := c.line(); l != "* BYE Too many authentication failures" {
		t.Fatalf("fifth failure: %q, want * BYE", l)
	}
}
