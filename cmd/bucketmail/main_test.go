package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bucketmail/bucketmail/internal/config"
	"github.com/bucketmail/bucketmail/internal/mailstore"
)

// binPath is the bucketmail binary built by TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bucketmail-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "bucketmail")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(goBin, "build", "-o", binPath, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building bucketmail: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	runAtExit()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runBin runs the binary to completion.
func runBin(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("running %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// mustRun runs the binary and fails the test unless it exits 0.
func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errOut, code := runBin(t, stdin, args...)
	if code != 0 {
		t.Fatalf("bucketmail %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

// server is a running "bucketmail serve".
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, after done

	mu    sync.Mutex
	lines []map[string]any // JSON log lines
	cond  *sync.Cond
}

// startServe starts serve with a config that logs JSON at debug level
// with the IMAP trace on (cfgExtra is put before its [log] section), and
// the given extra flags.
func startServe(t *testing.T, dataDir, cfgExtra string, extra ...string) *server {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "bucketmail.toml")
	if err := os.WriteFile(cfg, []byte(cfgExtra+"\n[log]\nformat = \"json\"\nlevel = \"debug\"\ntrace = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--config", cfg, "--data-dir", dataDir,
		"--imap-listen", "127.0.0.1:0", "--lmtp-listen", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(binPath, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"msg": "(not JSON) " + sc.Text()}
			}
			t.Logf("serve: %s", sc.Text())
			s.mu.Lock()
			s.lines = append(s.lines, m)
			s.cond.Broadcast()
			s.mu.Unlock()
		}
		s.err = cmd.Wait()
		s.mu.Lock()
		close(s.done)
		s.cond.Broadcast()
		s.mu.Unlock()
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// waitLog waits up to 20 s for a log line for which match is true.
func (s *server) waitLog(what string, match func(map[string]any) bool) map[string]any {
	s.t.Helper()
	timer := time.AfterFunc(20*time.Second, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(20 * time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; ; {
		for ; i < len(s.lines); i++ {
			if match(s.lines[i]) {
				return s.lines[i]
			}
		}
		select {
		case <-s.done:
			s.t.Fatalf("serve exited (%v) before logging %s", s.err, what)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("serve did not log %s within 20 s", what)
		}
		s.cond.Wait()
	}
}

// addr returns the address serve logged for proto.
func (s *server) addr(proto string) string {
	s.t.Helper()
	m := s.waitLog("listening "+proto, func(m map[string]any) bool {
		return m["msg"] == "listening" && m["proto"] == proto
	})
	a, _ := m["addr"].(string)
	return a
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.t.Fatal("serve did not exit within 30 s of SIGTERM")
	}
	if s.err != nil {
		s.t.Fatalf("serve exited with %v after SIGTERM, want exit 0", s.err)
	}
	s.waitLog("stopped", func(m map[string]any) bool { return m["msg"] == "stopped" })
}

func TestVersionAndUsage(t *testing.T) {
	out := mustRun(t, "", "version")
	if !strings.HasPrefix(out, "bucketmail ") || strings.Count(out, "\n") != 1 {
		t.Errorf("version printed %q", out)
	}
	for _, tc := range []struct {
		args     []string
		stdin    string
		code     int
		inStderr string
	}{
		{nil, "", 2, "usage:"},
		{[]string{"frob"}, "", 2, `unknown command "frob"`},
		{[]string{"user"}, "", 2, "user needs a subcommand"},
		{[]string{"user", "grant", "a@b"}, "", 2, `unknown user subcommand "grant"`},
		{[]string{"user", "add", "not-an-address", "--password-stdin"}, "pw\n", 2, "is not an address"},
		{[]string{"user", "add", "a@example.org"}, "", 2, "not a terminal: use --password-stdin"},
		{[]string{"user", "list", "extra@example.org"}, "", 2, "takes 0 address argument(s), got 1"},
		{[]string{"serve", "--no-such-flag"}, "", 2, "flag provided but not defined: -no-such-flag"},
		{[]string{"import", "--user", "a@example.org"}, "", 2, "at least one PATH"},
	} {
		_, errOut, code := runBin(t, tc.stdin, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.inStderr) {
			t.Errorf("bucketmail %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.inStderr)
		}
	}
}

// TestServeBadConfig: every problem in the file is reported, exit 1.
func TestServeBadConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(cfg, []byte("[lmtp]\nmax_message_size = -5\n[log]\nlevel = \"loud\"\n[tls]\ncert_file = \"c.pem\"\n"), 0o600)
	_, errOut, code := runBin(t, "", "serve", "--config", cfg, "--data-dir", t.TempDir())
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, errOut)
	}
	for _, want := range []string{"lmtp.max_message_size: -5", `log.level: "loud"`, "tls: cert_file and key_file must be set together"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestUserCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if out := mustRun(t, "pw one\n", "user", "add", "Alice@Example.org", "--password-stdin", "--data-dir", data); out != "added alice@example.org\n" {
		t.Errorf("user add printed %q", out)
	}
	// Flags before the address work too.
	mustRun(t, "pw two", "user", "add", "--data-dir", data, "--password-stdin", "bob@example.org")
	if out := mustRun(t, "", "user", "list", "--data-dir", data); out != "alice@example.org\nbob@example.org\n" {
		t.Errorf("user list printed %q", out)
	}
	_, errOut, code := runBin(t, "x\n", "user", "add", "alice@example.org", "--password-stdin", "--data-dir", data)
	if code != 1 || !strings.Contains(errOut, "user alice@example.org already exists") {
		t.Errorf("second user add: exit %d, %q", code, errOut)
	}
	_, errOut, code = runBin(t, "\n", "user", "passwd", "alice@example.org", "--password-stdin", "--data-dir", data)
	if code != 1 || !strings.Contains(errOut, "empty password") {
		t.Errorf("user passwd with empty password: exit %d, %q", code, errOut)
	}
	if out := mustRun(t, "pw three\n", "user", "passwd", "alice@example.org", "--password-stdin", "--data-dir", data); out != "password changed for alice@example.org\n" {
		t.Errorf("user passwd printed %q", out)
	}
	_, errOut, code = runBin(t, "x\n", "user", "passwd", "carol@example.org", "--password-stdin", "--data-dir", data)
	if code != 1 || !strings.Contains(errOut, "no user carol@example.org") {
		t.Errorf("user passwd of a missing user: exit %d, %q", code, errOut)
	}
	if out := mustRun(t, "", "user", "del", "bob@example.org", "--data-dir", data); out != "deleted bob@example.org and its mail\n" {
		t.Errorf("user del printed %q", out)
	}
	if out := mustRun(t, "", "user", "list", "--data-dir", data); out != "alice@example.org\n" {
		t.Errorf("user list after del printed %q", out)
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		pw   bool
		dir  string
	}{
		{[]string{"a@b"}, []string{"a@b"}, false, ""},
		{[]string{"a@b", "--password-stdin"}, []string{"a@b"}, true, ""},
		{[]string{"--data-dir", "d", "a@b", "--password-stdin"}, []string{"a@b"}, true, "d"},
		{[]string{"x", "--data-dir=d", "y"}, []string{"x", "y"}, false, "d"},
		{[]string{"x", "--", "--password-stdin"}, []string{"x", "--password-stdin"}, false, ""},
		{nil, nil, false, ""},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		pw := fs.Bool("password-stdin", false, "")
		dir := fs.String("data-dir", "", "")
		pos, err := parseFlags(fs, tc.args)
		if err != nil || !slices.Equal(pos, tc.pos) || *pw != tc.pw || *dir != tc.dir {
			t.Errorf("parseFlags(%q) = %q, %v (pw %v dir %q); want %q (pw %v dir %q)", tc.args, pos, err, *pw, *dir, tc.pos, tc.pw, tc.dir)
		}
	}
}

// TestServeSignal: serve starts on an empty data dir with LMTP on a unix
// socket, hints at user add, and exits 0 on SIGTERM, removing the socket.
func TestServeSignal(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data dir")
	sock := filepath.Join(dir, "lmtp.sock")
	s := startServe(t, data, "", "--lmtp-listen", sock)
	s.addr("imap")
	if got := s.addr("lmtp"); got != sock {
		t.Errorf("LMTP listens on %q, want %q", got, sock)
	}
	hint := regexp.MustCompile(`^no users yet; add one with: bucketmail user add you@example\.org --config \S+ --data-dir '` + regexp.QuoteMeta(data) + `'$`)
	s.waitLog("the user add hint", func(m map[string]any) bool { msg, _ := m["msg"].(string); return hint.MatchString(msg) })
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial the LMTP socket: %v", err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	greeting, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if !strings.HasPrefix(greeting, "220 ") || !strings.Contains(greeting, " LMTP ") {
		t.Errorf("LMTP greeting on the socket: %q", greeting)
	}
	s.stop()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after stop: %v", err)
	}
	for _, p := range []string{"index.db", "blobs"} {
		if _, err := os.Stat(filepath.Join(data, p)); err != nil {
			t.Errorf("data dir lacks %s: %v", p, err)
		}
	}
}

// TestServeEndToEnd runs the real binary: serve on free ports, user add
// while it runs, delivery over LMTP, IMAP login and fetch with go-imap's
// client, SIGTERM, then user del removes the mail.
func TestServeEndToEnd(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := startServe(t, data, "")
	imapAddr, lmtpAddr := s.addr("imap"), s.addr("lmtp")

	if out := mustRun(t, "correct horse\n", "user", "add", "alice@example.org", "--password-stdin", "--data-dir", data); out != "added alice@example.org\n" {
		t.Fatalf("user add printed %q", out)
	}

	// Deliver over LMTP; the message has bare LF line ends (but the
	// last, since the end-of-data dot must follow a CRLF).
	raw := "From: Carol <carol@example.net>\nTo: alice@example.org\nSubject: e2e\n\nHello over LMTP.\r\n"
	replies := lmtpSend(t, lmtpAddr, nil, "carol@example.net", []string{"alice@example.org", "nobody@example.org"}, raw)
	if want := []string{"250 ", "550 5.1.1 "}; len(replies) != 2 || !strings.HasPrefix(replies[0], want[0]) || !strings.HasPrefix(replies[1], want[1]) {
		t.Fatalf("LMTP replies %q, want RCPT 250 then 550 5.1.1 ...", replies)
	}

	ic, err := imapclient.DialInsecure(imapAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login("alice@example.org", "wrong").Wait(); err == nil {
		t.Errorf("LOGIN with a wrong password succeeded")
	}
	if err := ic.Login("alice@example.org", "correct horse").Wait(); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	sel, err := ic.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("SELECT INBOX: %v", err)
	}
	if sel.NumMessages != 1 {
		t.Fatalf("INBOX has %d messages, want 1", sel.NumMessages)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := ic.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}, RFC822Size: true}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH: %v (%d messages)", err, len(msgs))
	}
	got := msgs[0].FindBodySection(section)
	wantBody := strings.ReplaceAll(strings.ReplaceAll(raw, "\r\n", "\n"), "\n", "\r\n")
	if !strings.HasPrefix(string(got), "Return-Path: <carol@example.net>\r\nDelivered-To: alice@example.org\r\nReceived: from ") ||
		!strings.HasSuffix(string(got), "\r\n"+wantBody) {
		t.Errorf("BODY[] = %q, want the added fields then %q", got, wantBody)
	}
	if msgs[0].RFC822Size != int64(len(got)) {
		t.Errorf("RFC822.SIZE %d, BODY[] has %d bytes", msgs[0].RFC822Size, len(got))
	}
	if err := ic.Logout().Wait(); err != nil {
		t.Errorf("LOGOUT: %v", err)
	}
	s.stop()

	// The IMAP trace logged the session, but never the password.
	s.waitLog("the traced LOGIN", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasPrefix(msg, "imap: C: ") && strings.Contains(msg, " LOGIN <redacted>")
	})
	s.mu.Lock()
	for _, m := range s.lines {
		if b, _ := json.Marshal(m); bytes.Contains(b, []byte("correct horse")) {
			t.Errorf("the password is in the log: %s", b)
		}
	}
	s.mu.Unlock()

	// The mail is there after the stop; user del removes user and mail.
	if out := mustRun(t, "", "user", "del", "alice@example.org", "--data-dir", data); out != "deleted alice@example.org and its mail\n" {
		t.Errorf("user del printed %q", out)
	}
	blobs := 0
	filepath.WalkDir(filepath.Join(data, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			blobs++
		}
		return nil
	})
	if blobs != 0 {
		t.Errorf("%d blob files left after user del, want 0", blobs)
	}
}

