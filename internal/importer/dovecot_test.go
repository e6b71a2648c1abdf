package importer_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bucketmail/bucketmail/internal/importer"
	"github.com/bucketmail/bucketmail/internal/testutil/dovecot"
)

// TestMaildirDovecot lets Dovecot write a Maildir (APPEND with flags,
// keywords and dates, into INBOX and subfolders) and checks that the
// importer reads back the same bytes, flags, dates and folder names.
func TestMaildirDovecot(t *testing.T) {
	in := dovecot.Start(t)
	c, err := imapclient.DialInsecure(in.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(in.User, in.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	type msg struct {
		mailbox string
		flags   []imap.Flag
		date    time.Time
		body    string
	}
	base := time.Date(2019, 3, 4, 5, 6, 7, 0, time.UTC)
	msgs := []msg{
		{"INBOX", nil, base, "Subject: none\r\n\r\nno flags\r\n"},
		{"INBOX", []imap.Flag{imap.FlagSeen}, base.Add(time.Hour), "Subject: seen\r\n\r\nx\r\n"},
		{"INBOX", []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged}, base.Add(2 * time.Hour), "Subject: sfa\r\n\r\nx\r\n"},
		{"INBOX", []imap.Flag{imap.FlagDraft, imap.FlagDeleted}, base.Add(3 * time.Hour), "Subject: dd\r\n\r\nx\r\n"},
		{"INBOX", []imap.Flag{"$Forwarded", "$Junk", "Work"}, base.Add(4 * time.Hour), "Subject: kw\r\n\r\nx\r\n"},
		{"Sub.Folder", []imap.Flag{imap.FlagSeen}, base.Add(5 * time.Hour), "Subject: sub\r\n\r\nx\r\n"},
		{"Entwürfe", []imap.Flag{imap.FlagDraft}, base.Add(6 * time.Hour), "Subject: draft\r\n\r\nx\r\n"},
	}
	for _, mb := range []string{"Sub", "Sub.Folder", "Entwürfe"} {
		if err := c.Create(mb, nil).Wait(); err != nil {
			t.Fatalf("CREATE %s: %v", mb, err)
		}
	}
	for _, m := range msgs {
		ac := c.Append(m.mailbox, int64(len(m.body)), &imap.AppendOptions{Flags: m.flags, Time: m.date})
		ac.Write([]byte(m.body))
		ac.Close()
		if _, err := ac.Wait(); err != nil {
			t.Fatalf("APPEND to %s: %v", m.mailbox, err)
		}
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}

	flagString := func(fl []string) string {
		s := append([]string(nil), fl...)
		sort.Strings(s)
		return strings.Join(s, " ")
	}
	read := func(dir string) []string {
		var out []string
		err := importer.Maildir(context.Background(), dir, func(path string, flags []string, d time.Time) error {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			out = append(out, flagString(flags)+"|"+d.UTC().Format(time.RFC3339)+"|"+string(data))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := map[string][]string{}
	for _, m := range msgs {
		var fl []string
		for _, f := range m.flags {
			fl = append(fl, string(f))
		}
		name := strings.ReplaceAll(m.mailbox, ".", "/")
		want[name] = append(want[name], flagString(fl)+"|"+m.date.Format(time.RFC3339)+"|"+m.body)
	}
	got := map[string][]string{"INBOX": read(in.Maildir())}
	folders, err := importer.Subfolders(in.Maildir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range folders {
		names = append(names, f.Name)
		if msgs := read(f.Path); len(msgs) > 0 {
			got[f.Name] = msgs
		}
	}
	if strings.Join(names, ",") != "Entwürfe,Sub,Sub/Folder" {
		t.Errorf("Subfolders = %q (dirs in %s)", names, filepath.Base(in.Maildir()))
	}
	for name, w := range want {
		if strings.Join(got[name], "\n") != strings.Join(w, "\n") {
			t.Errorf("%s:\ngot  %q\nwant %q", name, got[name], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("folders with mail: %d, want %d", len(got), len(want))
	}
}
