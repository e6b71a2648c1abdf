package imapserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawClient speaks IMAP by hand for tests that need exact bytes.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	if g := c.line(); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("greeting %q", g)
	}
	return c
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (partial %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// readLine is line without t.Fatal, for use off the test goroutine.
func (c *rawClient) readLine() (string, error) {
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.br.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// expect reads lines until one starts with prefix and returns it.
func (c *rawClient) expect(prefix string) string {
	c.t.Helper()
	for {
		l := c.line()
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
}

// TestTraceRedactsCredentials: with Options.Trace, protocol lines are
// logged but no password (LOGIN, literal, SASL) ever reaches the log.
func TestTraceRedactsCredentials(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	h := slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug})
	env := newTestEnv(t, func(o *Options) { o.Logger = slog.New(h); o.Trace = true })
	c := dialRaw(t, env.addr)
	c.send("a1 LOGIN alice secret\r\n")
	c.expect("a1 OK")
	c.send("a2 LOGOUT\r\n")
	c.expect("a2 OK")
	c2 := dialRaw(t, env.addr)
	c2.send("b1 LOGIN {5}\r\n")
	c2.expect("+")
	c2.send("alice {6+}\r\nsecret\r\n")
	c2.expect("b1 OK")
	c2.send("b2 NOOP\r\n")
	c2.expect("b2 OK")
	c2.send("b3 APPEND INBOX {18+}\r\nSubject: s\r\n\r\nbody\r\n")
	c2.expect("b3 OK")
	c2.send("b4 EXAMINE INBOX\r\n")
	c2.expect("b4 OK")
	c2.send("b5 FETCH 1 BODY[]\r\n")
	c2.expect("b5 OK")
	c3 := dialRaw(t, env.addr)
	c3.send("c1 AUTHENTICATE PLAIN\r\n")
	c3.expect("+")
	c3.send("AGFsaWNlAHNlY3JldA==\r\n")
	c3.expect("c1 OK")
	c3.send("c2 NOOP\r\n")
	c3.expect("c2 OK")
	// Server lines are logged just after they are written: wait for all.
	wants := []string{"C: a1 LOGIN <redacted>", "C: b2 NOOP", "C: c1 AUTHENTICATE <redacted>", "S: c2 OK NOOP completed",
		"C: b3 APPEND INBOX {18+}", "C: <18 literal bytes>", "S: * 1 FETCH (BODY[] {18}", "S: <18 literal bytes>", "S: )"}
	var log string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		log = buf.String()
		mu.Unlock()
		all := true
		for _, w := range wants {
			all = all && strings.Contains(log, w)
		}
		if all {
			break
		}
	}
	for _, secret := range []string{"secret", "AGFsaWNlAHNlY3JldA==", "Subject: s"} {
		if strings.Contains(log, secret) {
			t.Errorf("log contains %q:\n%s", secret, log)
		}
	}
	for _, want := range wants {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestAppendTooBig: a synchronizing literal over MaxAppendSize is refused
// before the client sends it; a LITERAL+ one is skipped; the connection
// goes on.
func TestAppendTooBig(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.MaxAppendSize = 100 })
	c := dialRaw(t, env.addr)
	c.send("a1 LOGIN alice secret\r\n")
	c.expect("a1 OK")
	c.send("a2 APPEND INBOX {200}\r\n")
	if l := c.line(); l != "a2 NO [TOOBIG] Literal too large" {
		t.Fatalf("got %q", l)
	}
	c.send("a3 APPEND INBOX {200+}\r\n" + strings.Repeat("x", 200) + "\r\n")
	if l := c.line(); l != "a3 NO [TOOBIG] Literal too large" {
		t.Fatalf("got %q", l)
	}
	c.send("a4 APPEND INBOX {13+}\r\nSubject: x\r\n\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a4 OK [APPENDUID ") {
		t.Fatalf("got %q", l)
	}
}

