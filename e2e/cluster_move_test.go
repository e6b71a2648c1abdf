package e2e

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/bucketmail/bucketmail/internal/testutil/cluster"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// TestClusterConcurrentMove: MOVE stays atomic across servers (issue 6
// §3). 30 messages in INBOX; at the same time a session on server A
// moves them one by one (UID MOVE, ascending) to FromA and a session on
// server B moves them (descending) to FromB, and a session on server C
// copies them (UID COPY, ascending) to Copies. Afterwards INBOX is
// empty, every message is in exactly one of FromA and FromB, each MOVE
// that reported COPYUID moved exactly the message now found under that
// UID, the MOVEs reported 30 messages in all, and every copy C reported
// is in Copies exactly once; all three servers show the same mailboxes.
func TestClusterConcurrentMove(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 3})
	clRequireShared(t, c)
	const acct, pw, n = "move@example.org", "cluster-move-1", 30
	c.AddUser(t, acct, pw)
	lc, err := e2e.DialLMTP(c.Nodes[0].LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := lc.Deliver1(sender, acct, clMessage(fmt.Sprintf("move-%02d", i+1), 1500)); err != nil {
			t.Fatalf("LMTP: %v", err)
		}
	}
	lc.Close()

	type moved struct{ src, dst imap.UID }
	var (
		mu      sync.Mutex
		results = map[string][]moved{} // target mailbox -> moves/copies reported
		noes    []string
		wg      sync.WaitGroup
	)
	session := func(node *cluster.Node, target string) *cluster.Watcher {
		w := cluster.Login(t, node.Name, node.IMAPAddr, acct, pw)
		if _, err := w.Select("INBOX", nil).Wait(); err != nil {
			t.Fatalf("%s: SELECT INBOX: %v", node.Name, err)
		}
		if err := w.Create(target, nil).Wait(); err != nil {
			t.Fatalf("%s: CREATE %s: %v", node.Name, target, err)
		}
		return w
	}
	run := func(node *cluster.Node, w *cluster.Watcher, target string, copyOnly bool, uids []imap.UID) {
		defer wg.Done()
		for _, uid := range uids {
			var src, dst imap.NumSet
			if copyOnly {
				d, err := w.Copy(imap.UIDSetNum(uid), target).Wait()
				if err != nil {
					mu.Lock()
					noes = append(noes, fmt.Sprintf("%s: UID COPY %d: %v", node.Name, uid, err))
					mu.Unlock()
					continue
				}
				src, dst = d.SourceUIDs, d.DestUIDs
			} else {
				d, err := w.Move(imap.UIDSetNum(uid), target).Wait()
				if err != nil {
					mu.Lock()
					noes = append(noes, fmt.Sprintf("%s: UID MOVE %d: %v", node.Name, uid, err))
					mu.Unlock()
					continue
				}
				src, dst = d.SourceUIDs, d.DestUIDs
			}
			s, _ := src.(imap.UIDSet)
			d, _ := dst.(imap.UIDSet)
			su, _ := s.Nums()
			du, _ := d.Nums()
			if len(su) == 0 && len(du) == 0 {
				continue // already moved away by another server: OK, no COPYUID
			}
			if len(su) != 1 || len(du) != 1 || su[0] != uid {
				t.Errorf("%s: UID %s %d %s: COPYUID %v %v, want one UID each, source %d", node.Name, map[bool]string{true: "COPY", false: "MOVE"}[copyOnly], uid, target, src, dst, uid)
				continue
			}
			mu.Lock()
			results[target] = append(results[target], moved{su[0], du[0]})
			mu.Unlock()
		}
		w.Logout().Wait()
	}
	var up, down []imap.UID
	for i := 1; i <= n; i++ {
		up = append(up, imap.UID(i))
		down = append(down, imap.UID(n+1-i))
	}
	wa, wb, wc := session(c.Nodes[0], "FromA"), session(c.Nodes[1], "FromB"), session(c.Nodes[2], "Copies")
	wg.Add(3)
	go run(c.Nodes[0], wa, "FromA", false, up)
	go run(c.Nodes[1], wb, "FromB", false, down)
	go run(c.Nodes[2], wc, "Copies", true, up)
	wg.Wait()
	for _, e := range noes {
		t.Logf("refused (allowed only for a message the other server moved first): %s", e)
	}
	movedA, movedB, copied := len(results["FromA"]), len(results["FromB"]), len(results["Copies"])
	t.Logf("MOVE reported %d messages on A and %d on B; COPY %d on C", movedA, movedB, copied)
	if movedA+movedB != n {
		t.Errorf("MOVEs reported %d + %d messages, want %d in all (each moved exactly once)", movedA, movedB, n)
	}

	// What each server shows.
	var first map[string][]clView
	for _, node := range c.Nodes {
		w := cluster.Login(t, node.Name, node.IMAPAddr, acct, pw)
		views := map[string][]clView{}
		for _, box := range []string{"INBOX", "FromA", "FromB", "Copies"} {
			views[box] = clFetchAll(t, node.Name, w.Client, box, true)
		}
		w.Logout().Wait()
		if first != nil {
			for box, v := range views {
				clSameView(t, fmt.Sprintf("%s on %s vs %s", box, c.Nodes[0].Name, node.Name), first[box], v)
			}
			continue
		}
		first = views
		if len(views["INBOX"]) != 0 {
			t.Errorf("%s: INBOX still has %d messages", node.Name, len(views["INBOX"]))
		}
		where := map[string][]string{}
		for _, box := range []string{"FromA", "FromB"} {
			byUID := map[imap.UID]string{}
			for _, v := range views[box] {
				id := clID(v.Body)
				where[id] = append(where[id], box)
				byUID[v.UID] = id
			}
			if len(results[box]) != len(views[box]) {
				t.Errorf("%s: %s has %d messages, MOVE reported %d", node.Name, box, len(views[box]), len(results[box]))
			}
			for _, m := range results[box] {
				if want := fmt.Sprintf("move-%02d", m.src); byUID[m.dst] != want {
					t.Errorf("%s: %s UID %d is %q, but MOVE reported UID %d → %d (%s)", node.Name, box, m.dst, byUID[m.dst], m.src, m.dst, want)
				}
			}
		}
		for i := 1; i <= n; i++ {
			id := fmt.Sprintf("move-%02d", i)
			if len(where[id]) != 1 {
				t.Errorf("%s: %s is in %v, want exactly one of FromA, FromB", node.Name, id, where[id])
			}
		}
		var copies []string
		for _, v := range views["Copies"] {
			copies = append(copies, clID(v.Body))
		}
		var want []string
		for _, m := range results["Copies"] {
			want = append(want, fmt.Sprintf("move-%02d", m.src))
		}
		slices.Sort(copies)
		slices.Sort(want)
		if !slices.Equal(copies, want) {
			t.Errorf("%s: Copies holds %v, COPY reported %v", node.Name, copies, want)
		}
	}
}
