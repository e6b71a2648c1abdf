package e2e

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bucketmail/bucketmail/internal/bus"
	"github.com/bucketmail/bucketmail/internal/testutil/cluster"
	"github.com/bucketmail/bucketmail/internal/testutil/dynalite"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/dynamodb"
	"github.com/bucketmail/bucketmail/internal/userdb/sqldb"
)

// clTryLogin logs in on a fresh connection and returns the LOGIN error
// (nil: OK).
func clTryLogin(t *testing.T, addr, user, password string) error {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatalf("IMAP dial %s: %v", addr, err)
	}
	defer c.Close()
	err = c.Login(user, password).Wait()
	if err == nil {
		c.Logout().Wait()
	}
	return err
}

// TestClusterPasswordWindow: every server caches logins for an hour
// (consistency window 2 s).
// A password changed with `bucketmail user passwd` (run with node A's
// --bus and --node-name) works on server B at once, and the old one
// stops working there, because the command publishes "updating" (B then
// bypasses its cache for the account for the consistency window) and
// "updated". A control step first changes the password directly in the
// user database, with no bus event: B must keep accepting the cached old
// password, which shows that the cache is on and that the bus is what
// makes the difference. After the window the old password must still
// fail on B (the cached entry was flushed), and B uses its cache again
// (another direct change leaves the cached new password working). On the
// PostgreSQL user database and on DynamoDB
// (dynalite).
func TestClusterPasswordWindow(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		testPasswordWindow(t, "", func(ctx context.Context, url string) (userdb.Manager, func() error, error) {
			d, err := sqldb.Open(ctx, url, slog.New(slog.DiscardHandler))
			if err != nil {
				return nil, nil, err
			}
			return d, d.Close, nil
		})
	})
	t.Run("dynamodb", func(t *testing.T) {
		d := dynalite.Start(t)
		d.Setenv(t)
		testPasswordWindow(t, "dynamodb://bucketmail-cluster", func(ctx context.Context, url string) (userdb.Manager, func() error, error) {
			db, err := dynamodb.Open(ctx, url, slog.New(slog.DiscardHandler))
			if err != nil {
				return nil, nil, err
			}
			return db, func() error { return nil }, nil
		})
	})
}

