package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestServeRebuildsFromBucket: serve with its mail in versitygw; a user,
// three deliveries, a flag and a keyword, a non-ASCII mailbox with a
// copy, one flush interval; then the whole data dir is deleted. reindex
// --all --dry-run on an empty data dir reports the account; serve on an
// empty data dir rebuilds users and mail from the bucket before it
// accepts logins: the same password works, and the mailboxes, UIDs,
// UIDVALIDITY, flags and INTERNALDATEs are those from before.
func TestServeRebuildsFromBucket(t *testing.T) {
	_, section, s3Flags := s3Setup(t)
	data := filepath.Join(t.TempDir(), "data")
	mustRun(t, "pw\n", append([]string{"user", "add", "alice@example.org", "--password-stdin", "--data-dir", data}, s3Flags...)...)
	s := startServe(t, data, section)
	lmtpAddr := s.addr("lmtp")
	for _, subj := range []string{"one", "two", "three"} {
		if reply, err := lmtpTry(lmtpAddr, "alice@example.org", outageMsg(subj)); err != nil || !strings.HasPrefix(reply, "250") {
			t.Fatalf("delivery %s: %q, %v", subj, reply, err)
		}
	}
	ic := imapLogin(t, s.addr("imap"))
	if err := ic.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Label1"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := ic.Create(utf7Name, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.Copy(imap.UIDSetNum(2), utf7Name).Wait(); err != nil {
		t.Fatal(err)
	}
	before := mailState(t, ic)
	ic.Close()
	time.Sleep(1500 * time.Millisecond) // one flush interval (1 s), and then some
	s.stop()
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}

	empty := filepath.Join(t.TempDir(), "empty")
	out := mustRun(t, "", append([]string{"reindex", "--all", "--dry-run", "--data-dir", empty}, s3Flags...)...)
	if !strings.HasPrefix(out, "would rebuild alice@example.org: 7 mailboxes, 4 messages (") || !strings.Contains(out, " 0 GET,") {
		t.Errorf("reindex --dry-run printed %q", out)
	}

	s = startServe(t, data, section)
	s.waitLog("index rebuilt", func(m map[string]any) bool { return m["msg"] == "index rebuilt from the bucket" })
	ic = imapLogin(t, s.addr("imap"))
	after := mailState(t, ic)
	if !slices.Equal(after, before) {
		t.Errorf("after the rebuild:\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	if len(before) != 2 || !strings.Contains(before[0], `uid=1 flags=[$Label1 \Flagged]`) || !strings.Contains(before[1], "subject=two") {
		t.Errorf("state before:\n%s", strings.Join(before, "\n"))
	}
	ic.Close()
	s.stop()
}

// mailState lists INBOX and "Ünïcödé": UIDVALIDITY, then per message
// UID, flags, INTERNALDATE and subject.
func mailState(t *testing.T, ic *imapclient.Client) []string {
	t.Helper()
	var out []string
	for _, mb := range []string{"INBOX", utf7Name} {
		sel, err := ic.Select(mb, nil).Wait()
		if err != nil {
			t.Fatalf("SELECT %s: %v", mb, err)
		}
		line := fmt.Sprintf("%s uidvalidity=%d", mb, sel.UIDValidity)
		msgs, err := ic.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
			UID: true, Flags: true, InternalDate: true, Envelope: true,
		}).Collect()
		if err != nil {
			t.Fatalf("FETCH %s: %v", mb, err)
		}
		for _, m := range msgs {
			flags := make([]string, len(m.Flags))
			for i, f := range m.Flags {
				flags[i] = string(f)
			}
			slices.Sort(flags)
			line += fmt.Sprintf("\n  uid=%d flags=%v date=%s subject=%s", m.UID, flags,
				m.InternalDate.Format(time.RFC3339), m.Envelope.Subject)
		}
		out = append(out, line)
	}
	return out
}

// utf7Name is "Ünïcödé" in modified UTF-7 (RFC 3501 §5.1.3).
const utf7Name = "&ANw-n&AO8-c&APY-d&AOk-"
