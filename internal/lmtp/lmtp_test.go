package lmtp_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bucketmail/bucketmail/internal/blob"
	blobfs "github.com/bucketmail/bucketmail/internal/blob/fs"
	"github.com/bucketmail/bucketmail/internal/delivery"
	"github.com/bucketmail/bucketmail/internal/lmtp"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/embedded"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
)

// faultyBlobs wraps a real blob store; while fail is set Put returns
// blob.ErrUnavailable, and while block is set Put waits for it to be
// closed (or for ctx).
type faultyBlobs struct {
	blob.Store
	mu      sync.Mutex
	fail    bool
	block   chan struct{}
	entered chan struct{} // receives once per blocked Put
}

func (f *faultyBlobs) Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.Metadata) error {
	f.mu.Lock()
	fail, block, entered := f.fail, f.block, f.entered
	f.mu.Unlock()
	if fail {
		return fmt.Errorf("blob: put %s: %w", key, blob.ErrUnavailable)
	}
	if block != nil {
		if entered != nil {
			entered <- struct{}{}
		}
		select {
		case <-block:
		case <-ctx.Done():
			return fmt.Errorf("blob: put %s: %w", key, ctx.Err())
		}
	}
	return f.Store.Put(ctx, key, r, size, meta)
}

// faultyUsers wraps a real user database; while down, Lookup fails with
// userdb.ErrUnavailable.
type faultyUsers struct {
	userdb.UserDB
	mu   sync.Mutex
	down bool
}

func (f *faultyUsers) Lookup(ctx context.Context, address string) (*userdb.User, error) {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return nil, fmt.Errorf("userdb: lookup %s: %w", address, userdb.ErrUnavailable)
	}
	return f.UserDB.Lookup(ctx, address)
}

type fixture struct {
	t        *testing.T
	store    *mailstore.Store
	blobs    *faultyBlobs
	users    *faultyUsers
	manager  *embedded.DB
	srv      *lmtp.Server
	addr     string
	spoolDir string
	served   chan error
}

const maxSize = 4096

func newFixture(t *testing.T, network string) *fixture {
	t.Helper()
	return newFixtureSize(t, network, maxSize)
}

func newFixtureSize(t *testing.T, network string, maxSize int64) *fixture {
	t.Helper()
	return newFixtureOpts(t, network, maxSize, nil)
}