func testPasswordWindow(t *testing.T, userDB string, open func(ctx context.Context, url string) (userdb.Manager, func() error, error)) {
	const window = 2 * time.Second
	c := cluster.Start(t, cluster.Options{Nodes: 2, UserDB: userDB, AuthCacheTTL: time.Hour, ConsistencyWindow: window, AuthThrottleMaxDelay: -time.Second})
	clRequireShared(t, c)
	const acct = "window@example.org"
	const pw1, pw0, pw2, pw3 = "window-old-1", "window-direct-0", "window-new-2", "window-direct-3"
	c.AddUser(t, acct, pw1)
	A, B := c.Nodes[0], c.Nodes[1]
	ctx := context.Background()

	// user add opened a window on every server; after it, B caches.
	time.Sleep(window + 500*time.Millisecond)
	if err := clTryLogin(t, B.IMAPAddr, acct, pw1); err != nil {
		t.Fatalf("B: LOGIN with the first password: %v", err)
	}
	// Control: a change in the database without a bus event. B answers
	// from its cache (TTL 1 h): the old password still works there.
	m, closeDB, err := open(ctx, c.UserDB)
	if err != nil {
		t.Fatalf("open user database %s: %v", c.UserDB, err)
	}
	if err := m.SetPassword(ctx, acct, pw0); err != nil {
		t.Fatalf("SetPassword directly: %v", err)
	}
	closeDB()
	if err := clTryLogin(t, B.IMAPAddr, acct, pw1); err != nil {
		t.Fatalf("B: LOGIN with the cached password after a change without bus event: %v; want OK from the auth cache", err)
	}

	spy := c.Spy(t)
	A.Run(t, pw2+"\n", "user", "passwd", acct, "--password-stdin")
	t0 := time.Now()
	attempts := 0
	var lastErr error
	for {
		attempts++
		lastErr = clTryLogin(t, B.IMAPAddr, acct, pw2)
		if lastErr == nil || time.Since(t0) > clWait {
			break
		}
		if !clIsNo(lastErr) {
			t.Fatalf("B: LOGIN with the new password: %v, want OK or NO", lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(t0)
	if lastErr != nil {
		t.Fatalf("B: LOGIN with the new password still fails %v after user passwd on A (%d attempts): %v", took, attempts, lastErr)
	}
	t.Logf("B: new password accepted on attempt %d, %v after `user passwd` on A exited (one LOGIN included)", attempts, took.Round(100*time.Microsecond))
	if attempts != 1 {
		t.Errorf("B refused the new password %d times (for %v) before accepting it, want it accepted at once", attempts-1, took)
	}
	checkOld := func(when string) {
		t.Helper()
		if err := clTryLogin(t, B.IMAPAddr, acct, pw1); !clIsNo(err) {
			t.Errorf("B: %s: LOGIN with the old (cached) password: %v, want NO", when, err)
		}
		if err := clTryLogin(t, B.IMAPAddr, acct, pw0); !clIsNo(err) {
			t.Errorf("B: %s: LOGIN with the directly set password: %v, want NO", when, err)
		}
		if err := clTryLogin(t, B.IMAPAddr, acct, pw2); err != nil {
			t.Errorf("B: %s: LOGIN with the new password: %v", when, err)
		}
	}
	checkOld("in the window")
	if err := clTryLogin(t, A.IMAPAddr, acct, pw2); err != nil {
		t.Errorf("A: LOGIN with the new password: %v", err)
	}
	if err := clTryLogin(t, A.IMAPAddr, acct, pw1); !clIsNo(err) {
		t.Errorf("A: LOGIN with the old password: %v, want NO", err)
	}
	// After the window B uses its cache again: the old entry must be
	// gone, not served for the rest of its TTL.
	time.Sleep(window + 500*time.Millisecond)
	checkOld("after the window")
	// And outside the window B answers from its cache again: a direct
	// change (no bus event) leaves the cached new password working.
	m, closeDB, err = open(ctx, c.UserDB)
	if err != nil {
		t.Fatalf("open user database %s: %v", c.UserDB, err)
	}
	if err := m.SetPassword(ctx, acct, pw3); err != nil {
		t.Fatalf("SetPassword directly: %v", err)
	}
	closeDB()
	if err := clTryLogin(t, B.IMAPAddr, acct, pw2); err != nil {
		t.Errorf("B: after the window, LOGIN with the cached password after a change without bus event: %v; want OK from the cache", err)
	}

	// What user passwd published: updating, then updated, from node-a.
	if _, ok := spy.WaitFor(clWait, func(ev bus.Event) bool { return ev.Kind == bus.KindAccountUpdated }); !ok {
		t.Errorf("bus: no \"updated\" event within %v of user passwd; events: %+v", clWait, spy.Events())
	}
	var kinds []string
	for _, ev := range spy.Events() {
		if ev.Kind != bus.KindAccountUpdating && ev.Kind != bus.KindAccountUpdated {
			continue
		}
		kinds = append(kinds, ev.Kind.String())
		if !strings.HasPrefix(ev.Origin, A.Name+"/") && ev.Origin != A.Name {
			t.Errorf("bus: %s event from %q, want %q or %q/… (user passwd ran with --node-name %s)", ev.Kind, ev.Origin, A.Name, A.Name, A.Name)
		}
		if ev.Account == "" {
			t.Errorf("bus: %s event with no account", ev.Kind)
		}
	}
	if len(kinds) != 2 || kinds[0] != "updating" || kinds[1] != "updated" {
		t.Errorf("bus: account events %v, want [updating updated]", kinds)
	}
}