// TestShutdown: idle connections and connections in IDLE get BYE;
// Shutdown returns once they are gone, and Serve returns nil.
func TestShutdown(t *testing.T) {
	st := newTestStore(t)
	srv := New(Options{Store: st, Auth: testUsers, Logger: testLogger(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln, false) }()
	idle := dialRaw(t, ln.Addr().String())
	waiting := dialRaw(t, ln.Addr().String())
	idle.send("a1 LOGIN alice secret\r\n")
	idle.expect("a1 OK")
	idle.send("a2 SELECT INBOX\r\n")
	idle.expect("a2 OK")
	idle.send("a3 IDLE\r\n")
	idle.expect("+ ")
	waiting.send("b1 NOOP\r\n")
	waiting.expect("b1 OK")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for _, c := range []*rawClient{idle, waiting} {
		if l := c.line(); l != "* BYE Server shutting down" {
			t.Errorf("got %q", l)
		}
		if _, err := c.br.ReadString('\n'); err != io.EOF {
			t.Errorf("after BYE: %v", err)
		}
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still open")
	}
}

// TestMatchPattern is a table test of LIST wildcards (RFC 3501 §6.3.8).
func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "a/b/c", true},
		{"%", "a", true},
		{"%", "a/b", false},
		{"a/%", "a/b", true},
		{"a/%", "a/b/c", false},
		{"a/*", "a/b/c", true},
		{"a*c", "abc", true},
		{"a*c", "a/b/c", true},
		{"a%c", "a/b/c", false},
		{"a%c", "abbc", true},
		{"INBOX", "INBOX", true},
		{"INBOX", "INBOX/x", false},
		{"", "", true},
		{"x", "", false},
		{"*%*", "", true},
		{"%/%", "a/b", true},
		{"Entwürfe*", "Entwürfe/Alt", true},
		{"inb*", "INBOX", true},
		{"Inbox/%", "INBOX/Sub", true},
		{"inbox/sub", "INBOX/Sub", false},
		{"%x", "INBOX", true},
		{"%y", "INBOX", false},
		{"inbox", "Inbox2", false},
	} {
		if got := matchPattern(tc.pattern, tc.name); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestFormatList(t *testing.T) {
	for _, tc := range []struct {
		in   []uint32
		want string
	}{
		{nil, ""},
		{[]uint32{1}, "1"},
		{[]uint32{1, 2, 3, 5}, "1:3,5"},
		{[]uint32{4, 5, 6, 2}, "4:6,2"},
		{[]uint32{7, 9, 10}, "7,9:10"},
	} {
		if got := formatList(tc.in); got != tc.want {
			t.Errorf("formatList(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := formatSet([]uint32{5, 1, 2, 2, 3}); got != "1:3,5" {
		t.Errorf("formatSet = %q", got)
	}
}

// TestLiteralMinus: with Options.LiteralMinus the server advertises
// LITERAL- and refuses {n+} over 4096 bytes with BAD (RFC 7888 §4), then
// skips the literal and goes on.
func TestLiteralMinus(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.LiteralMinus = true })
	c := dialRaw(t, env.addr)
	c.send("a1 CAPABILITY\r\n")
	if l := c.line(); !strings.Contains(l, " LITERAL- ") || strings.Contains(l, "LITERAL+") {
		t.Fatalf("capabilities %q", l)
	}
	c.expect("a1 OK")
	c.send("a2 LOGIN {5000+}\r\n" + strings.Repeat("x", 5000) + " secret\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a2 BAD ") {
		t.Fatalf("got %q", l)
	}
	c.send("a3 LOGIN {5+}\r\nalice secret\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a3 OK ") {
		t.Fatalf("got %q", l)
	}
}

// TestNULInLiteral: BODY[] never carries NUL (RFC 3501 §9: literals are
// CHAR8); BINARY[] sends the exact bytes as literal8 (RFC 3516 §4.3).
func TestNULInLiteral(t *testing.T) {
	env := newTestEnv(t, nil)
	c := dialRaw(t, env.addr)
	c.send("a1 LOGIN alice secret\r\n")
	c.expect("a1 OK")
	msg := "Subject: nul\r\n\r\na\x00b\r\n"
	c.send("a2 APPEND INBOX ~{21+}\r\n" + msg + "\r\n") // literal8, RFC 3516 §4.4
	c.expect("a2 OK")
	c.send("a3 EXAMINE INBOX\r\n")
	c.expect("a3 OK")
	c.send("a4 FETCH 1 (BODY[TEXT] BINARY[] BINARY.SIZE[])\r\n")
	want := "* 1 FETCH (BODY[TEXT] {5}\r\na\x80b\r\n BINARY[] ~{21}\r\n" + msg + " BINARY.SIZE[] 21)\r\n"
	got := make([]byte, len(want))
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != want {
		t.Fatalf("got %q, %v\nwant %q", got, err, want)
	}
	if l := c.line(); l != "a4 OK FETCH completed" {
		t.Fatalf("got %q", l)
	}
}

// TestShutdownForce: a command still in progress when the Shutdown
// context ends (an APPEND whose literal never comes) is cut off; Shutdown
// returns the context's error after the connection is gone.
func TestShutdownForce(t *testing.T) {
	st := newTestStore(t)
	srv := New(Options{Store: st, Auth: testUsers, Logger: testLogger(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln, false) }()
	c := dialRaw(t, ln.Addr().String())
	c.send("a1 LOGIN alice secret\r\n")
	c.expect("a1 OK")
	c.send("a2 APPEND INBOX {100}\r\n")
	c.expect("+ ")
	c.send("only part of it")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown = %v, want %v", err, context.DeadlineExceeded)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rest, err := io.ReadAll(c.br); err != nil || strings.Contains(string(rest), "a2 OK") {
		t.Fatalf("after forced close: %q, %v", rest, err)
	}
	// Nothing half-stored.
	acct, err := st.Account(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := acct.Mailbox(context.Background(), "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if mb.Messages != 0 {
		t.Fatalf("INBOX has %d messages", mb.Messages)
	}
}

// TestFetchBlobUnavailable: when the blob store is down, FETCH of body
// data answers NO [UNAVAILABLE] before any of that message's response is
// written (a client must never cache a damaged body); index data is still
// served; once the store is back the same FETCH works.
func TestFetchBlobUnavailable(t *testing.T) {
	st, blobs := newTestStoreBlobs(t)
	srv := New(Options{Store: st, Auth: testUsers, Logger: testLogger(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln, false)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	c := dialRaw(t, ln.Addr().String())
	c.send("a1 LOGIN alice secret\r\n")
	c.expect("a1 OK")
	c.send("a2 APPEND INBOX {19+}\r\nSubject: x\r\n\r\nhello\r\n")
	c.expect("a2 OK")
	c.send("a3 SELECT INBOX\r\n")
	c.expect("a3 OK")
	blobs.down.Store(true)
	c.send("a4 FETCH 1 (UID BODY[TEXT])\r\n")
	if l := c.line(); l != "a4 NO [UNAVAILABLE] Temporary failure, try again later" {
		t.Fatalf("got %q", l)
	}
	c.send("a5 FETCH 1 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Subject)] FLAGS)\r\n")
	if l := c.line(); l != "* 1 FETCH (UID 1 RFC822.SIZE 19 BODY[HEADER.FIELDS (Subject)] {14}" {
		t.Fatalf("got %q", l)
	}
	c.expect("a5 OK")
	blobs.down.Store(false)
	c.send("a6 FETCH 1 BODY[TEXT]\r\n")
	if l := c.line(); l != "* 1 FETCH (BODY[TEXT] {5}" {
		t.Fatalf("got %q", l)
	}
	// \Seen was not set by the failed a4: it is set (and reported) now.
	if l := c.line(); l != `hello FLAGS (\Seen \Recent))` {
		t.Fatalf("got %q", l)
	}
	c.expect("a6 OK")
}

// TestAuthFailureDelay: a failed LOGIN is answered only after the delay;
// a good one is not delayed.
func TestAuthFailureDelay(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.AuthFailureDelay = 300 * time.Millisecond })
	c := dialRaw(t, env.addr)
	start := time.Now()
	c.send("a1 LOGIN alice wrong\r\n")
	if l := c.line(); l != "a1 NO [AUTHENTICATIONFAILED] Authentication failed" {
		t.Fatalf("got %q", l)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("failed LOGIN answered after %v, want at least 300ms", d)
	}
	c.send("a2 LOGIN alice secret\r\n")
	c.expect("a2 OK")
}

// TestShutdownInLiteral: a client stalled inside an APPEND literal gets
// "* BYE" when Shutdown's context ends, and Shutdown returns soon after.
func TestShutdownInLiteral(t *testing.T) {
	st := newTestStore(t)
	srv := New(Options{Store: st, Auth: testUsers, Logger: testLogger(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln, false) }()
	c := dialRaw(t, ln.Addr().String())
	c.send("a1 LOGIN alice secret\r\n")
	c.expect("a1 OK")
	c.send("a2 APPEND INBOX {100000}\r\n")
	c.expect("+ ")
	c.send("Subject: stalled\r\n")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("Shutdown took %v, want about its 300ms context", d)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if l := c.line(); l != "* BYE Server shutting down" {
		t.Errorf("got %q, want * BYE Server shutting down", l)
	}
	if _, err := c.br.ReadString('\n'); err != io.EOF {
		t.Errorf("after BYE: %v, want EOF", err)
	}
}
