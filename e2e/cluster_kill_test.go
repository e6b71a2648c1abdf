package e2e

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/cluster"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// TestClusterKillDuringDeliveries: LMTP deliveries run through servers A
// and B (two connections each, messages of 2 KB to 300 KB); A gets
// SIGKILL after 15 of its deliveries were answered 250, while more are in
// flight. Then, read through B and through C: every message that got 250
// from A or B is there exactly once with the bytes sent, no message is
// there twice, nothing is there that was not sent, UIDs strictly
// increase, and B and C show the same mailbox; a delivery through C
// afterwards gets a higher UID. `bucketmail fsck` finds no index entry
// without its object; with --grace 0 it may find objects A stored
// without committing their rows (a crash leaves those), --repair deletes
// them, and a last fsck --grace 0 is clean. In the metadata database no
// message row points to a missing blob row and every blob's refs is its
// number of message rows.
func TestClusterKillDuringDeliveries(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 3})
	clRequireShared(t, c)
	const acct, pw = "kill@example.org", "cluster-kill-1"
	c.AddUser(t, acct, pw)
	A, B, C := c.Nodes[0], c.Nodes[1], c.Nodes[2]

	const perWorker = 40
	const killAfter = 15
	var (
		mu     sync.Mutex
		sent   = map[string][]byte{} // every message whose transaction was started
		acked  = map[string]string{} // id -> node that answered 250
		errs   []string
		ackedA atomic.Int32
		kill   = make(chan struct{})
		killed = make(chan time.Time, 1)
		wg     sync.WaitGroup
	)
	go func() {
		<-kill
		if err := A.Kill(); err != nil {
			t.Errorf("SIGKILL A: %v", err)
		}
		killed <- time.Now()
	}()
	var killOnce sync.Once
	for _, w := range []struct {
		node *cluster.Node
		name string
	}{{A, "a0"}, {A, "a1"}, {B, "b0"}, {B, "b1"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lc, err := e2e.DialLMTP(w.node.LMTPAddr)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("%s: %v", w.name, err))
				mu.Unlock()
				return
			}
			defer lc.Close()
			for i := range perWorker {
				id := fmt.Sprintf("%s-%03d", w.name, i)
				size := 2000 + 1500*(i%5)
				if i%4 == 3 {
					size = 300_000
				}
				m := clMessage(id, size)
				mu.Lock()
				sent[id] = m
				mu.Unlock()
				err := lc.Deliver1(sender, acct, m)
				mu.Lock()
				if err == nil {
					acked[id] = w.node.Name
				} else {
					errs = append(errs, fmt.Sprintf("%s: %s: %v", w.node.Name, id, err))
				}
				mu.Unlock()
				if err != nil && w.node == A {
					return // A is gone
				}
				if err == nil && w.node == A && ackedA.Add(1) == killAfter {
					killOnce.Do(func() { close(kill) })
				}
			}
		}()
	}
	wg.Wait()
	killOnce.Do(func() { close(kill) }) // in case A never got that far
	<-killed
	var fromA, fromB int
	for _, n := range acked {
		if n == A.Name {
			fromA++
		} else {
			fromB++
		}
	}
	t.Logf("deliveries: %d started, 250 from A: %d, 250 from B: %d; errors (expected on A after the kill): %d", len(sent), fromA, fromB, len(errs))
	for _, e := range errs {
		if !strings.HasPrefix(e, A.Name+":") {
			t.Errorf("delivery through a live server failed: %s", e)
		}
	}
	if fromA < killAfter {
		t.Errorf("A answered 250 only %d times, want at least %d before the kill", fromA, killAfter)
	}
	if fromB != 2*perWorker {
		t.Errorf("B answered 250 %d times, want %d", fromB, 2*perWorker)
	}

	var views [][]clView
	for _, n := range []*cluster.Node{B, C} {
		cl := cluster.Login(t, n.Name, n.IMAPAddr, acct, pw)
		v := clFetchAll(t, n.Name, cl.Client, "INBOX", true)
		seen := map[string]int{}
		for _, m := range v {
			id := clID(m.Body)
			seen[id]++
			want, ok := sent[id]
			if !ok {
				t.Errorf("%s: UID %d is no message that was sent (id %q)", n.Name, m.UID, id)
				continue
			}
			if !bytes.HasSuffix(m.Body, want) || !e2e.TracePrefix(sender, acct).Match(m.Body[:len(m.Body)-len(want)]) {
				t.Errorf("%s: UID %d (%s): BODY[] is not the trace fields + the message sent", n.Name, m.UID, id)
			}
		}
		for id, k := range seen {
			if k > 1 {
				t.Errorf("%s: %s present %d times", n.Name, id, k)
			}
		}
		var missing []string
		for id := range acked {
			if seen[id] == 0 {
				missing = append(missing, id)
			}
		}
		slices.Sort(missing)
		if len(missing) > 0 {
			t.Errorf("%s: %d messages that got 250 are missing: %v", n.Name, len(missing), missing)
		}
		t.Logf("%s: INBOX has %d messages (%d acknowledged, %d committed by A without a 250 reaching the client)",
			n.Name, len(v), len(acked), len(v)-len(acked))
		views = append(views, v)
	}
	clSameView(t, "INBOX on B vs C", views[0], views[1])

	// A delivery after the crash gets a higher UID.
	lc, err := e2e.DialLMTP(C.LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	after := clMessage("after-kill", 1000)
	if err := lc.Deliver1(sender, acct, after); err != nil {
		t.Fatalf("C: delivery after the kill: %v", err)
	}
	lc.Close()
	cl := cluster.Login(t, C.Name, C.IMAPAddr, acct, pw)
	v := clFetchAll(t, C.Name, cl.Client, "INBOX", true)
	if len(v) != len(views[1])+1 || clID(v[len(v)-1].Body) != "after-kill" {
		t.Errorf("C: after one more delivery INBOX has %d messages, the last %q; want %d, after-kill", len(v), clID(v[len(v)-1].Body), len(views[1])+1)
	} else if last := views[1]; len(last) > 0 && v[len(v)-1].UID <= last[len(last)-1].UID {
		t.Errorf("C: the new message has UID %d, not above %d", v[len(v)-1].UID, last[len(last)-1].UID)
	}

	clCheckBlobRows(t, c)
	clFsck(t, B, 0, "fsck")
	orphans := clFsck(t, B, -1, "fsck", "--grace", "0")
	t.Logf("fsck --grace 0: %d objects without an index row (stored by A before the crash, never committed)", orphans)
	clFsck(t, B, 0, "fsck", "--grace", "0", "--repair")
	clFsck(t, B, 0, "fsck", "--grace", "0")
}

