package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/cluster"
	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// clMultiTrace matches the trace fields of a delivery to several
// recipients at once: Return-Path, Delivered-To only when the server adds
// it per recipient (then it names rcpt), Received.
func clMultiTrace(rcpt string) *regexp.Regexp {
	return regexp.MustCompile(`\AReturn-Path: <` + regexp.QuoteMeta(sender) + `>\r\n` +
		`(Delivered-To: ` + regexp.QuoteMeta(rcpt) + `\r\n)?` +
		`Received: from [^\r\n]+(\r\n\t[^\r\n]+)*\r\n\z`)
}

// clCorpusIndex finds which corpus message a served BODY[] is: the body
// is trace fields (30..4000 octets) followed by e2e.Served(raw).
type clCorpusIndex struct {
	served [][]byte
	byLen  map[int][]int
}

func newCorpusIndex(msgs []corpus.Message) *clCorpusIndex {
	x := &clCorpusIndex{byLen: map[int][]int{}}
	for i, m := range msgs {
		s := e2e.Served(m.Raw)
		x.served = append(x.served, s)
		x.byLen[len(s)] = append(x.byLen[len(s)], i)
	}
	return x
}

// find returns the content key (sha256 of the served message) and the
// length of the trace prefix, or ok false.
func (x *clCorpusIndex) find(body []byte) (key [32]byte, prefix int, ok bool) {
	// Fast path: the prefix ends where the Received field (folded with
	// tabs) ends.
	if i := bytes.Index(body, []byte("\r\nReceived: from ")); i >= 0 && i < 4000 {
		p := i + 2
		for {
			j := bytes.Index(body[p:], []byte("\r\n"))
			if j < 0 {
				break
			}
			p += j + 2
			if p >= len(body) || body[p] != '\t' {
				break
			}
		}
		for _, i := range x.byLen[len(body)-p] {
			if bytes.Equal(body[p:], x.served[i]) {
				return sha256.Sum256(x.served[i]), p, true
			}
		}
	}
	// A message that starts with a folded line: try every length.
	for p := 30; p <= 4000 && p < len(body); p++ {
		for _, i := range x.byLen[len(body)-p] {
			if bytes.Equal(body[p:], x.served[i]) {
				return sha256.Sum256(x.served[i]), p, true
			}
		}
	}
	return key, 0, false
}

