package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// TestMbsync syncs the corpus-filled account (corpusServer) to a local
// Maildir with mbsync (Debian isync 1.4, Sync Pull, INBOX and the
// special-use mailboxes) from a generated config, and compares every
// message file with the message served: same bytes except for what
// mbsync itself does to a message it stores in a Maildir (CRLF written as
// LF, an X-TUID header line added; see mbsyncExpect). mbsync skips, by
// design, messages whose header has no terminating empty line; the test
// predicts exactly which. It runs mbsync a second time and checks that
// nothing changes.
func TestMbsync(t *testing.T) {
	bin := e2e.LookTool(t, "mbsync", "isync")
	srv, msgs := corpusServer(t)

	dir := t.TempDir()
	maildir := filepath.Join(dir, "Mail")
	if err := os.Mkdir(maildir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "mbsyncrc")
	host, port := splitHostPort(t, srv.IMAPAddr)
	cfg := fmt.Sprintf(`IMAPAccount bucketmail
Host %s
Port %s
User %s
Pass %s
SSLType None
AuthMechs LOGIN
PipelineDepth 50

IMAPStore far
Account bucketmail

MaildirStore near
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel corpus
Far :far:
Near :near:
Patterns INBOX Archive Drafts Junk Sent Trash
Create Near
Sync Pull
SyncState *
`, host, port, user, password, maildir, maildir)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() {
		t.Helper()
		cmd := exec.Command(bin, "-c", conf, "-a")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
		t.Logf("mbsync -a: %v\n%s", time.Since(start).Round(time.Millisecond), out)
	}
	run()

	files := maildirFiles(t, filepath.Join(maildir, "INBOX"))
	nearUID := syncState(t, filepath.Join(maildir, "INBOX", ".mbsyncstate"))
	served := servedBodies(t, srv.IMAPAddr, msgs)
	skipped := 0
	for i, m := range msgs {
		uid := uint32(i + 1) // on the server
		want, ok := mbsyncExpect(served[i])
		p, have := files[nearUID[uid]]
		switch {
		case !ok && have:
			t.Errorf("%s: has no end of header, mbsync 1.4 should skip it, but wrote %s", m.ID, p)
			continue
		case !ok:
			skipped++
			continue
		case !have:
			t.Errorf("%s: UID %d missing from the Maildir (near UID %d)", m.ID, uid, nearUID[uid])
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !want.Match(got) {
			t.Errorf("%s: %s (%d octets) differs from the message served (%d octets, LF line ends, X-TUID added): %s",
				m.ID, filepath.Base(p), len(got), len(served[i]), firstDiff(got, mbsyncLocal(served[i])))
		}
	}
	t.Logf("%d messages compared, %d without an end of header skipped by mbsync (\"incomplete header\")", len(msgs)-skipped, skipped)
	if len(files) != len(msgs)-skipped {
		t.Errorf("Maildir INBOX has %d messages, want %d", len(files), len(msgs)-skipped)
	}
	for _, box := range []string{"Drafts", "Sent", "Trash", "Junk", "Archive"} {
		if fi, err := os.Stat(filepath.Join(maildir, box, "cur")); err != nil || !fi.IsDir() {
			t.Errorf("mailbox %s not synced: %v", box, err)
		}
	}

	// A second sync finds nothing to do and changes no file.
	run()
	again := maildirFiles(t, filepath.Join(maildir, "INBOX"))
	if len(again) != len(files) {
		t.Errorf("second sync: %d files, first %d", len(again), len(files))
	}
	for uid, p := range files {
		if again[uid] != p {
			t.Errorf("second sync: UID %d file %s, was %s", uid, again[uid], p)
			break
		}
	}
}

// servedBodies returns BODY[] of messages 1..len(msgs) of INBOX, checking
// each against what was delivered (trace fields + e2e.Wire).
func servedBodies(t *testing.T, addr string, msgs []corpus.Message) [][]byte {
	t.Helper()
	c := login(t, addr)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	bufs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatalf("FETCH 1:* BODY.PEEK[]: %v", err)
	}
	if len(bufs) != len(msgs) {
		t.Fatalf("FETCH 1:*: %d messages, want %d", len(bufs), len(msgs))
	}
	trace := e2e.TracePrefix(sender, user)
	out := make([][]byte, len(msgs))
	for i, b := range bufs {
		out[i] = sectionBytes(b)
		checkDelivered(t, msgs[i], out[i], trace)
	}
	c.Logout().Wait()
	return out
}

