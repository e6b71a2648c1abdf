package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bucketmail/bucketmail/internal/config"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// readmeCommands are the commands the README opens with, in order.
var readmeCommands = []string{
	"go run ./cmd/bucketmail serve",
	"echo 'a long password' | go run ./cmd/bucketmail user add you@example.org --password-stdin",
	"./scripts/test",
}

// TestReadmeConfigExample checks that the README's configuration file
// example is one bucketmail reads: known keys only, the values it shows.
func TestReadmeConfigExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```toml\n")
	if !ok {
		t.Fatal("README: no ```toml block")
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("README: unterminated ```toml block")
	}
	path := t.TempDir() + "/bucketmail.toml"
	if err := os.WriteFile(path, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.LoadFile(path)
	if err != nil {
		t.Fatalf("README config example: %v", err)
	}
	c.ApplyDefaults()
	got := fmt.Sprintf("%s %s %s %s %d %s %s %s %v", c.DataDir, c.IMAP.Listen, c.IMAP.TLSListen, c.LMTP.Listen,
		c.LMTP.MaxMessageSize, c.LMTP.RecipientDelimiter, c.TLS.CertFile, c.TLS.KeyFile, c.Auth.AllowInsecure)
	want := "/var/lib/bucketmail 127.0.0.1:1143 0.0.0.0:993 127.0.0.1:2424 52428800 + /etc/bucketmail/cert.pem /etc/bucketmail/key.pem false"
	if got != want {
		t.Errorf("README config example reads as\n%s\nwant\n%s", got, want)
	}
}

// TestReadmeQuickStart checks that the README still opens with the quick
// start commands, then follows them as a newcomer would, with the built
// binary in place of `go run`: serve with no flags in an empty directory
// (embedded defaults: ./bucketmail-data, IMAP 127.0.0.1:1143, LMTP
// 127.0.0.1:2424), add the user with the password on standard input,
// deliver a message over LMTP and reach it in INBOX with an IMAP client.
// It is skipped when something else listens on the default ports.
func TestReadmeQuickStart(t *testing.T) {
	f, err := os.Open("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			break // only the commands before the first section
		}
		if c, ok := strings.CutPrefix(line, "    "); ok {
			cmds = append(cmds, c)
		}
	}
	f.Close()
	if !slices.Equal(cmds, readmeCommands) {
		t.Fatalf("README quick start commands:\n%q\nwant (this test follows them):\n%q", cmds, readmeCommands)
	}

	for _, addr := range []string{"127.0.0.1:1143", "127.0.0.1:2424"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("default port in use, cannot try the README's serve command: %v", err)
		}
		ln.Close()
	}
	dir := t.TempDir()
	srv, err := e2e.LaunchDefaults(e2e.Binary(t), dir)
	if err != nil && strings.Contains(err.Error(), "address already in use") {
		t.Skipf("default port taken meanwhile: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(t)
	for i := 0; !strings.Contains(srv.Log(), "user add"); i++ {
		if i == 100 {
			t.Errorf("serve with no users does not say how to add one; log:\n%s", srv.Log())
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	add := exec.Command(srv.Bin, "user", "add", "you@example.org", "--password-stdin")
	add.Dir = dir
	add.Stdin = strings.NewReader("a long password\n") // what echo sends
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	if _, err := os.Stat(srv.DataDir); err != nil {
		t.Errorf("data dir: %v", err)
	}

	lc, err := e2e.DialLMTP(srv.LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: friend@example.net\r\nSubject: welcome\r\n\r\nHello.\r\n"
	if err := lc.Deliver1("friend@example.net", "you@example.org", []byte(msg)); err != nil {
		t.Fatalf("LMTP delivery: %v", err)
	}
	lc.Close()

	c, err := imapclient.DialInsecure(srv.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("you@example.org", "a long password").Wait(); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range boxes {
		names = append(names, b.Mailbox)
	}
	slices.Sort(names)
	if want := []string{"Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"}; !slices.Equal(names, want) {
		t.Errorf("LIST: %v, want %v", names, want)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 1 {
		t.Fatalf("INBOX has %d messages, want 1", sel.NumMessages)
	}
	m, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil || len(m) != 1 {
		t.Fatalf("FETCH: %v", err)
	}
	if m[0].Envelope.Subject != "welcome" {
		t.Errorf("subject %q, want welcome", m[0].Envelope.Subject)
	}
	c.Logout().Wait()
}