// TestClusterConcurrentDeliveries delivers the corpus (real and edge; a
// sample under -short) through three servers at once, two LMTP
// connections each, every message to the INBOXes of three accounts (two
// for the whole corpus) in one transaction. Then, for every account:
// every message is present exactly once (BODY[] through one server is
// the trace fields and the bytes sent, counted per distinct content),
// UIDs are unique and strictly increasing, and all three servers show
// the same mailbox (UIDs, sizes, flags, BODY[HEADER] digests); a session
// per account and server that was IDLE all along ends at the final
// EXISTS count. In the metadata database HIGHESTMODSEQ is at least every
// message's MODSEQ and UIDNEXT above every UID.
func TestClusterConcurrentDeliveries(t *testing.T) {
	all := corpusMessages(t)
	msgs := all
	if testing.Short() {
		msgs = nil
		for i := 0; i < len(all) && len(msgs) < 150; i += 7 {
			msgs = append(msgs, all[i])
		}
	}
	t0 := time.Now()
	c := cluster.Start(t, cluster.Options{Nodes: 3})
	clRequireShared(t, c)
	// Three accounts for the sample, two for the whole corpus (which
	// then takes about a minute on 2 cores).
	accts := []string{"conc1@example.org", "conc2@example.org", "conc3@example.org"}
	if !testing.Short() {
		accts = accts[:2]
	}
	const pw = "cluster-conc-1"
	for _, a := range accts {
		c.AddUser(t, a, pw)
	}

	t.Logf("corpus: %d messages; cluster and users ready after %v", len(msgs), time.Since(t0).Round(time.Millisecond))
	// One session per account and server waits in IDLE through the whole
	// burst: it must end at the final EXISTS count (events that a bus
	// queue dropped must have led to a resync, not to a missed update).
	var idlers []*cluster.Watcher
	for _, a := range accts {
		for _, n := range c.Nodes {
			w := cluster.Login(t, n.Name+"/"+a, n.IMAPAddr, a, pw)
			if _, err := w.Select("INBOX", nil).Wait(); err != nil {
				t.Fatalf("%s: SELECT: %v", w.Name, err)
			}
			w.Idle(t)
			idlers = append(idlers, w)
		}
	}

	const perNode = 2
	workers := len(c.Nodes) * perNode
	var (
		mu       sync.Mutex
		refused  []string
		accepted = make([]bool, len(msgs)) // 250 for every recipient
		octets   atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range workers {
		node := c.Nodes[w%len(c.Nodes)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			lc, err := e2e.DialLMTP(node.LMTPAddr)
			if err != nil {
				mu.Lock()
				refused = append(refused, fmt.Sprintf("%s: LMTP: %v", node.Name, err))
				mu.Unlock()
				return
			}
			defer lc.Close()
			for i := w; i < len(msgs); i += workers {
				res, err := lc.Deliver(sender, accts, msgs[i].Raw)
				ok := err == nil
				for r, e := range res {
					if e != nil {
						ok = false
						err = fmt.Errorf("%s: %v", r, e)
					}
				}
				mu.Lock()
				if ok {
					accepted[i] = true
					octets.Add(int64(len(msgs[i].Raw)))
				} else {
					refused = append(refused, fmt.Sprintf("%s: %s: %v", node.Name, msgs[i].ID, err))
				}
				mu.Unlock()
				if err != nil && strings.Contains(err.Error(), "DATA write") {
					return // the connection is gone
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	t.Logf("LMTP: %d messages (%.1f MB) x %d recipients through %d servers, %d connections, in %v: %.1f messages/s",
		len(msgs), float64(octets.Load())/1e6, len(accts), len(c.Nodes), workers, d.Round(time.Millisecond), float64(len(msgs))/d.Seconds())
	for i, r := range refused {
		if i == 10 {
			t.Errorf("... %d refused in all", len(refused))
			break
		}
		t.Errorf("refused: %s", r)
	}

	idx := newCorpusIndex(msgs)
	want := map[[32]byte]int{}
	nwant := 0
	for i, ok := range accepted {
		if ok {
			want[sha256.Sum256(idx.served[i])]++
			nwant++
		}
	}
	for _, w := range idlers {
		if _, ok := w.Wait(clWait, func(e cluster.Event) bool { return e.Kind == "EXISTS" && int(e.Num) == nwant }); !ok {
			var last []cluster.Event
			if p := w.Pending(); len(p) > 0 {
				last = p[max(0, len(p)-3):]
			}
			t.Errorf("%s: IDLE session never saw * %d EXISTS (last events %v)", w.Name, nwant, last)
		}
		w.Done(t)
		w.Close()
	}

	clients := make([]*cluster.Watcher, len(c.Nodes))
	fetchStart := time.Now()
	for k, acct := range accts {
		for i, n := range c.Nodes {
			clients[i] = cluster.Login(t, n.Name, n.IMAPAddr, acct, pw)
		}
		main := k % len(c.Nodes)
		views := clFetchAll(t, c.Nodes[main].Name, clients[main].Client, "INBOX", true)
		if len(views) != nwant {
			t.Errorf("%s: INBOX on %s has %d messages, want %d", acct, c.Nodes[main].Name, len(views), nwant)
		}
		trace := clMultiTrace(acct)
		got := map[[32]byte]int{}
		for i := range views {
			v := &views[i]
			key, p, ok := idx.find(v.Body)
			if !ok {
				t.Errorf("%s: UID %d (%d octets) is no corpus message as delivered", acct, v.UID, len(v.Body))
				continue
			}
			if !trace.Match(v.Body[:p]) {
				t.Errorf("%s: UID %d: trace fields %q", acct, v.UID, clip(string(v.Body[:p])))
			}
			got[key]++
			v.Body = nil
		}
		bad := 0
		for key, n := range want {
			if got[key] != n {
				bad++
				if bad <= 5 {
					t.Errorf("%s: a message delivered %d times is present %d times", acct, n, got[key])
				}
			}
		}
		for key, n := range got {
			if want[key] == 0 {
				t.Errorf("%s: a message that was not accepted is present %d times", acct, n)
			}
		}
		if bad > 5 {
			t.Errorf("%s: %d distinct messages with the wrong count", acct, bad)
		}
		// The other servers show the same INBOX: UIDs, sizes, flags and
		// BODY[HEADER] (full bodies once per account keep the test short).
		heads := clFetchHeaders(t, c.Nodes[main].Name, clients[main].Client, "INBOX")
		for i, n := range c.Nodes {
			if i == main {
				continue
			}
			other := clFetchHeaders(t, n.Name, clients[i].Client, "INBOX")
			clSameView(t, fmt.Sprintf("%s: INBOX on %s vs %s", acct, c.Nodes[main].Name, n.Name), heads, other)
		}
		for _, cl := range clients {
			cl.Close()
		}
	}
	t.Logf("IMAP: fetched %d accounts x %d messages from %d servers in %v", len(accts), nwant, len(c.Nodes), time.Since(fetchStart).Round(time.Millisecond))

	clCheckMailboxRows(t, c, "INBOX", len(accts), nwant)
}

// clCheckMailboxRows checks the metadata rows of every account's mailbox
// box in PostgreSQL: count messages, no duplicate UID, HIGHESTMODSEQ ≥
// every MODSEQ, UIDNEXT > every UID. It assumes the table layout of the
// SQLite store (internal/metadb): accounts, mailboxes, messages.
func clCheckMailboxRows(t *testing.T, c *cluster.Cluster, box string, accounts, count int) {
	t.Helper()
	out, err := c.PG.Psql(t.Context(), c.DBName, `
SELECT a.name, mb.highestmodseq, mb.uidnext, count(m.uid), count(DISTINCT m.uid),
       coalesce(max(m.modseq), 0), coalesce(max(m.uid), 0)
FROM mailboxes mb JOIN accounts a ON a.id = mb.account_id LEFT JOIN messages m ON m.mailbox_id = mb.id
WHERE mb.name = '`+box+`'
GROUP BY a.name, mb.highestmodseq, mb.uidnext ORDER BY a.name`)
	if err != nil {
		t.Errorf("metadata rows: %v (is the PostgreSQL schema laid out as internal/metadb's?)", err)
		return
	}
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != accounts {
		t.Errorf("metadata: %d %s rows, want %d:\n%s", len(rows), box, accounts, out)
	}
	for _, row := range rows {
		f := strings.Split(row, "|")
		if len(f) != 7 {
			t.Errorf("metadata: row %q", row)
			continue
		}
		n := make([]int64, 6)
		for i := range n {
			n[i], _ = strconv.ParseInt(f[i+1], 10, 64)
		}
		hms, uidnext, cnt, distinct, maxms, maxuid := n[0], n[1], n[2], n[3], n[4], n[5]
		t.Logf("metadata: %s %s: %d messages, UIDNEXT %d, max UID %d, HIGHESTMODSEQ %d, max MODSEQ %d", f[0], box, cnt, uidnext, maxuid, hms, maxms)
		if cnt != int64(count) || distinct != cnt {
			t.Errorf("metadata: %s %s: %d message rows, %d distinct UIDs, want %d", f[0], box, cnt, distinct, count)
		}
		if hms < maxms {
			t.Errorf("metadata: %s %s: HIGHESTMODSEQ %d < a message's MODSEQ %d", f[0], box, hms, maxms)
		}
		if uidnext <= maxuid {
			t.Errorf("metadata: %s %s: UIDNEXT %d <= UID %d", f[0], box, uidnext, maxuid)
		}
	}
}
