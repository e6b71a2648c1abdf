package imapserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	blobfs "github.com/bucketmail/bucketmail/internal/blob/fs"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/testutil/pgsrv"
	"github.com/bucketmail/bucketmail/internal/userdb/authcache"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
	"github.com/bucketmail/bucketmail/internal/userdb/sqldb"
)

// syncLog is a concurrency-safe log sink.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count returns the number of log lines containing every one of subs.
func (l *syncLog) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.SplitSeq(l.b.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			n++
		}
	}
	return n
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDatabaseDown: one PostgreSQL holds the index and the users, with
// the auth cache on (finding 9). While it is stopped, LOGIN answers
// NO [UNAVAILABLE] both for a user whose login is cached (the store
// cannot be read) and for one who is not (the user database cannot be
// read), never SERVERBUG; an IDLE session whose store reads fail logs
// one WARN, not an ERROR per poll; once the database is back, that is
// logged and LOGIN works.
func TestDatabaseDown(t *testing.T) {
	ctx := t.Context()
	pg := pgsrv.Start(t)
	db, err := metadb.OpenPostgres(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	dir := t.TempDir()
	blobs, err := blobfs.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := mailstore.Open(ctx, mailstore.Options{DB: db, Blobs: blobs, SpoolDir: filepath.Join(dir, "spool")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	users, err := sqldb.OpenWith(ctx, pg.URL("postgres"), sqldb.Options{Hasher: func(pw string) (string, error) {
		return password.HashScheme("SHA256-CRYPT", pw)
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { users.Close() })
	for _, u := range []string{"alice@example.org", "bob@example.org"} {
		if err := users.AddUser(ctx, u, "pw-"+u); err != nil {
			t.Fatal(err)
		}
	}
	var logs syncLog
	env := newTestEnv(t, func(o *Options) {
		o.Store = st
		o.Auth = authcache.New(users, authcache.Options{})
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})

	// alice's login is now cached; her IDLE session starts.
	idle := dialRaw(t, env.addr)
	idle.send("a1 LOGIN alice@example.org pw-alice@example.org\r\n")
	idle.expect("a1 OK")
	idle.send("a2 SELECT INBOX\r\n")
	idle.expect("a2 OK")
	idle.send("a3 IDLE\r\n")
	idle.expect("+ ")

	pg.Stop()
	for _, u := range []string{"alice@example.org", "bob@example.org"} {
		c := dialRaw(t, env.addr)
		c.send("b1 LOGIN " + u + " pw-" + u + "\r\n")
		if got := c.expect("b1 "); !strings.HasPrefix(got, "b1 NO [UNAVAILABLE] ") {
			t.Errorf("LOGIN %s with the database down: %q, want NO [UNAVAILABLE]", u, got)
		}
	}

	// Polls (as the cluster node makes every 2 s with the bus down):
	// every one fails; one WARN in all.
	const polls = 5
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; logs.count("reading mailbox changes failed") < polls; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d wake-ups, %d failed reads logged, want %d:\n%s", i, logs.count("reading mailbox changes failed"), polls, logs.String())
		}
		st.NotifyAll()
		time.Sleep(50 * time.Millisecond)
	}
	if n := logs.count("level=WARN", "reading mailbox changes"); n != 1 {
		t.Errorf("%d WARN lines about reading mailbox changes, want 1:\n%s", n, logs.String())
	}

	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for logs.count("level=INFO", "reading mailbox changes works again") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery logged 15 s after the database came back:\n%s", logs.String())
		}
		st.NotifyAll()
		time.Sleep(50 * time.Millisecond)
	}
	if n := logs.count("level=INFO", "reading mailbox changes works again", "failures="); n != 1 {
		t.Errorf("%d recovery lines, want 1", n)
	}
	idle.send("DONE\r\n")
	idle.expect("a3 OK")
	c := dialRaw(t, env.addr)
	c.send("c1 LOGIN bob@example.org pw-bob@example.org\r\n")
	if got := c.expect("c1 "); !strings.HasPrefix(got, "c1 OK") {
		t.Errorf("LOGIN bob once the database is back: %q", got)
	}
	if n := logs.count("level=ERROR"); n != 0 {
		t.Errorf("%d ERROR lines, want none:\n%s", n, logs.String())
	}
}

// TestSyncFailLog: the first failure at WARN, then at most one WARN a
// minute with the count since the last, the rest at DEBUG; recovery at
// INFO once.
func TestSyncFailLog(t *testing.T) {
	var logs syncLog
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	var f syncFailLog
	t0 := time.Date(2026, 11, 29, 19, 0, 0, 0, time.UTC)
	boom := errors.New("db down")
	f.ok(log, t0)
	for _, s := range []int{0, 10, 30, 61, 70} {
		f.failed(log, boom, t0.Add(time.Duration(s)*time.Second))
	}
	f.ok(log, t0.Add(80*time.Second))
	f.ok(log, t0.Add(81*time.Second))
	f.failed(log, boom, t0.Add(90*time.Second))
	want := []string{
		`level=WARN msg="imap: reading mailbox changes failed; sessions try again at their next poll or command (logged at most once a minute until it works again)" err="db down"`,
		`level=DEBUG msg="imap: reading mailbox changes failed" err="db down"`,
		`level=DEBUG msg="imap: reading mailbox changes failed" err="db down"`,
		`level=WARN msg="imap: reading mailbox changes still failing" failures=3 for=1m1s err="db down"`,
		`level=DEBUG msg="imap: reading mailbox changes failed" err="db down"`,
		`level=INFO msg="imap: reading mailbox changes works again" failed_for=1m20s failures=5`,
		`level=WARN msg="imap: reading mailbox changes failed; sessions try again at their next poll or command (logged at most once a minute until it works again)" err="db down"`,
	}
	got := strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDBUnreachable: the errors a database outage gives are told from
// others.
func TestDBUnreachable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	tests := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("mailstore: account a: %w", refused), true},
		{fmt.Errorf("x: %w", sqlStateErr("57P01")), true},
		{fmt.Errorf("x: %w", sqlStateErr("08006")), true},
		{fmt.Errorf("x: %w", sqlStateErr("23505")), false},
		{errors.New("mailstore: something else"), false},
		{context.Canceled, false},
		{nil, false},
	}
	for _, tc := range tests {
		if got := dbUnreachable(tc.err); got != tc.want {
			t.Errorf("dbUnreachable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

type sqlStateErr string

func (e sqlStateErr) Error() string    { return "SQLSTATE " + string(e) }
func (e sqlStateErr) SQLState() string { return string(e) }
