package main

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	pgtest "github.com/bucketmail/bucketmail/internal/testutil/pg"
)

// TestReindexPostgres (cluster reindex): mail delivered through a serve
// with its index in PostgreSQL (--metadb) and its bodies in versitygw;
// `reindex --all --force` rebuilds a fresh PostgreSQL metadata database from the
// bucket alone, and a serve on it shows the same mailboxes, UIDs, flags
// and dates. Then two servers start at once on another empty shared
// database: exactly one rebuilds it (prepareIndex's advisory lock), both
// serve the mail.
func TestReindexPostgres(t *testing.T) {
	srv, err := pgtest.Start()
	if err != nil {
		pgtest.Skip(t, err)
	}
	t.Cleanup(srv.Stop)
	ctx := context.Background()
	newDB := func(prefix string) string {
		name, err := srv.CreateDB(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		return srv.URL(name)
	}
	users, meta1 := newDB("users"), newDB("meta")
	_, section, s3Flags := s3Setup(t)
	pgFlags := func(meta string) []string { return []string{"--userdb", users, "--metadb", meta} }

	data := filepath.Join(t.TempDir(), "data")
	// With the local bus, user add warns that other servers hear of the
	// change only when their caches expire (newcomer finding 8).
	out, errOut, code := runBin(t, "pw\n", append(append([]string{"user", "add", "alice@example.org", "--password-stdin", "--data-dir", data}, s3Flags...), pgFlags(meta1)...)...)
	if code != 0 || out != "added alice@example.org\n" || !strings.Contains(errOut, `level=WARN msg="user add: metadb = postgres but bus = local: `+
		`other servers see this change only when their auth caches expire (auth.cache_ttl); give the servers' --bus nats://… or postgres://… to tell them at once"`) {
		t.Fatalf("user add: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	s := startServe(t, data, section, pgFlags(meta1)...)
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
	time.Sleep(1500 * time.Millisecond) // one journal flush interval (1 s), and then some
	s.stop()

	// The metadata database is lost: rebuild a fresh one from the bucket.
	meta2 := newDB("meta")
	data2 := filepath.Join(t.TempDir(), "data2")
	// Servers elsewhere may share the index: --force says they are stopped.
	out = mustRun(t, "", append(append([]string{"reindex", "--all", "--force", "--data-dir", data2}, s3Flags...), pgFlags(meta2)...)...)
	if !strings.HasPrefix(out, "rebuilt alice@example.org: 7 mailboxes, 4 messages (") {
		t.Errorf("reindex printed %q", out)
	}
	s = startServe(t, data2, section, pgFlags(meta2)...)
	ic = imapLogin(t, s.addr("imap"))
	if after := mailState(t, ic); !slices.Equal(after, before) {
		t.Errorf("after reindex:\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	ic.Close()
	s.stop()
	for _, l := range s.lines {
		if l["msg"] == "index rebuilt from the bucket" {
			t.Errorf("serve rebuilt an index that reindex had filled")
		}
	}

	// Two servers start at once on an empty shared database.
	meta3 := newDB("meta")
	var servers [2]*server
	var wg sync.WaitGroup
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i] = startServe(t, filepath.Join(t.TempDir(), "data"), section, append(pgFlags(meta3), "--node-name", "node"+string(rune('a'+i)))...)
		}()
	}
	wg.Wait()
	for _, s := range servers {
		ic := imapLogin(t, s.addr("imap"))
		if after := mailState(t, ic); !slices.Equal(after, before) {
			t.Errorf("shared rebuild:\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
		}
		ic.Close()
	}
	rebuilt := 0
	for _, s := range servers {
		s.stop()
		for _, l := range s.lines {
			if l["msg"] == "index rebuilt from the bucket" {
				rebuilt++
			}
		}
	}
	if rebuilt != 1 {
		t.Errorf("%d servers rebuilt the shared index, want 1", rebuilt)
	}
}
