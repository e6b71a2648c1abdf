package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// TestUserChangesReachServe: with the auth cache on and the local bus,
// `bucketmail user passwd` and `user del` reach the running server through
// its control socket: the new password works at once over IMAP and the
// cached old one fails at once, as does a deleted user's. The metrics
// endpoint serves the bus metrics.
func TestUserChangesReachServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(t.TempDir(), "bucketmail.toml")
	conf := "[auth]\ncache_max_entries = 100\ncache_ttl = \"1h\"\n" +
		// A short window, so the logins after user add are cached and
		// only the control socket's hints can make the change visible.
		"[cluster]\nconsistency_window = \"1ms\"\n" +
		"[metrics]\nlisten = \"" + metricsAddr + "\"\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s := launch(t, "--config", cfg)
	fi, err := os.Stat(filepath.Join(s.DataDir, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control.sock mode %s, want a socket with 0600", fi.Mode())
	}

	s.AddUser(t, "ivy@example.org", "old pw")
	s.AddUser(t, "jack@example.org", "jack pw")
	time.Sleep(5 * time.Millisecond) // the 1 ms windows of user add end
	deliverAndRead(t, s, "ivy@example.org", "ivy@example.org", "old pw")
	deliverAndReadN(t, s, "jack@example.org", "jack@example.org", "jack pw", 1)
	// Cached now: one more login each is served by the cache.
	for _, u := range [][2]string{{"ivy@example.org", "old pw"}, {"jack@example.org", "jack pw"}} {
		c := login(t, s.IMAPAddr, u[0], u[1])
		c.Close()
	}

	if got := s.Run(t, "new pw\n", "user", "passwd", "ivy@example.org", "--password-stdin"); got != "password changed for ivy@example.org\n" {
		t.Fatalf("user passwd: %q", got)
	}
	loginFails(t, s, "ivy@example.org", "old pw", "NO [AUTHENTICATIONFAILED]")
	c := login(t, s.IMAPAddr, "ivy@example.org", "new pw")
	c.Close()

	// import on the same data directory: an IDLE session on serve sees
	// the new message at once (the control socket carries the store
	// change; without it nothing would wake the session).
	exists := make(chan uint32, 10)
	ic, err := imapclient.DialInsecure(s.IMAPAddr, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login("ivy@example.org", "new pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if sel, err := ic.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT INBOX: %+v, %v; want 1 message", sel, err)
	}
	idle, err := ic.Idle()
	if err != nil {
		t.Fatal(err)
	}
	mbox := filepath.Join(t.TempDir(), "in.mbox")
	if err := os.WriteFile(mbox, []byte("From a@example.com Mon Nov 30 10:00:00 2026\nFrom: a@example.com\nSubject: imported\n\nhello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s.Run(t, "", "import", "--user", "ivy@example.org", mbox)
	ran := time.Since(start)
	select {
	case n := <-exists:
		if n != 2 {
			t.Fatalf("IDLE: %d EXISTS, want 2", n)
		}
		t.Logf("IDLE session saw the imported message %s after import started (import ran %s)", time.Since(start), ran)
	case <-time.After(2 * time.Second):
		t.Fatal("IDLE session on serve saw no EXISTS within 2 s of import exiting")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}

	if got := s.Run(t, "", "user", "del", "jack@example.org"); got != "deleted jack@example.org and its mail\n" {
		t.Fatalf("user del: %q", got)
	}
	loginFails(t, s, "jack@example.org", "jack pw", "NO [AUTHENTICATIONFAILED]")

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"bucketmail_bus_up 1\n", "bucketmail_store_polls_total 0\n", "bucketmail_bus_resyncs_total 0\n"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The local bus carries this server's own events: every store change
	// so far (mailboxes, deliveries) was published.
	if !strings.Contains(string(body), "bucketmail_bus_events_published_total ") || strings.Contains(string(body), "bucketmail_bus_events_published_total 0\n") {
		t.Errorf("/metrics: no events published:\n%s", grepLines(string(body), "bucketmail_bus"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestControlSocketInUse: a second serve on the same data directory is
// refused while the first one runs.
func TestControlSocketInUse(t *testing.T) {
	s := launch(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "serve", "--data-dir", s.DataDir, "--imap-listen", "127.0.0.1:0", "--lmtp-listen", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != exitError || !strings.Contains(string(out), "another server is running on this data directory") {
		t.Fatalf("second serve: exit %d (%v), %q", code, err, out)
	}
}

// login logs in over IMAP or fails the test.
func login(t *testing.T, addr, user, pw string) *e2e.RawIMAP {
	t.Helper()
	c, err := e2e.DialRaw(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(user, pw); err != nil {
		c.Close()
		t.Fatalf("LOGIN %s: %v", user, err)
	}
	return c
}