// lmtpSend speaks LMTP by hand (so bare LF reaches the server), after
// STARTTLS when tlsConfig is set, and returns one reply per RCPT in
// order: the RCPT reply of a rejected recipient, the DATA reply of an
// accepted one.
func lmtpSend(t *testing.T, addr string, tlsConfig *tls.Config, from string, rcpts []string, data string) []string {
	t.Helper()
	var conn net.Conn
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { conn.Close() }()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	var lines []string // lines of the last reply
	read := func() string {
		lines = lines[:0]
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("LMTP read: %v", err)
			}
			line = strings.TrimRight(line, "\r\n")
			lines = append(lines, line)
			if len(line) < 4 || line[3] != '-' {
				return line
			}
		}
	}
	read() // greeting
	fmt.Fprintf(conn, "LHLO test.example\r\n")
	read()
	hasTLS := slices.ContainsFunc(lines, func(l string) bool { return len(l) > 4 && l[4:] == "STARTTLS" })
	if tlsConfig != nil {
		if !hasTLS {
			t.Fatalf("LHLO reply %q lacks STARTTLS", lines)
		}
		fmt.Fprintf(conn, "STARTTLS\r\n")
		if l := read(); !strings.HasPrefix(l, "220 ") {
			t.Fatalf("STARTTLS: %s", l)
		}
		tc := tls.Client(conn, tlsConfig)
		if err := tc.Handshake(); err != nil {
			t.Fatalf("LMTP TLS handshake: %v", err)
		}
		conn = tc
		r = bufio.NewReader(conn)
		fmt.Fprintf(conn, "LHLO test.example\r\n")
		read()
	} else if hasTLS {
		t.Errorf("LHLO offers STARTTLS without TLS configured: %q", lines)
	}
	fmt.Fprintf(conn, "MAIL FROM:<%s>\r\n", from)
	if l := read(); !strings.HasPrefix(l, "250") {
		t.Fatalf("MAIL: %s", l)
	}
	out := make([]string, len(rcpts))
	var accepted []int
	for i, rc := range rcpts {
		fmt.Fprintf(conn, "RCPT TO:<%s>\r\n", rc)
		if l := read(); strings.HasPrefix(l, "250") {
			accepted = append(accepted, i)
		} else {
			out[i] = l
		}
	}
	fmt.Fprintf(conn, "DATA\r\n")
	if l := read(); !strings.HasPrefix(l, "354") {
		t.Fatalf("DATA: %s", l)
	}
	if !strings.HasSuffix(data, "\r\n") {
		t.Fatalf("lmtpSend: data must end in CRLF")
	}
	io.WriteString(conn, data+".\r\n")
	for _, i := range accepted {
		out[i] = read()
	}
	fmt.Fprintf(conn, "QUIT\r\n")
	return out
}