// mbsyncExpect returns the expected Maildir file mbsync 1.4 writes for
// a message served as body: LF line ends (mbsyncLocal) and an "X-TUID:"
// field of 12 characters added as the last header line (isync tags every
// message it propagates so it can find it again). ok is false when the
// message has no empty line ending its header: mbsync skips those
// ("message N from far side has incomplete header; skipping").
func mbsyncExpect(body []byte) (mbsyncFile, bool) {
	local := mbsyncLocal(body)
	i := bytes.Index(local, []byte("\n\n"))
	if i < 0 {
		return mbsyncFile{}, false
	}
	return mbsyncFile{head: local[:i+1], rest: local[i+1:]}, true
}

// mbsyncFile is the expected content of a Maildir file: head, an X-TUID
// line, rest.
type mbsyncFile struct{ head, rest []byte }

var xTUID = regexp.MustCompile(`\AX-TUID: [A-Za-z0-9+/]{12}\n`)

// Match reports whether got is head + "X-TUID: <12 chars>\n" + rest.
func (f mbsyncFile) Match(got []byte) bool {
	const n = len("X-TUID: 123456789012\n")
	return len(got) == len(f.head)+n+len(f.rest) &&
		bytes.HasPrefix(got, f.head) && xTUID.Match(got[len(f.head):]) &&
		bytes.Equal(got[len(f.head)+n:], f.rest)
}

// mbsyncLocal converts a message as served over IMAP into what mbsync
// writes into a Maildir: it stores lines with LF, removing the CR of each
// CRLF (isync's copy_msg_convert); lone CRs stay.
func mbsyncLocal(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
}

// syncState reads mbsync's state file (SyncState *): header lines, an
// empty line, then "farUID nearUID flags" per message. It returns far UID
// to near UID (the ",U=" in the Maildir file name).
func syncState(t *testing.T, path string) map[uint32]uint32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("mbsync state: %v", err)
	}
	_, body, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		t.Fatalf("mbsync state %s: no empty line", path)
	}
	out := map[uint32]uint32{}
	for _, line := range bytes.Split(body, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) < 2 {
			continue
		}
		far, err1 := strconv.ParseUint(string(f[0]), 10, 32)
		near, err2 := strconv.ParseUint(string(f[1]), 10, 32)
		if err1 != nil || err2 != nil {
			t.Fatalf("mbsync state %s: bad line %q", path, line)
		}
		out[uint32(far)] = uint32(near)
	}
	return out
}

var maildirUID = regexp.MustCompile(`,U=(\d+)`)

// maildirFiles maps UID (from mbsync's ",U=n" file-name field) to path,
// for every message in dir/cur and dir/new.
func maildirFiles(t *testing.T, dir string) map[uint32]string {
	t.Helper()
	out := map[uint32]string{}
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatalf("Maildir: %v", err)
		}
		for _, e := range ents {
			m := maildirUID.FindStringSubmatch(e.Name())
			if m == nil {
				t.Errorf("Maildir file without a UID: %s", e.Name())
				continue
			}
			n, _ := strconv.ParseUint(m[1], 10, 32)
			if prev, dup := out[uint32(n)]; dup {
				t.Errorf("UID %d twice: %s and %s", n, prev, e.Name())
			}
			out[uint32(n)] = filepath.Join(dir, sub, e.Name())
		}
	}
	return out
}

func splitHostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := len(addr) - 1
	for i >= 0 && addr[i] != ':' {
		i--
	}
	if i < 0 {
		t.Fatalf("bad address %q", addr)
	}
	return addr[:i], addr[i+1:]
}