// newFixtureOpts is newFixtureSize with set applied to the server's
// Options (when not nil).
func newFixtureOpts(t *testing.T, network string, maxSize int64, set func(*lmtp.Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := metadb.OpenSQLite(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	fsb, err := blobfs.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, blobs: &faultyBlobs{Store: fsb}, spoolDir: filepath.Join(dir, "spool")}
	level := slog.LevelDebug
	if maxSize > 1<<20 {
		level = slog.LevelWarn // the corpus run: one line per message is too many
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	f.store, err = mailstore.Open(ctx, mailstore.Options{DB: db, Blobs: f.blobs, SpoolDir: f.spoolDir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })
	// Delivery never checks passwords: hash them cheaply.
	udb, err := embedded.New(ctx, db, embedded.WithHasher(func(pw string) (string, error) {
		return password.HashArgon2ID(pw, password.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1})
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"alice@example.org", "bob@example.org"} {
		if err := udb.AddUser(ctx, a, "secret-"+a); err != nil {
			t.Fatal(err)
		}
	}
	f.users = &faultyUsers{UserDB: udb}
	f.manager = udb
	opts := lmtp.Options{
		Deliverer: &delivery.Deliverer{
			Store: f.store, Users: f.users, Delimiter: "+", MaxSize: maxSize,
			Hostname: "mx.test", Logger: log,
		},
		Hostname:       "mx.test",
		MaxMessageSize: maxSize,
		Logger:         log,
	}
	if set != nil {
		set(&opts)
	}
	f.srv = lmtp.New(opts)
	var ln net.Listener
	if network == "unix" {
		f.addr = filepath.Join(dir, "lmtp.sock")
		ln, err = lmtp.Listen(f.addr)
	} else {
		ln, err = lmtp.Listen("127.0.0.1:0")
		if ln != nil {
			f.addr = ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	f.served = make(chan error, 1)
	go func() { f.served <- f.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.srv.Shutdown(ctx)
		if err := <-f.served; err != nil {
			t.Errorf("Serve returned %v after Shutdown, want nil", err)
		}
	})
	return f
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (f *fixture) dial() *smtp.Client {
	f.t.Helper()
	network := "tcp"
	if strings.Contains(f.addr, "/") {
		network = "unix"
	}
	conn, err := net.Dial(network, f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	if err := c.Hello("client.example"); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

// inbox returns the stored bytes of every message in the account's
// INBOX, by UID.
func (f *fixture) inbox(account string) [][]byte {
	f.t.Helper()
	ctx := context.Background()
	a, err := f.store.Account(ctx, account)
	if err != nil {
		f.t.Fatal(err)
	}
	mb, err := a.Mailbox(ctx, "INBOX")
	if err != nil {
		f.t.Fatal(err)
	}
	states, err := a.States(ctx, mb.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	if int(mb.Messages) != len(states) {
		f.t.Fatalf("INBOX of %s: Messages = %d, States has %d", account, mb.Messages, len(states))
	}
	uids := make([]uint32, len(states))
	for i, s := range states {
		uids[i] = s.UID
	}
	var out [][]byte
	err = a.Messages(ctx, mb.ID, uids, func(m *mailstore.Message) error {
		rc, err := a.OpenBody(ctx, m, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		var b bytes.Buffer
		if _, err := io.Copy(&b, rc); err != nil {
			return err
		}
		if int64(b.Len()) != m.Size {
			f.t.Errorf("UID %d: RFC822.SIZE %d, body has %d bytes", m.UID, m.Size, b.Len())
		}
		out = append(out, b.Bytes())
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func (f *fixture) spoolEmpty() {
	f.t.Helper()
	ents, err := os.ReadDir(f.spoolDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		f.t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) > 0 {
		f.t.Errorf("spool dir not empty after delivery: %v", names)
	}
}

const body = "From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: hello\r\n" +
	"Message-ID: <1@example.net>\r\n\r\nHello Alice.\r\n.leading dot\r\n"

// prefixRE matches the header fields delivery adds; %s are the
// Delivered-To line (or "") and the "for" clause (or "").
func prefixRE(sender, deliveredTo, forClause string) *regexp.Regexp {
	q := regexp.QuoteMeta
	re := `^Return-Path: <` + q(sender) + `>\r\n`
	if deliveredTo != "" {
		re += `Delivered-To: ` + q(deliveredTo) + `\r\n`
	}
	re += `Received: from client\.example( \(\[127\.0\.0\.1\]\))?\r\n` +
		`\tby mx\.test with LMTP id [0-9A-F]{16}\r\n` +
		`\t\(envelope-from <` + q(sender) + `>\)`
	if forClause != "" {
		re += `\r\n\tfor <` + q(forClause) + `>`
	}
	re += `; [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}\r\n`
	return regexp.MustCompile(re)
}

// checkStored asserts that msg is the added header fields then want.
func checkStored(t *testing.T, msg []byte, re *regexp.Regexp, want string) {
	t.Helper()
	loc := re.FindIndex(msg)
	if loc == nil {
		t.Fatalf("stored message does not start with the expected header fields %s:\n%q", re, msg)
	}
	if got := string(msg[loc[1]:]); got != want {
		t.Fatalf("stored message after the added fields:\n%q\nwant\n%q", got, want)
	}
}

func smtpCode(err error) string {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return fmt.Sprintf("not an SMTPError: %v", err)
	}
	return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
}

func TestMultiRecipientOneUnknown(t *testing.T) {
	f := newFixture(t, "tcp")
	c := f.dial()
	if err := c.Mail("carol@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice@example.org", nil); err != nil {
		t.Fatalf("RCPT alice: %v", err)
	}
	if got := smtpCode(c.Rcpt("nobody@example.org", nil)); got != "550 5.1.1" {
		t.Fatalf("RCPT nobody: %s, want 550 5.1.1", got)
	}
	if err := c.Rcpt("Bob+lists@Example.ORG", nil); err != nil {
		t.Fatalf("RCPT bob+lists: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	resp, err := w.CloseWithLMTPResponse()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if len(resp) != 2 || resp["alice@example.org"] == nil || resp["Bob+lists@Example.ORG"] == nil {
		t.Fatalf("DATA replies = %v, want 250 for alice and Bob+lists", resp)
	}
	if s := resp["alice@example.org"].StatusText; !regexp.MustCompile(`^2\.0\.0 <alice@example\.org> [0-9A-F]{16} Saved$`).MatchString(s) {
		t.Errorf("reply text %q", s)
	}
	// Two recipients: no Delivered-To, no "for" (as Dovecot).
	re := prefixRE("carol@example.net", "", "")
	for _, acct := range []string{"alice@example.org", "bob@example.org"} {
		msgs := f.inbox(acct)
		if len(msgs) != 1 {
			t.Fatalf("%s has %d messages, want 1", acct, len(msgs))
		}
		checkStored(t, msgs[0], re, body)
	}
	f.spoolEmpty()
}

func TestSingleRecipientDeliveredTo(t *testing.T) {
	f := newFixture(t, "tcp")
	c := f.dial()
	if err := c.Mail("", nil); err != nil { // null sender (a bounce)
		t.Fatal(err)
	}
	if err := c.Rcpt("alice+tag@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	msgs := f.inbox("alice@example.org")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	checkStored(t, msgs[0], prefixRE("", "alice+tag@example.org", "alice+tag@example.org"), body)
	if got := f.inbox("bob@example.org"); len(got) != 0 {
		t.Errorf("bob has %d messages, want 0", len(got))
	}
}

// TestSameAccountTwice: two addresses of one account get one copy and two
// 250 replies.
func TestSameAccountTwice(t *testing.T) {
	f := newFixture(t, "tcp")
	c := f.dial()
	if err := c.Mail("carol@example.net", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"alice@example.org", "alice+x@example.org"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	resp, err := w.CloseWithLMTPResponse()
	if err != nil || len(resp) != 2 {
		t.Fatalf("DATA: %v %v, want two 250", resp, err)
	}
	if n := len(f.inbox("alice@example.org")); n != 1 {
		t.Fatalf("alice has %d messages, want 1", n)
	}
}

// rawSession speaks LMTP by hand (go-smtp's client would turn bare LF
// into CRLF itself). It returns every reply line after the DATA dot.
func rawSession(t *testing.T, addr string, rcpts []string, data string) []string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	read := func() string {
		var last string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (after %q)", err, last)
			}
			last = strings.TrimRight(line, "\r\n")
			if len(last) < 4 || last[3] != '-' {
				return last
			}
		}
	}
	expect := func(prefix string) {
		t.Helper()
		if got := read(); !strings.HasPrefix(got, prefix) {
			t.Fatalf("reply %q, want %s", got, prefix)
		}
	}
	expect("220 ")
	fmt.Fprintf(conn, "LHLO client.example\r\n")
	expect("250 ")
	fmt.Fprintf(conn, "MAIL FROM:<carol@example.net>\r\n")
	expect("250 ")
	for _, rc := range rcpts {
		fmt.Fprintf(conn, "RCPT TO:<%s>\r\n", rc)
		expect("250 ")
	}
	fmt.Fprintf(conn, "DATA\r\n")
	expect("354 ")
	io.WriteString(conn, data)
	var replies []string
	for range rcpts {
		replies = append(replies, read())
	}
	fmt.Fprintf(conn, "QUIT\r\n")
	return replies
}

func TestBareLFStoredWithCRLF(t *testing.T) {
	f := newFixture(t, "tcp")
	// Bare LF line ends, one CRLF line, a lone CR inside a line; the
	// terminating dot line itself must follow a CRLF. A dot-stuffed line
	// is only one after a CRLF (a bare LF does not end an SMTP line).
	data := "Subject: lf\nX-Mixed: yes\r\n\nline one\nline two with\rCR\r\n..dotted\n..kept\nlast\r\n.\r\n"
	want := "Subject: lf\r\nX-Mixed: yes\r\n\r\nline one\r\nline two with\rCR\r\n.dotted\r\n..kept\r\nlast\r\n"
	replies := rawSession(t, f.addr, []string{"alice@example.org"}, data)
	if len(replies) != 1 || !strings.HasPrefix(replies[0], "250 2.0.0 <alice@example.org> ") {
		t.Fatalf("replies %q, want one 250 2.0.0", replies)
	}
	msgs := f.inbox("alice@example.org")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	checkStored(t, msgs[0], prefixRE("carol@example.net", "alice@example.org", "alice@example.org"), want)
}

func TestSizeLimit(t *testing.T) {
	f := newFixture(t, "tcp")
	c := f.dial()
	// The real limit is advertised (go-smtp's one byte of slack stays
	// internal, see lmtp.New).
	if size, ok := c.MaxMessageSize(); !ok || size != maxSize {
		t.Errorf("SIZE = %d, %v; want %d", size, ok, maxSize)
	}
	// Declared too large at MAIL FROM.
	if got := smtpCode(c.Mail("carol@example.net", &smtp.MailOptions{Size: maxSize + 1})); got != "552 5.3.4" {
		t.Errorf("MAIL SIZE=%d: %s, want 552 5.3.4", maxSize+1, got)
	}
	// Declared exactly the limit.
	if err := c.Mail("carol@example.net", &smtp.MailOptions{Size: maxSize}); err != nil {
		t.Errorf("MAIL SIZE=%d: %v, want 250", maxSize, err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	// Sent too large.
	if err := c.Mail("carol@example.net", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"alice@example.org", "bob@example.org"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: big\r\n\r\n"+strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 100))
	_, err = w.CloseWithLMTPResponse()
	var le smtp.LMTPDataError
	if !errors.As(err, &le) || len(le) != 2 {
		t.Fatalf("DATA: %v, want per-recipient errors for both", err)
	}
	for rc, se := range le {
		if got := smtpCode(se); got != "552 5.3.4" {
			t.Errorf("%s: %s, want 552 5.3.4", rc, got)
		}
	}
	if n := len(f.inbox("alice@example.org")); n != 0 {
		t.Errorf("alice has %d messages, want 0", n)
	}
	// The session goes on: a message of exactly the limit is stored.
	// One line longer than RFC 5321's 1000 octets, too.
	exact := "Subject: fits\r\n\r\n" + strings.Repeat("x", maxSize-len("Subject: fits\r\n\r\n")-2) + "\r\n"
	if err := c.Mail("carol@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if w, err = c.Data(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, exact)
	if err := w.Close(); err != nil {
		t.Fatalf("message of exactly %d bytes: %v", maxSize, err)
	}
	msgs := f.inbox("alice@example.org")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	checkStored(t, msgs[0], prefixRE("carol@example.net", "alice@example.org", "alice@example.org"), exact)
	f.spoolEmpty()
}

func TestBlobStoreDown(t *testing.T) {
	f := newFixture(t, "tcp")
	f.blobs.mu.Lock()
	f.blobs.fail = true
	f.blobs.mu.Unlock()
	c := f.dial()
	if err := c.Mail("carol@example.net", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"alice@example.org", "bob@example.org"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	_, err = w.CloseWithLMTPResponse()
	var le smtp.LMTPDataError
	if !errors.As(err, &le) || len(le) != 2 {
		t.Fatalf("DATA: %v, want per-recipient errors for both", err)
	}
	for rc, se := range le {
		if got := smtpCode(se); got != "451 4.3.0" {
			t.Errorf("%s: %s, want 451 4.3.0", rc, got)
		}
	}
	for _, acct := range []string{"alice@example.org", "bob@example.org"} {
		if n := len(f.inbox(acct)); n != 0 {
			t.Errorf("%s has %d index rows after a failed blob put, want 0", acct, n)
		}
	}
	f.spoolEmpty()

	// The store comes back: the retry is stored.
	f.blobs.mu.Lock()
	f.blobs.fail = false
	f.blobs.mu.Unlock()
	if err := c.Mail("carol@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if w, err = c.Data(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.inbox("alice@example.org")); n != 1 {
		t.Errorf("alice has %d messages after the retry, want 1", n)
	}
}

func TestUserDBDown(t *testing.T) {
	f := newFixture(t, "tcp")
	c := f.dial()
	if err := c.Mail("carol@example.net", nil); err != nil {
		t.Fatal(err)
	}
	f.users.mu.Lock()
	f.users.down = true
	f.users.mu.Unlock()
	if got := smtpCode(c.Rcpt("alice@example.org", nil)); got != "451 4.3.0" {
		t.Errorf("RCPT with the userdb down: %s, want 451 4.3.0", got)
	}
}

func TestUnixSocket(t *testing.T) {
	f := newFixture(t, "unix")
	if fi, err := os.Stat(f.addr); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket %s: %v, %v; want a 0666 socket", f.addr, fi.Mode(), err)
	}
	c := f.dial()
	if err := c.SendMail("carol@example.net", []string{"bob@example.org"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	msgs := f.inbox("bob@example.org")
	if len(msgs) != 1 {
		t.Fatalf("bob has %d messages, want 1", len(msgs))
	}
	// Over a unix socket there is no client IP in Received.
	checkStored(t, msgs[0], prefixRE("carol@example.net", "bob@example.org", "bob@example.org"), body)
	if bytes.Contains(msgs[0], []byte("([")) {
		t.Errorf("Received names an IP over a unix socket: %q", msgs[0])
	}
}

func TestListenRefusesLiveSocket(t *testing.T) {
	f := newFixture(t, "unix")
	if ln, err := lmtp.Listen(f.addr); err == nil {
		ln.Close()
		t.Fatal("Listen on a socket with a live server succeeded, want an error")
	}
}

// TestShutdownWaitsForDelivery: Shutdown tells an idle connection 421,
// lets a delivery in progress finish with 250, and returns nil.
func TestShutdownWaitsForDelivery(t *testing.T) {
	f := newFixture(t, "tcp")
	// The idle connection is raw, to read what the server says unasked.
	idle, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(10 * time.Second))
	idleR := bufio.NewReader(idle)
	if line, err := idleR.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
		t.Fatalf("greeting %q, %v", line, err)
	}
	busy := f.dial()

	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	f.blobs.mu.Lock()
	f.blobs.block, f.blobs.entered = release, entered
	f.blobs.mu.Unlock()

	if err := busy.Mail("carol@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := busy.Rcpt("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := busy.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	dataErr := make(chan error, 1)
	go func() { dataErr <- w.Close() }()
	<-entered // the blob Put has started

	shutdownErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownErr <- f.srv.Shutdown(ctx)
	}()

	// The idle connection is told 421 and closed.
	if line, err := idleR.ReadString('\n'); err != nil || line != "421 4.3.2 Service shutting down\r\n" {
		t.Errorf("idle connection after Shutdown: %q, %v; want 421 4.3.2", line, err)
	}
	if _, err := idleR.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after 421: read %v, want EOF", err)
	}
	// New connections are refused.
	if c, err := net.DialTimeout("tcp", f.addr, time.Second); err == nil {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.HasPrefix(line, "220") {
			t.Errorf("new connection during shutdown greeted %q", line)
		}
	}
	select {
	case err := <-shutdownErr:
		t.Fatalf("Shutdown returned %v while a delivery was in progress", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-dataErr; err != nil {
		t.Fatalf("delivery in progress during Shutdown: %v, want 250", err)
	}
	if err := <-shutdownErr; err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}
	if n := len(f.inbox("alice@example.org")); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
}

// TestShutdownDeadline: a delivery still running when Shutdown's context
// ends is cancelled and answered 421; nothing is stored.
func TestShutdownDeadline(t *testing.T) {
	f := newFixture(t, "tcp")
	busy := f.dial()
	entered := make(chan struct{}, 1)
	f.blobs.mu.Lock()
	f.blobs.block, f.blobs.entered = make(chan struct{}), entered // never released
	f.blobs.mu.Unlock()
	if err := busy.Mail("carol@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := busy.Rcpt("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := busy.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	dataErr := make(chan error, 1)
	go func() {
		_, err := w.CloseWithLMTPResponse()
		dataErr <- err
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := f.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	err = <-dataErr
	var le smtp.LMTPDataError
	if !errors.As(err, &le) || smtpCode(le["alice@example.org"]) != "421 4.3.2" {
		t.Fatalf("DATA = %v, want 421 4.3.2 for alice", err)
	}
	if n := len(f.inbox("alice@example.org")); n != 0 {
		t.Errorf("alice has %d messages, want 0", n)
	}
}

// TestPythonSmtplibLMTP delivers with Python's smtplib.LMTP, an
// independent client.
func TestPythonSmtplibLMTP(t *testing.T) {
	py := needPython(t)
	f := newFixture(t, "unix")
	script := `
import smtplib, sys, json
s = smtplib.LMTP(sys.argv[1], local_hostname="py.example")
refused = s.sendmail("dave@example.net", ["alice@example.org", "ghost@example.org"], sys.stdin.buffer.read())
s.quit()
print(json.dumps({k: [v[0], v[1].decode()] for k, v in refused.items()}))
`
	cmd := exec.Command(py, "-c", script, f.addr)
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	want := `{"ghost@example.org": [550, "5.1.1 No such user here"]}`
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("python refused = %s, want %s", got, want)
	}
	msgs := f.inbox("alice@example.org")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	re := regexp.MustCompile(`^Return-Path: <dave@example\.net>\r\nDelivered-To: alice@example\.org\r\nReceived: from py\.example\r\n`)
	if !re.Match(msgs[0]) {
		t.Fatalf("stored message starts %q", msgs[0][:min(len(msgs[0]), 200)])
	}
	if !bytes.HasSuffix(msgs[0], []byte(body)) {
		t.Fatalf("stored message does not end with the body sent: %q", msgs[0])
	}
}

// needPython returns the path of python3; without it the test is skipped,
// or fails under CI=true (CI installs it).
func needPython(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3 not installed (CI=%s)", os.Getenv("CI"))
		}
		t.Skip("python3 not installed")
	}
	return py
}

// TestOverQuota: a recipient over quota gets 552 5.2.2, the others 250.
func TestOverQuota(t *testing.T) {
	f := newFixture(t, "tcp")
	ctx := context.Background()
	if err := f.manager.SetQuota(ctx, "bob@example.org", 700); err != nil {
		t.Fatal(err)
	}
	send := func() error {
		c := f.dial()
		if err := c.Mail("carol@example.net", nil); err != nil {
			t.Fatal(err)
		}
		for _, r := range []string{"alice@example.org", "bob@example.org"} {
			if err := c.Rcpt(r, nil); err != nil {
				t.Fatal(err)
			}
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
		_, err = w.CloseWithLMTPResponse()
		return err
	}
	// Each copy is 324 bytes: two fit in 700, the third does not.
	for i := 0; i < 2; i++ {
		if err := send(); err != nil {
			t.Fatalf("delivery %d: %v", i+1, err)
		}
	}
	err := send()
	var le smtp.LMTPDataError
	if !errors.As(err, &le) || len(le) != 1 || smtpCode(le["bob@example.org"]) != "552 5.2.2" {
		t.Fatalf("third delivery: %v, want 552 5.2.2 for bob only", err)
	}
	if a, b := len(f.inbox("alice@example.org")), len(f.inbox("bob@example.org")); a != 3 || b != 2 {
		t.Errorf("alice has %d, bob %d messages; want 3 and 2", a, b)
	}
}

// TestDeliveryTimeout: a store that hangs past DeliveryTimeout gives 451
// 4.3.0 and stores nothing; the server stays up.
func TestDeliveryTimeout(t *testing.T) {
	f := newFixture(t, "tcp")
	f.srv.Shutdown(context.Background()) // replace the fixture's server
	srv := lmtp.New(lmtp.Options{
		Deliverer: &delivery.Deliverer{Store: f.store, Users: f.users, Hostname: "mx.test"},
		Hostname:  "mx.test", DeliveryTimeout: 200 * time.Millisecond,
	})
	ln, err := lmtp.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	f.addr = ln.Addr().String()
	f.blobs.mu.Lock()
	f.blobs.block = make(chan struct{}) // never released
	f.blobs.mu.Unlock()

	c := f.dial()
	err = c.SendMail("carol@example.net", []string{"alice@example.org"}, strings.NewReader(body))
	var le smtp.LMTPDataError
	if !errors.As(err, &le) || smtpCode(le["alice@example.org"]) != "451 4.3.0" {
		t.Fatalf("SendMail = %v, want 451 4.3.0", err)
	}
	if n := len(f.inbox("alice@example.org")); n != 0 {
		t.Errorf("alice has %d messages, want 0", n)
	}
	if err := c.Noop(); err != nil {
		t.Errorf("NOOP after the timeout: %v", err)
	}
}