// TestImport imports an mbox file and a Maildir with a Maildir++
// subfolder with the real binary, then reads the store.
func TestImport(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	mustRun(t, "pw\n", "user", "add", "alice@example.org", "--password-stdin", "--data-dir", data)

	mbox := filepath.Join(dir, "old.mbox")
	os.WriteFile(mbox, []byte("From carol@example.net Sat Jan  3 01:05:34 1998\n"+
		"Subject: one\n\nfirst\n>From the quoted line\n\n"+
		"From dave@example.net Mon Feb  2 10:00:00 2004\n"+
		"Subject: two\r\n\r\nsecond\r\n"), 0o600)

	md := filepath.Join(dir, "Maildir")
	write := func(rel, body string, mtime time.Time) {
		p := filepath.Join(md, rel)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	t1 := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	t2 := time.Date(2021, 1, 2, 3, 4, 5, 0, time.UTC)
	t3 := time.Date(2022, 3, 4, 5, 6, 7, 0, time.UTC)
	write("cur/1588748889.M1P1.host:2,FS", "Subject: seen and flagged\n\nbody\n", t1)
	write("new/1609556645.M2P2.host", "Subject: new\n\nbody\n", t2)
	os.MkdirAll(filepath.Join(md, "tmp"), 0o700)
	write(".Lists.Go/cur/1646370367.M3P3.host:2,RS", "Subject: in a subfolder\n\nbody\n", t3)

	out := mustRun(t, "", "import", "--data-dir", data, "--user", "Alice@example.org", "--mailbox", "Archive", mbox, md)
	want := mbox + ": 2 messages into Archive\n" +
		md + ": 2 messages into Archive\n" +
		filepath.Join(md, ".Lists.Go") + ": 1 messages into Archive/Lists/Go\n" +
		"imported 5 messages into alice@example.org (0 skipped)\n"
	if out != want {
		t.Errorf("import printed\n%s\nwant\n%s", out, want)
	}
	_, errOut, code := runBin(t, "", "import", "--data-dir", data, "--user", "nobody@example.org", mbox)
	if code != 1 || !strings.Contains(errOut, "no user nobody@example.org") {
		t.Errorf("import for a missing user: exit %d, %q", code, errOut)
	}
	_, errOut, code = runBin(t, "", "import", "--data-dir", data, "--user", "alice@example.org", filepath.Join(md, "cur", "1588748889.M1P1.host:2,FS"))
	if code != 1 || !strings.Contains(errOut, "not an mbox") {
		t.Errorf("import of a non-mbox file: exit %d, %q", code, errOut)
	}
	// A message over lmtp.max_message_size is skipped.
	small := filepath.Join(dir, "small.toml")
	os.WriteFile(small, []byte("[lmtp]\nmax_message_size = 40\n"), 0o600)
	out = mustRun(t, "", "import", "--config", small, "--data-dir", data, "--user", "alice@example.org", "--mailbox", "Small", mbox)
	if want := mbox + ": 1 messages into Small\nimported 1 messages into alice@example.org (1 skipped)\n"; out != want {
		t.Errorf("import with a 40-byte limit printed %q, want %q", out, want)
	}

	// Read what was stored.
	ctx := context.Background()
	cfg := config.Config{DataDir: data}
	cfg.ApplyDefaults()
	e, err := openEnv(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	acct, err := e.store.Account(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	type stored struct {
		body  string
		flags []string
		date  time.Time
	}
	read := func(mailbox string) []stored {
		t.Helper()
		mb, err := acct.Mailbox(ctx, mailbox)
		if err != nil {
			t.Fatalf("mailbox %s: %v", mailbox, err)
		}
		states, err := acct.States(ctx, mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		var uids []uint32
		for _, s := range states {
			uids = append(uids, s.UID)
		}
		var out []stored
		err = acct.Messages(ctx, mb.ID, uids, func(m *mailstore.Message) error {
			rc, err := acct.OpenBody(ctx, m, 0, -1)
			if err != nil {
				return err
			}
			defer rc.Close()
			var b strings.Builder
			io.Copy(&b, rc)
			out = append(out, stored{b.String(), m.Flags, m.InternalDate.UTC()})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := read("Archive")
	wantArchive := []stored{
		{"Subject: one\r\n\r\nfirst\r\n>From the quoted line\r\n", nil, time.Date(1998, 1, 3, 1, 5, 34, 0, time.UTC)},
		{"Subject: two\r\n\r\nsecond\r\n", nil, time.Date(2004, 2, 2, 10, 0, 0, 0, time.UTC)},
		{"Subject: seen and flagged\r\n\r\nbody\r\n", []string{`\Flagged`, `\Seen`}, t1},
		{"Subject: new\r\n\r\nbody\r\n", nil, t2},
	}
	if len(got) != len(wantArchive) {
		t.Fatalf("Archive has %d messages, want %d: %+v", len(got), len(wantArchive), got)
	}
	for i, w := range wantArchive {
		g := got[i]
		if g.body != w.body || !slices.Equal(g.flags, w.flags) || !g.date.Equal(w.date) {
			t.Errorf("Archive message %d = %q %q %v\nwant %q %q %v", i+1, g.body, g.flags, g.date, w.body, w.flags, w.date)
		}
	}
	got = read("Archive/Lists/Go")
	if len(got) != 1 || got[0].body != "Subject: in a subfolder\r\n\r\nbody\r\n" ||
		!slices.Equal(got[0].flags, []string{`\Answered`, `\Seen`}) || !got[0].date.Equal(t3) {
		t.Errorf("Archive/Lists/Go = %+v", got)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and localhost
// and returns the file names and a pool that trusts it.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bucketmail test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestServeTLS: with a certificate configured, IMAP offers STARTTLS and
// an implicit-TLS listener, and LMTP offers STARTTLS.
func TestServeTLS(t *testing.T) {
	certFile, keyFile, pool := writeCert(t)
	data := filepath.Join(t.TempDir(), "data")
	mustRun(t, "tls pw\n", "user", "add", "alice@example.org", "--password-stdin", "--data-dir", data)
	s := startServe(t, data, fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n", certFile, keyFile),
		"--imaps-listen", "127.0.0.1:0")
	imapAddr, imapsAddr, lmtpAddr := s.addr("imap"), s.addr("imaps"), s.addr("lmtp")
	tlsConfig := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	replies := lmtpSend(t, lmtpAddr, tlsConfig, "carol@example.net", []string{"alice@example.org"}, "Subject: over TLS\r\n\r\nhi\r\n")
	if len(replies) != 1 || !strings.HasPrefix(replies[0], "250 2.0.0 <alice@example.org> ") {
		t.Fatalf("LMTP over STARTTLS: %q, want 250", replies)
	}

	for _, tc := range []struct {
		name string
		dial func() (*imapclient.Client, error)
	}{
		{"implicit TLS", func() (*imapclient.Client, error) {
			return imapclient.DialTLS(imapsAddr, &imapclient.Options{TLSConfig: tlsConfig})
		}},
		{"STARTTLS", func() (*imapclient.Client, error) {
			return imapclient.DialStartTLS(imapAddr, &imapclient.Options{TLSConfig: tlsConfig})
		}},
	} {
		c, err := tc.dial()
		if err != nil {
			t.Errorf("%s: dial: %v", tc.name, err)
			continue
		}
		if err := c.Login("alice@example.org", "tls pw").Wait(); err != nil {
			t.Errorf("%s: LOGIN: %v", tc.name, err)
		} else if st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil || st.NumMessages == nil || *st.NumMessages != 1 {
			t.Errorf("%s: STATUS INBOX = %+v, %v; want 1 message", tc.name, st, err)
		} else if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Errorf("%s: SELECT: %v", tc.name, err)
		} else {
			// Delivered under STARTTLS: Received says LMTPS (RFC 3848).
			hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
			msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{hdr}}).Collect()
			if err != nil || len(msgs) != 1 || !regexp.MustCompile(`\r\n\tby \S+ with LMTPS id `).Match(msgs[0].FindBodySection(hdr)) {
				t.Errorf("%s: FETCH BODY[HEADER]: %v, want a Received field with LMTPS", tc.name, err)
			}
		}
		c.Logout().Wait()
		c.Close()
	}
	s.stop()
}

// TestPasswordPrompt runs user add on a pseudo-terminal (made by
// Python's pty module): it prompts twice without echo.
func TestPasswordPrompt(t *testing.T) {
	py := needPython(t)
	data := filepath.Join(t.TempDir(), "data")
	script := `
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b""
def expect(s):
    global out
    deadline = time.time() + 20
    while s not in out:
        if time.time() > deadline:
            raise SystemExit("timeout waiting for %r in %r" % (s, out))
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
expect(b"Password: ")
os.write(fd, b"s3cret pw\n")
expect(b"Again: ")
os.write(fd, b"s3cret pw\n")
expect(b"added ")
expect(b"\n")
_, status = os.waitpid(pid, 0)
sys.stdout.write(repr(out) + "\n" + str(os.waitstatus_to_exitcode(status)) + "\n")
`
	cmd := exec.Command(py, "-c", script, binPath, "user", "add", "pat@example.org", "--data-dir", data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python pty: %v\n%s", err, out)
	}
	got := string(out)
	if strings.Contains(got, "s3cret") {
		t.Errorf("the password was echoed: %s", got)
	}
	if !strings.Contains(got, `Password: `) || !strings.Contains(got, `Again: `) ||
		!strings.Contains(got, `added pat@example.org`) || !strings.HasSuffix(got, "\n0\n") {
		t.Errorf("pty session: %s", got)
	}
	// The password works: deliver and log in over IMAP.
	s := startServe(t, data, "")
	c, err := imapclient.DialInsecure(s.addr("imap"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("pat@example.org", "s3cret pw").Wait(); err != nil {
		t.Errorf("LOGIN with the prompted password: %v", err)
	}
	c.Logout().Wait()
	s.stop()
}

// TestPythonClients: Python's smtplib.LMTP delivers and imaplib reads,
// independent clients against the real binary.
func TestPythonClients(t *testing.T) {
	py := needPython(t)
	data := filepath.Join(t.TempDir(), "data")
	mustRun(t, "py pw\n", "user", "add", "py@example.org", "--password-stdin", "--data-dir", data)
	s := startServe(t, data, "")
	imapAddr, lmtpAddr := s.addr("imap"), s.addr("lmtp")
	// ghost is refused at RCPT, so the transaction has one recipient
	// and the message gets Delivered-To.
	script := `
import imaplib, json, smtplib, sys
lh, lp = sys.argv[1].rsplit(":", 1)
ih, ip = sys.argv[2].rsplit(":", 1)
msg = b"From: Eve <eve@example.net>\r\nTo: py@example.org\r\nSubject: from python\r\n\r\n.dot line\r\nbody\r\n"
l = smtplib.LMTP(lh, int(lp), local_hostname="py.example")
refused = l.sendmail("eve@example.net", ["py@example.org", "ghost@example.org"], msg)
l.quit()
m = imaplib.IMAP4(ih, int(ip))
m.login("py@example.org", "py pw")
typ, data = m.select("INBOX")
n = int(data[0])
typ, fetched = m.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
body = fetched[0][1]
m.logout()
print(json.dumps({
    "refused": {k: v[0] for k, v in refused.items()},
    "exists": n,
    "ends_with_msg": body.endswith(msg),
    "starts": body[:60].decode(),
    "size_ok": ("RFC822.SIZE %d" % len(body)).encode() in fetched[0][0],
}, sort_keys=True))
`
	out, err := exec.Command(py, "-c", script, lmtpAddr, imapAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	want := `{"ends_with_msg": true, "exists": 1, "refused": {"ghost@example.org": 550}, "size_ok": true, "starts": "Return-Path: <eve@example.net>\r\nDelivered-To: py@example.org"}`
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("python clients:\n got %s\nwant %s", got, want)
	}
	s.stop()
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

// TestServeSignalDuringDelivery: SIGTERM arrives while an LMTP client is
// in the middle of DATA; the delivery still finishes with 250, then the
// server says 421, closes the connection and exits 0, and the message is
// there on the next start.
func TestServeSignalDuringDelivery(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	mustRun(t, "pw\n", "user", "add", "alice@example.org", "--password-stdin", "--data-dir", data)
	s := startServe(t, data, "")
	lmtpAddr := s.addr("lmtp")

	conn, err := net.Dial("tcp", lmtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	read := func() string {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("LMTP read: %v", err)
			}
			if len(line) < 4 || line[3] != '-' {
				return strings.TrimRight(line, "\r\n")
			}
		}
	}
	read()
	for _, cmd := range []string{"LHLO t.example", "MAIL FROM:<carol@example.net>", "RCPT TO:<alice@example.org>", "DATA"} {
		fmt.Fprintf(conn, "%s\r\n", cmd)
		read()
	}
	io.WriteString(conn, "Subject: interrupted\r\n\r\nfirst half\r\n")

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	s.waitLog("the shutdown", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasPrefix(msg, "shutting down")
	})
	time.Sleep(200 * time.Millisecond) // the server is waiting for us now
	io.WriteString(conn, "second half\r\n.\r\n")
	if got := read(); !strings.HasPrefix(got, "250 2.0.0 <alice@example.org> ") {
		t.Fatalf("DATA reply during shutdown: %q, want 250", got)
	}
	if got := read(); got != "421 4.3.2 Service shutting down" {
		t.Errorf("after the delivery: %q, want 421 4.3.2", got)
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after the delivery")
	}
	if s.err != nil {
		t.Fatalf("serve exit: %v, want 0", s.err)
	}

	s = startServe(t, data, "")
	c, err := imapclient.DialInsecure(s.addr("imap"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice@example.org", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || st.NumMessages == nil || *st.NumMessages != 1 {
		t.Errorf("STATUS INBOX after restart = %+v, %v; want 1 message", st, err)
	}
	c.Logout().Wait()
	s.stop()
}

// TestServePortInUse: a listener that cannot be opened fails the start
// (exit 1) and leaves no other listener open.
func TestServePortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()
	_, errOut, code := runBin(t, "", "serve", "--data-dir", t.TempDir(), "--imap-listen", freeAddr, "--lmtp-listen", busy.Addr().String())
	if code != 1 || !strings.Contains(errOut, "lmtp: listen "+busy.Addr().String()) || !strings.Contains(errOut, "address already in use") {
		t.Fatalf("serve on a busy port: exit %d, stderr %s", code, errOut)
	}
	// The IMAP port it had opened is free again.
	ln, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Errorf("IMAP port still held after the failed start: %v", err)
	} else {
		ln.Close()
	}
}

// TestServeGOMAXPROCS: serve runs procsPerCPU schedulers per CPU unless
// $GOMAXPROCS says otherwise, and logs the value at start.
func TestServeGOMAXPROCS(t *testing.T) {
	procs := func() float64 {
		s := startServe(t, filepath.Join(t.TempDir(), "data"), "")
		m := s.waitLog("starting", func(m map[string]any) bool { return m["msg"] == "starting" })
		s.addr("lmtp") // up
		s.stop()
		n, _ := m["gomaxprocs"].(float64)
		return n
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// This process's default is the child's default (the same CPUs
		// and container limits).
		if got, want := procs(), float64(procsPerCPU*runtime.GOMAXPROCS(0)); got != want {
			t.Errorf("gomaxprocs = %v, want %v (%d per CPU)", got, want, procsPerCPU)
		}
	}
	t.Setenv("GOMAXPROCS", "3")
	if got := procs(); got != 3 {
		t.Errorf("with GOMAXPROCS=3: gomaxprocs = %v, want 3", got)
	}
}
