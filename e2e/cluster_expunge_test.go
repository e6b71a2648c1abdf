package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/bucketmail/bucketmail/internal/bus"
	"github.com/bucketmail/bucketmail/internal/testutil/cluster"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// TestClusterExpungeRules: an EXPUNGE made on server A reaches a session
// on server B (not IDLE) only where RFC 3501 §7.4.1 allows it: not in
// the responses to FETCH, STORE or SEARCH (sequence-number forms), but
// at the end of NOOP. After each expunge on A the test waits until the
// bus carried it (a spy on the bus) so that B has heard of it.
func TestClusterExpungeRules(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 2})
	clRequireShared(t, c)
	const acct, pw = "rules@example.org", "cluster-rules-1"
	c.AddUser(t, acct, pw)
	A, B := c.Nodes[0], c.Nodes[1]
	lc, err := e2e.DialLMTP(A.LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 6; i++ {
		if err := lc.Deliver1(sender, acct, clMessage(fmt.Sprintf("rules-%d", i), 800)); err != nil {
			t.Fatalf("A: LMTP: %v", err)
		}
	}
	lc.Close()
	spy := c.Spy(t)

	r, err := e2e.DialRaw(B.IMAPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Login(acct, pw); err != nil {
		t.Fatal(err)
	}
	if _, err := r.MustOK("SELECT INBOX"); err != nil {
		t.Fatal(err)
	}
	a := cluster.Login(t, A.Name, A.IMAPAddr, acct, pw)
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("A: SELECT: %v", err)
	}
	expunges := 0
	// expungeOnA expunges the message with sequence number seq (in A's
	// view) and waits until the bus has carried the expunge.
	expungeOnA := func(seq uint32) {
		t.Helper()
		if err := a.Store(imap.SeqSetNum(seq), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			t.Fatalf("A: STORE: %v", err)
		}
		if err := a.Expunge().Close(); err != nil {
			t.Fatalf("A: EXPUNGE: %v", err)
		}
		expunges++
		n := 0
		if _, ok := spy.WaitFor(clWait, func(ev bus.Event) bool {
			if ev.Kind == bus.KindExpunge {
				n++
			}
			return n >= expunges
		}); !ok {
			t.Fatalf("bus: expunge %d not seen within %v", expunges, clWait)
		}
		time.Sleep(200 * time.Millisecond) // B handles the event
	}
	hasExpunge := func(untagged [][]byte) []string {
		var out []string
		for _, u := range untagged {
			if bytes.HasSuffix(u, []byte(" EXPUNGE")) {
				out = append(out, string(u))
			}
		}
		return out
	}
	for _, cmd := range []string{"FETCH 1:* (FLAGS)", "STORE 1 +FLAGS.SILENT (\\Seen)", "SEARCH ALL"} {
		expungeOnA(2)
		u, tagged, err := r.Cmd(cmd, nil, "")
		if err != nil {
			t.Fatalf("B: %s: %v", cmd, err)
		}
		if e := hasExpunge(u); len(e) > 0 {
			t.Errorf("B: %s (answered %q) sent %v: EXPUNGE is not allowed during %s (RFC 3501 §7.4.1)", cmd, tagged, e, strings.Fields(cmd)[0])
		}
		u, err = r.MustOK("NOOP")
		if err != nil {
			t.Fatalf("B: NOOP: %v", err)
		}
		if e := hasExpunge(u); len(e) != 1 || e[0] != "* 2 EXPUNGE" {
			t.Errorf("B: NOOP after %s: expunges %v, want [* 2 EXPUNGE]", cmd, e)
		}
	}
	u, err := r.MustOK("FETCH 1:* (UID)")
	if err != nil {
		t.Fatal(err)
	}
	if len(u) != 3 {
		t.Errorf("B: FETCH 1:* (UID) after three expunges: %q, want three messages", u)
	}
}
