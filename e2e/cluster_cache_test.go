package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"

	"github.com/bucketmail/bucketmail/internal/testutil/cluster"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// TestClusterCacheEviction (issue 6 §5, caches across servers): server
// B reads three messages (its read cache in front of the bucket keeps
// them); server A expunges one, and B drops exactly that object from its
// cache (bucketmail_cache_remote_evictions_total goes 0 → 1); `bucketmail
// user del` through A deletes the account, and B drops the other objects
// (→ 3) and its cached login and lookup: the password that B had cached
// fails at once, although the auth cache TTL is an hour, and B's LMTP
// refuses the address (550) instead of creating the account again.
func TestClusterCacheEviction(t *testing.T) {
	const window = 2 * time.Second
	c := cluster.Start(t, cluster.Options{Nodes: 2, Metrics: true, AuthCacheTTL: time.Hour, ConsistencyWindow: window, AuthThrottleMaxDelay: -time.Second})
	clRequireShared(t, c)
	const acct, pw = "evict@example.org", "cluster-evict-1"
	c.AddUser(t, acct, pw)
	A, B := c.Nodes[0], c.Nodes[1]
	lc, err := e2e.DialLMTP(A.LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"evict-1", "evict-2"} {
		if err := lc.Deliver1(sender, acct, clMessage(id, 20000)); err != nil {
			t.Fatalf("A: LMTP %s: %v", id, err)
		}
	}
	lc.Close()
	// B's LMTP looks the address up too (its auth cache keeps the lookup).
	lb, err := e2e.DialLMTP(B.LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()

	metric := func(want float64) float64 {
		t.Helper()
		got, present := clWaitMetric(t, B, "bucketmail_cache_remote_evictions_total", want, clWait)
		if !present && want == 0 {
			return 0 // a counter that was never incremented may be absent
		}
		if !present {
			t.Fatalf("B: /metrics has no bucketmail_cache_remote_evictions_total")
		}
		return got
	}
	if got := metric(0); got != 0 {
		t.Fatalf("B: bucketmail_cache_remote_evictions_total %v before any expunge, want 0", got)
	}

	// After the window of user add, B delivers one more message and reads
	// all three bodies (through its cache): its lookup and login are
	// cached too.
	time.Sleep(window + 500*time.Millisecond)
	if err := lb.Deliver1(sender, acct, clMessage("evict-3", 1000)); err != nil {
		t.Fatalf("B: LMTP evict-3: %v", err)
	}
	b := cluster.Login(t, B.Name, B.IMAPAddr, acct, pw)
	vb := clFetchAll(t, B.Name, b.Client, "INBOX", true)
	if len(vb) != 3 || clID(vb[0].Body) != "evict-1" || clID(vb[1].Body) != "evict-2" || clID(vb[2].Body) != "evict-3" {
		t.Fatalf("B: INBOX has %d messages, want evict-1, evict-2, evict-3", len(vb))
	}
	b.Logout().Wait()
	if err := clTryLogin(t, B.IMAPAddr, acct, pw); err != nil {
		t.Fatalf("B: LOGIN: %v", err)
	}

	// A expunges evict-1.
	a := cluster.Login(t, A.Name, A.IMAPAddr, acct, pw)
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("A: SELECT: %v", err)
	}
	if err := a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatalf("A: STORE: %v", err)
	}
	t0 := time.Now()
	if err := a.Expunge().Close(); err != nil {
		t.Fatalf("A: EXPUNGE: %v", err)
	}
	if got := metric(1); got != 1 {
		t.Errorf("B: bucketmail_cache_remote_evictions_total %v after A expunged one cached message, want 1", got)
	} else {
		t.Logf("B: cached object of the message A expunged dropped within %v", time.Since(t0).Round(time.Millisecond))
	}
	a.Logout().Wait()

	// user del through A: B drops the rest and the cached login.
	A.Run(t, "", "user", "del", acct)
	t0 = time.Now()
	if got := metric(3); got != 3 {
		t.Errorf("B: bucketmail_cache_remote_evictions_total %v after user del, want 3", got)
	} else {
		t.Logf("B: the deleted account's last cached object dropped within %v", time.Since(t0).Round(time.Millisecond))
	}
	if err := clTryLogin(t, B.IMAPAddr, acct, pw); !clIsNo(err) {
		t.Errorf("B: LOGIN of the deleted user: %v, want NO", err)
	}
	// Nor may B deliver to it (which would create the account again).
	err = lb.Deliver1(sender, acct, clMessage("evict-4", 1000))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || !strings.HasPrefix(err.Error(), "RCPT TO:") {
		t.Errorf("B: LMTP to the deleted user: %v, want RCPT refused with 550", err)
	}
	if n := c.Psql(t, `SELECT count(*) FROM accounts`); n != "0" {
		t.Errorf("metadata: %s account rows after user del and a delivery attempt, want 0", n)
	}
	time.Sleep(window + 500*time.Millisecond)
	if err := clTryLogin(t, B.IMAPAddr, acct, pw); !clIsNo(err) {
		t.Errorf("B: LOGIN of the deleted user after the consistency window: %v, want NO (nothing of it may stay cached)", err)
	}
}
