package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/bucketmail/bucketmail/internal/testutil/cluster"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// clBox is what a server shows of one mailbox.
type clBox struct {
	uidValidity uint32
	uidNext     imap.UID
	views       []clView
}

func clSnapshot(t *testing.T, n *cluster.Node, acct, pw string, boxes []string) map[string]clBox {
	t.Helper()
	w := cluster.Login(t, n.Name, n.IMAPAddr, acct, pw)
	out := map[string]clBox{}
	for _, box := range boxes {
		sel, err := w.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatalf("%s: EXAMINE %s: %v", n.Name, box, err)
		}
		out[box] = clBox{uidValidity: sel.UIDValidity, uidNext: sel.UIDNext, views: clFetchAll(t, n.Name, w.Client, box, false)}
	}
	w.Logout().Wait()
	return out
}

// TestClusterReindex (issue 6 §6): three servers receive deliveries at
// the same time (so some UID reservations are overtaken by another
// server and the objects' "uid" metadata is stale), then A copies and
// flags messages and B expunges some. All servers stop; a new server
// starts on an empty PostgreSQL metadata database (same bucket, same
// user database) and rebuilds the index from the bucket. It must show
// the same mailboxes: UIDVALIDITY, UIDs, flags, sizes and BODY[] digests,
// and UIDNEXT not lower than before.
func TestClusterReindex(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 3})
	clRequireShared(t, c)
	const acct, pw = "reindex@example.org", "cluster-reindex-1"
	c.AddUser(t, acct, pw)
	A, B := c.Nodes[0], c.Nodes[1]

	clSenders(t, 6, func(w int) *cluster.Node { return c.Nodes[w%3] }, func(w int, node *cluster.Node, lc *e2e.LMTPClient) {
		for i := range 15 {
			if err := lc.Deliver1(sender, acct, clMessage(fmt.Sprintf("rx%d-%02d", w, i), 1000+100*i)); err != nil {
				t.Errorf("%s: LMTP: %v", node.Name, err)
			}
		}
	})()
	overtaken := 0
	for _, n := range c.Nodes {
		overtaken += strings.Count(n.Log(), "UID reservation overtaken")
	}
	t.Logf("90 deliveries through 3 servers: %d UID reservations overtaken by another server", overtaken)

	a := cluster.Login(t, A.Name, A.IMAPAddr, acct, pw)
	if err := a.Create("Kept", nil).Wait(); err != nil {
		t.Fatalf("A: CREATE Kept: %v", err)
	}
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("A: SELECT: %v", err)
	}
	if _, err := a.Copy(imap.SeqSet{{Start: 1, Stop: 10}}, "Kept").Wait(); err != nil {
		t.Fatalf("A: COPY 1:10 Kept: %v", err)
	}
	for _, st := range []struct {
		set   imap.SeqSet
		flags []imap.Flag
	}{
		{imap.SeqSet{{Start: 1, Stop: 30}}, []imap.Flag{imap.FlagSeen}},
		{imap.SeqSet{{Start: 20, Stop: 40}}, []imap.Flag{imap.FlagFlagged, "$Label1"}},
	} {
		if err := a.Store(st.set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: st.flags}, nil).Close(); err != nil {
			t.Fatalf("A: STORE: %v", err)
		}
	}
	a.Logout().Wait()
	b := cluster.Login(t, B.Name, B.IMAPAddr, acct, pw)
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("B: SELECT: %v", err)
	}
	if err := b.Store(imap.SeqSet{{Start: 5, Stop: 9}, {Start: 50, Stop: 52}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatalf("B: STORE: %v", err)
	}
	if err := b.Expunge().Close(); err != nil {
		t.Fatalf("B: EXPUNGE: %v", err)
	}
	b.Logout().Wait()

	boxes := []string{"INBOX", "Kept"}
	before := clSnapshot(t, c.Nodes[2], acct, pw, boxes)
	if n := len(before["INBOX"].views); n != 82 {
		t.Fatalf("INBOX has %d messages before the rebuild, want 90 - 8 = 82", n)
	}
	for _, n := range c.Nodes {
		if err := n.Shutdown(); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := c.PG.CreateDB(ctx, "reindexed")
	if err != nil {
		t.Fatal(err)
	}
	c.MetaDB = c.PG.URL(db) // the user database stays where it was
	start := time.Now()
	D := c.AddNode(t)
	t.Logf("%s: started on an empty metadata database (rebuild from the bucket) in %v", D.Name, time.Since(start).Round(time.Millisecond))
	after := clSnapshot(t, D, acct, pw, boxes)
	if out, err := c.PG.Psql(ctx, db, "SELECT count(*) FROM messages"); err != nil || strings.TrimSpace(out) != "92" {
		t.Errorf("new metadata database: %q message rows (%v), want 92 (82 in INBOX, 10 in Kept)", out, err)
	}
	for _, box := range boxes {
		x, y := before[box], after[box]
		if x.uidValidity != y.uidValidity {
			t.Errorf("%s: UIDVALIDITY %d after the rebuild, was %d", box, y.uidValidity, x.uidValidity)
		}
		if y.uidNext < x.uidNext {
			t.Errorf("%s: UIDNEXT %d after the rebuild, was %d (must not go back)", box, y.uidNext, x.uidNext)
		}
		t.Logf("%s: %d messages, UIDVALIDITY %d, UIDNEXT %d before, %d after", box, len(x.views), x.uidValidity, x.uidNext, y.uidNext)
		clSameView(t, box+" before vs after the rebuild", x.views, y.views)
	}
}

// TestClusterReindexAfterKill: deliveries run through three servers; A
// gets SIGKILL in the middle (its last changes may be in no journal
// object yet); B and C finish their deliveries and stop cleanly at once
// (no journal sweep has run). A new server on an empty metadata
// database rebuilds the index from the bucket: the same messages under
// the same UIDs with the same flags as B showed before, UIDNEXT not
// lower (DESIGN: losing the metadata database loses no mail).
func TestClusterReindexAfterKill(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 3})
	clRequireShared(t, c)
	const acct, pw = "rxkill@example.org", "cluster-rxkill-1"
	c.AddUser(t, acct, pw)
	A, B := c.Nodes[0], c.Nodes[1]

	var (
		mu      sync.Mutex
		ackedA  int
		kill    = make(chan struct{})
		once    sync.Once
		killErr error
	)
	killed := make(chan struct{})
	go func() {
		<-kill
		killErr = A.Kill()
		close(killed)
	}()
	clSenders(t, 6, func(w int) *cluster.Node { return c.Nodes[w%3] }, func(w int, node *cluster.Node, lc *e2e.LMTPClient) {
		for i := range 20 {
			err := lc.Deliver1(sender, acct, clMessage(fmt.Sprintf("rk%d-%02d", w, i), 1000+100*i))
			if node == A {
				if err != nil {
					return // killed
				}
				mu.Lock()
				ackedA++
				if ackedA == 12 {
					once.Do(func() { close(kill) })
				}
				mu.Unlock()
			} else if err != nil {
				t.Errorf("%s: LMTP: %v", node.Name, err)
			}
		}
	})()
	once.Do(func() { close(kill) })
	<-killed
	if killErr != nil {
		t.Fatalf("SIGKILL A: %v", killErr)
	}
	b := cluster.Login(t, B.Name, B.IMAPAddr, acct, pw)
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("B: SELECT: %v", err)
	}
	if err := b.Store(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatalf("B: STORE 1:* +FLAGS \\Seen: %v", err)
	}
	b.Logout().Wait()
	before := clSnapshot(t, B, acct, pw, []string{"INBOX"})
	for _, n := range c.Nodes[1:] {
		if err := n.Shutdown(); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := c.PG.CreateDB(ctx, "reindexed")
	if err != nil {
		t.Fatal(err)
	}
	c.MetaDB = c.PG.URL(db)
	D := c.AddNode(t)
	after := clSnapshot(t, D, acct, pw, []string{"INBOX"})
	x, y := before["INBOX"], after["INBOX"]
	t.Logf("INBOX: %d messages (A acknowledged %d before SIGKILL), UIDNEXT %d before, %d after; %d after the rebuild",
		len(x.views), ackedA, x.uidNext, y.uidNext, len(y.views))
	if x.uidValidity != y.uidValidity {
		t.Errorf("UIDVALIDITY %d after the rebuild, was %d", y.uidValidity, x.uidValidity)
	}
	if y.uidNext < x.uidNext {
		t.Errorf("UIDNEXT %d after the rebuild, was %d (must not go back)", y.uidNext, x.uidNext)
	}
	clSameView(t, "INBOX before vs after the rebuild", x.views, y.views)
}