var clFsckSummary = regexp.MustCompile(`fsck: (\d+) accounts, (\d+) objects referenced by the index checked; (\d+) missing; (\d+) orphans older than \S+ \((\d+) deleted\)`)

// clFsck runs `bucketmail fsck ARGS` with node n's flags and checks that
// no index entry lacks its object. wantExit is the exit status, or -1
// for "0 or 1"; it returns the number of orphans reported.
func clFsck(t *testing.T, n *cluster.Node, wantExit int, args ...string) int {
	t.Helper()
	out, errOut, err := n.RunErr("", args...)
	code := e2e.ExitCode(err)
	m := clFsckSummary.FindStringSubmatch(out)
	if m == nil {
		t.Errorf("bucketmail %s: no summary line (exit %d)\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		return 0
	}
	t.Logf("bucketmail %s: exit %d: %s", strings.Join(args, " "), code, m[0])
	if m[3] != "0" {
		t.Errorf("bucketmail %s: %s index entries without their object:\n%s", strings.Join(args, " "), m[3], out)
	}
	if wantExit >= 0 && code != wantExit || wantExit < 0 && code > 1 {
		t.Errorf("bucketmail %s: exit status %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantExit, out, errOut)
	}
	var orphans int
	fmt.Sscan(m[4], &orphans)
	return orphans
}

// clCheckBlobRows checks the metadata database (internal/metadb's table
// layout): every message row's blob row exists and every blob row's refs
// is its number of message rows.
func clCheckBlobRows(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	out, err := c.PG.Psql(t.Context(), c.DBName, `
SELECT (SELECT count(*) FROM messages m LEFT JOIN blobs b ON b.key = m.blob_key WHERE b.key IS NULL),
       (SELECT count(*) FROM blobs b WHERE b.refs <> (SELECT count(*) FROM messages m WHERE m.blob_key = b.key)),
       (SELECT count(*) FROM messages), (SELECT count(*) FROM blobs)`)
	if err != nil {
		t.Errorf("metadata rows: %v (is the PostgreSQL schema laid out as internal/metadb's?)", err)
		return
	}
	f := strings.Split(strings.TrimSpace(out), "|")
	if len(f) != 4 {
		t.Errorf("metadata rows: %q", out)
		return
	}
	t.Logf("metadata: %s message rows, %s blob rows", f[2], f[3])
	if f[0] != "0" {
		t.Errorf("metadata: %s message rows point to a missing blob row", f[0])
	}
	if f[1] != "0" {
		t.Errorf("metadata: %s blob rows have refs different from their number of message rows", f[1])
	}
}
