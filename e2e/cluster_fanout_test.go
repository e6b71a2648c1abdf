package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/bucketmail/bucketmail/internal/testutil/cluster"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// TestClusterIdleFanOut: 30 sessions IDLE on server B, ten for each of
// three accounts. One LMTP transaction on A delivers to all three: every
// session sees * 1 EXISTS within 1 s. A STORE on A in the first account
// reaches that account's ten sessions as FETCH FLAGS, and the other
// accounts' sessions see nothing (events are routed per account).
func TestClusterIdleFanOut(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 2, PollInterval: 30 * time.Second})
	clRequireShared(t, c)
	A, B := c.Nodes[0], c.Nodes[1]
	accts := []string{"fan1@example.org", "fan2@example.org", "fan3@example.org"}
	const pw, per = "cluster-fan-1", 10
	for _, a := range accts {
		c.AddUser(t, a, pw)
	}
	sessions := make([][]*cluster.Watcher, len(accts))
	for i, a := range accts {
		for k := range per {
			w := cluster.Login(t, fmt.Sprintf("%s#%d/%s", B.Name, k, a), B.IMAPAddr, a, pw)
			if _, err := w.Select("INBOX", nil).Wait(); err != nil {
				t.Fatalf("%s: SELECT: %v", w.Name, err)
			}
			w.Idle(t)
			sessions[i] = append(sessions[i], w)
		}
	}
	lc, err := e2e.DialLMTP(A.LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	t0 := time.Now()
	res, err := lc.Deliver(sender, accts, clMessage("fanout-1", 2000))
	if err != nil {
		t.Fatalf("A: LMTP: %v", err)
	}
	for r, e := range res {
		if e != nil {
			t.Fatalf("A: LMTP %s: %v", r, e)
		}
	}
	var worst time.Duration
	for i := range accts {
		for _, w := range sessions[i] {
			ev, ok := w.Wait(clWait, func(e cluster.Event) bool { return e.Kind == "EXISTS" })
			if !ok {
				t.Errorf("%s: no EXISTS within %v", w.Name, clWait)
				continue
			}
			if ev.Num != 1 {
				t.Errorf("%s: * %d EXISTS, want 1", w.Name, ev.Num)
			}
			worst = max(worst, ev.At.Sub(t0))
		}
	}
	t.Logf("EXISTS reached all %d sessions on B within %v of the start of the LMTP transaction on A", len(accts)*per, worst.Round(100*time.Microsecond))
	if worst > clBusLatency {
		t.Errorf("the last session saw EXISTS after %v, want within %v", worst, clBusLatency)
	}

	a := cluster.Login(t, A.Name, A.IMAPAddr, accts[0], pw)
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("A: SELECT: %v", err)
	}
	if err := a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatalf("A: STORE: %v", err)
	}
	for _, w := range sessions[0] {
		ev, ok := w.Wait(clWait, func(e cluster.Event) bool { return e.Kind == "FETCH" })
		if !ok {
			t.Errorf("%s: no FETCH within %v of STORE on A", w.Name, clWait)
			continue
		}
		if ev.Num != 1 || !slices.Equal(ev.Flags, []string{`\Answered`}) {
			t.Errorf("%s: * %d FETCH (FLAGS %v), want * 1 FETCH (FLAGS (\\Answered))", w.Name, ev.Num, ev.Flags)
		}
	}
	// The other accounts' sessions: nothing more (give a stray event
	// the time the first account's events took, and then some).
	time.Sleep(300 * time.Millisecond)
	for i := 1; i < len(accts); i++ {
		for _, w := range sessions[i] {
			if ev := w.Events(); len(ev) != 0 {
				t.Errorf("%s: unexpected %v after a STORE in another account", w.Name, ev)
			}
		}
	}
	for i := range accts {
		for _, w := range sessions[i] {
			w.Done(t)
		}
	}
}
