package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bucketmail/bucketmail/internal/testutil/natsd"
)

// Tests for the findings of a newcomer's test (numbered as reported).

// TestUsage (finding 15): the usage names every subcommand run
// dispatches; "serve --help" prints the synopsis and the flags, ending
// in a newline, exit 0; a bad flag prints its error and the usage once.
func TestUsage(t *testing.T) {
	for _, cmd := range []string{"serve", "user add", "user passwd", "user del", "user list", "import", "reindex", "fsck",
		"cache stats|purge", "pw", "version", "help"} {
		if !strings.Contains(usage, "\n  bucketmail "+cmd+" ") && !strings.Contains(usage, "\n  bucketmail "+cmd+"\n") {
			t.Errorf("usage lacks %q", cmd)
		}
	}
	_, errOut, code := runBin(t, "", "serve", "--help")
	if code != 0 || !strings.HasPrefix(errOut, "usage:\n  bucketmail serve [--config FILE]") || !strings.HasSuffix(errOut, "dynamodb://TABLE\n") ||
		strings.Count(errOut, "  -data-dir directory\n") != 1 || strings.Count(errOut, "usage:") != 1 || !strings.Contains(errOut, "\nflags:\n  -bus URL\n") {
		t.Errorf("serve --help: exit %d, stderr:\n%s", code, errOut)
	}
	_, errOut, code = runBin(t, "", "fsck", "-h")
	if code != 0 || !strings.HasPrefix(errOut, "usage:\n  bucketmail fsck [--repair] [--grace DURATION] [--workers N]\nflags:\n") {
		t.Errorf("fsck -h: exit %d, stderr:\n%s", code, errOut)
	}
	_, errOut, code = runBin(t, "", "serve", "--no-such-flag")
	if code != 2 || !strings.HasPrefix(errOut, "bucketmail: usage: serve: flag provided but not defined: -no-such-flag\nusage:\n") ||
		strings.Count(errOut, "usage:\n") != 1 || strings.Count(errOut, "flag provided but not defined") != 1 || strings.Contains(errOut, "-data-dir directory") {
		t.Errorf("serve --no-such-flag: exit %d, stderr:\n%s", code, errOut)
	}
}

// TestReindexRefusesWhileServing (finding 3): reindex refuses while a
// serve answers on the data directory's control socket (a dry run is
// allowed), and works once it stopped.
func TestReindexRefusesWhileServing(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	mustRun(t, "pw\n", "user", "add", "alice@example.org", "--password-stdin", "--data-dir", data)
	s := startServe(t, data, "")
	if reply, err := lmtpTry(s.addr("lmtp"), "alice@example.org", outageMsg("one")); err != nil || !strings.HasPrefix(reply, "250") {
		t.Fatalf("delivery: %q, %v", reply, err)
	}
	_, errOut, code := runBin(t, "", "reindex", "--user", "alice@example.org", "--data-dir", data)
	want := "bucketmail: reindex: a server may be running: a server is running on data directory " + data + " (" +
		filepath.Join(data, "control.sock") + " answers); stop it first: changes made while the index is rebuilt would be lost from it\n"
	if code != 1 || errOut != want {
		t.Errorf("reindex while serving: exit %d, stderr %q; want exit 1 and %q", code, errOut, want)
	}
	out := mustRun(t, "", "reindex", "--user", "alice@example.org", "--dry-run", "--data-dir", data)
	if !strings.HasPrefix(out, "would rebuild alice@example.org: 6 mailboxes, 1 messages (") {
		t.Errorf("reindex --dry-run while serving printed %q", out)
	}
	s.stop()
	if out := mustRun(t, "", "reindex", "--user", "alice@example.org", "--data-dir", data); !strings.HasPrefix(out, "rebuilt alice@example.org: 6 mailboxes, 1 messages (") {
		t.Errorf("reindex after stop printed %q", out)
	}
}

// TestReindexPostgresNeedsForce (finding 3): with a shared PostgreSQL
// index reindex refuses without --force, before it connects anywhere.
func TestReindexPostgresNeedsForce(t *testing.T) {
	_, errOut, code := runBin(t, "", "reindex", "--all", "--data-dir", t.TempDir(), "--s3-bucket", "mail",
		"--metadb", "postgres://bm@127.0.0.1:1/mail", "--userdb", "postgres://bm@127.0.0.1:1/mail")
	want := "bucketmail: reindex: a server may be running: metadb = postgres is shared by servers this command cannot see; " +
		"stop every server first, then run reindex again with --force\n"
	if code != 1 || errOut != want {
		t.Errorf("reindex on postgres without --force: exit %d, stderr %q; want exit 1 and %q", code, errOut, want)
	}
}

// TestServeHint (findings 5 and 16): the "no users yet" hint names
// --config and the flags the CLI needs too (not the listeners), and
// not --password-stdin (user add prompts without echo in a terminal).
func TestServeHint(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := startServe(t, data, "", "--node-name", "n1")
	re := regexp.MustCompile(`^no users yet; add one with: bucketmail user add you@example\.org --config \S+/bucketmail\.toml --data-dir ` +
		regexp.QuoteMeta(shellQuote(data)) + ` --node-name n1$`)
	s.waitLog("the user add hint", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasPrefix(msg, "no users yet") && (re.MatchString(msg) || t.Failed() || func() bool { t.Errorf("hint %q, want %s", msg, re); return true }())
	})
	s.stop()
}

// TestUserCommandBusClose (finding 15): a user command on the NATS bus
// closes it without a WARN "bus: disconnected" err=<nil>.
func TestUserCommandBusClose(t *testing.T) {
	srv := natsd.Start(t)
	data := filepath.Join(t.TempDir(), "data")
	out, errOut, code := runBin(t, "pw\n", "user", "add", "alice@example.org", "--password-stdin", "--data-dir", data, "--bus", srv.URL)
	if code != 0 || out != "added alice@example.org\n" || strings.Contains(errOut, "WARN") || strings.Contains(errOut, "disconnected") {
		t.Errorf("user add --bus nats: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestImportStopsAtBadFile (finding 18): import stops at the first path
// that fails and says what was imported and which paths to run again.
func TestImportStopsAtBadFile(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	mustRun(t, "pw\n", "user", "add", "alice@example.org", "--password-stdin", "--data-dir", data)
	good := filepath.Join(dir, "good.mbox")
	if err := os.WriteFile(good, []byte("From a@example.net Sat Jan  3 01:05:34 1998\nSubject: one\n\n1\n\n"+
		"From a@example.net Sat Jan  3 01:05:35 1998\nSubject: two\n\n2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing, later := filepath.Join(dir, "missing.mbox"), filepath.Join(dir, "later.mbox")
	out, errOut, code := runBin(t, "", "import", "--data-dir", data, "--user", "alice@example.org", good, missing, later)
	want := fmt.Sprintf("bucketmail: import stopped at %s: stat %s: no such file or directory; 2 messages were imported into "+
		"alice@example.org (0 of them from %s); paths done: [%q]; not started: [%q]\n", missing, missing, missing, good, later)
	if code != 1 || out != good+": 2 messages into INBOX\n" || errOut != want {
		t.Errorf("import: exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errOut, want)
	}
}
