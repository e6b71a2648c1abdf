package e2e

// Cluster tests (issue 6, "What must be shown"): two or three `bucketmail
// serve` processes sharing one PostgreSQL (metadata and users), one bus
// (nats-server or PostgreSQL LISTEN/NOTIFY) and one versitygw bucket; see
// internal/testutil/cluster.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bucketmail/bucketmail/internal/testutil/cluster"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// clWait is the deadline for a change made on one server to show on
// another. The issue asks for 1 s through the bus; the tests measure the
// figure, assert it separately and wait this long so that a slow machine
// reports a number instead of a timeout.
const clWait = 10 * time.Second

// clBusLatency is the bound: an IDLE session on server B sees
// EXISTS within 1 s of an LMTP delivery on server A.
const clBusLatency = time.Second

// clRequireShared checks that the cluster's nodes really share the
// metadata database: the first node must have created its tables in
// PostgreSQL. Before serve wires --metadb (issue 6) every node keeps its
// own SQLite index; the cluster tests then skip (fail under CI=true).
func clRequireShared(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	n := c.Psql(t, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'bucketmail_users'`)
	if n == "0" {
		e2e.SkipOrFail(t, "serve --metadb postgres:// created no tables in PostgreSQL: the metadata store is not wired for clusters yet (issue 6)")
	}
}

// clSenders starts workers LMTP senders at once, worker w on node(w),
// each on its own connection (a failed dial is a test error), runs
// send(w, node, connection) in each and returns a func that waits for
// them all.
func clSenders(t *testing.T, workers int, node func(w int) *cluster.Node,
	send func(w int, n *cluster.Node, lc *e2e.LMTPClient)) (wait func()) {
	var wg sync.WaitGroup
	for w := range workers {
		n := node(w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			lc, err := e2e.DialLMTP(n.LMTPAddr)
			if err != nil {
				t.Errorf("%s: %v", n.Name, err)
				return
			}
			defer lc.Close()
			send(w, n, lc)
		}()
	}
	return wg.Wait
}

// clMessage returns a message of about size octets (at least the header)
// with Message-ID <id@cluster.test>, CRLF line ends.
func clMessage(id string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <sender@example.net>\r\nTo: <user@example.org>\r\nSubject: cluster test %s\r\n"+
		"Message-ID: <%s@cluster.test>\r\nDate: Sun, 29 Nov 2026 18:00:00 +0000\r\n\r\n", id, id)
	line := "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ " + id + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()
}

var clMessageID = regexp.MustCompile(`(?m)^Message-ID: <([^>]+)@cluster\.test>\r$`)

// clID returns the id of a message made by clMessage from its served
// bytes, "" if there is none.
func clID(body []byte) string {
	m := clMessageID.FindSubmatch(body)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// clView is one message as a server shows it.
type clView struct {
	Seq   uint32
	UID   imap.UID
	Size  int64
	Flags []string
	Sum   [32]byte // sha256 of BODY[]
	Body  []byte   // BODY[] when asked for
}

// clFetchAll selects mailbox and fetches every message (UID, FLAGS,
// RFC822.SIZE, BODY.PEEK[]) in batches of 100; keepBody keeps BODY[].
// It fails unless the sequence numbers are 1..EXISTS and the UIDs
// strictly increase (RFC 3501 §2.3.1.1).
func clFetchAll(t *testing.T, node string, c *imapclient.Client, mailbox string, keepBody bool) []clView {
	t.Helper()
	return clFetch(t, node, c, mailbox, &imap.FetchItemBodySection{Peek: true}, keepBody)
}

// clFetchHeaders is clFetchAll with BODY.PEEK[HEADER] instead of BODY[]
// (clView.Sum is the header's digest), for comparing servers cheaply.
func clFetchHeaders(t *testing.T, node string, c *imapclient.Client, mailbox string) []clView {
	t.Helper()
	return clFetch(t, node, c, mailbox, &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}, false)
}

func clFetch(t *testing.T, node string, c *imapclient.Client, mailbox string, section *imap.FetchItemBodySection, keepBody bool) []clView {
	t.Helper()
	sel, err := c.Select(mailbox, nil).Wait()
	if err != nil {
		t.Fatalf("%s: SELECT %s: %v", node, mailbox, err)
	}
	n := int(sel.NumMessages)
	out := make([]clView, 0, n)
	const batch = 100
	for lo := 1; lo <= n; lo += batch {
		hi := min(lo+batch-1, n)
		var set imap.SeqSet
		set.AddRange(uint32(lo), uint32(hi))
		bufs, err := c.Fetch(set, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true,
			BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			t.Fatalf("%s: FETCH %d:%d in %s: %v", node, lo, hi, mailbox, err)
		}
		sort.Slice(bufs, func(i, j int) bool { return bufs[i].SeqNum < bufs[j].SeqNum })
		for _, b := range bufs {
			body := sectionBytes(b)
			v := clView{Seq: b.SeqNum, UID: b.UID, Size: b.RFC822Size, Flags: cluster.FlagStrings(b.Flags), Sum: sha256.Sum256(body)}
			if keepBody {
				v.Body = body
			}
			out = append(out, v)
		}
	}
	if len(out) != n {
		t.Fatalf("%s: %s: FETCH 1:%d returned %d messages", node, mailbox, n, len(out))
	}
	for i, v := range out {
		if v.Seq != uint32(i+1) {
			t.Fatalf("%s: %s: message %d has sequence number %d", node, mailbox, i+1, v.Seq)
		}
		if i > 0 && v.UID <= out[i-1].UID {
			t.Errorf("%s: %s: seq %d has UID %d after UID %d: UIDs must strictly increase", node, mailbox, v.Seq, v.UID, out[i-1].UID)
		}
		if keepBody && v.Size != int64(len(v.Body)) {
			t.Errorf("%s: %s: seq %d: RFC822.SIZE %d, BODY[] %d octets", node, mailbox, v.Seq, v.Size, len(v.Body))
		}
	}
	return out
}

// clSameView fails unless two servers show the same messages (sequence
// numbers, UIDs, sizes, flags and section digests).
func clSameView(t *testing.T, what string, a, b []clView) {
	t.Helper()
	if len(a) != len(b) {
		t.Errorf("%s: %d messages vs %d", what, len(a), len(b))
		return
	}
	bad := 0
	for i := range a {
		x, y := a[i], b[i]
		if x.UID != y.UID || x.Size != y.Size || x.Sum != y.Sum || !slices.Equal(x.Flags, y.Flags) {
			bad++
			if bad <= 5 {
				t.Errorf("%s: seq %d: UID %d size %d flags %v sha %x vs UID %d size %d flags %v sha %x",
					what, i+1, x.UID, x.Size, x.Flags, x.Sum[:6], y.UID, y.Size, y.Flags, y.Sum[:6])
			}
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d messages differ in all", what, bad)
	}
}

// clLatencies formats durations for the log.
func clLatencies(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Round(100 * time.Microsecond).String()
	}
	return strings.Join(s, " ")
}

// clIsNo reports whether err is an IMAP NO response.
func clIsNo(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo
}

// TestClusterCrossServerIdle: a session IDLE on server B sees, within
// 1 s, EXISTS for an LMTP delivery on server A, FETCH FLAGS for a STORE
// on A and EXPUNGE for an EXPUNGE on A (RFC 3501 §7.4.1: all allowed
// during IDLE); a COPY and a MOVE on A are seen on B as one consistent
// state (the moved message gone from INBOX with an EXPUNGE, both in the
// target with the UIDs A's COPYUID/MOVE reported, flags carried). Once
// over NATS and once over PostgreSQL LISTEN/NOTIFY, with a 30 s polling
// interval so that only the bus can meet the 1 s bound.
func TestClusterCrossServerIdle(t *testing.T) {
	for _, bk := range []string{cluster.BusNATS, cluster.BusPostgres} {
		t.Run(bk, func(t *testing.T) { testCrossServerIdle(t, bk) })
	}
}

func testCrossServerIdle(t *testing.T, busKind string) {
	c := cluster.Start(t, cluster.Options{Nodes: 2, Bus: busKind, PollInterval: 30 * time.Second})
	clRequireShared(t, c)
	const acct, pw = "idle@example.org", "cluster-idle-1"
	c.AddUser(t, acct, pw)
	A, B := c.Nodes[0], c.Nodes[1]

	a := cluster.Login(t, A.Name, A.IMAPAddr, acct, pw)
	b := cluster.Login(t, B.Name, B.IMAPAddr, acct, pw)
	if err := a.Create("Kept", nil).Wait(); err != nil {
		t.Fatalf("A: CREATE Kept: %v", err)
	}
	sel, err := b.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("B: SELECT INBOX: %v", err)
	}
	if sel.NumMessages != 0 {
		t.Fatalf("B: SELECT INBOX: %d EXISTS, want 0", sel.NumMessages)
	}
	b.Idle(t)

	lc, err := e2e.DialLMTP(A.LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()

	// 1. EXISTS for deliveries on A.
	msgs := [][]byte{clMessage("idle-1", 600), clMessage("idle-2", 3000), clMessage("idle-3", 70000)}
	var lat []time.Duration
	for i, m := range msgs {
		t0 := time.Now()
		if err := lc.Deliver1(sender, acct, m); err != nil {
			t.Fatalf("A: LMTP delivery %d: %v", i+1, err)
		}
		want := uint32(i + 1)
		ev, ok := b.Wait(clWait, func(e cluster.Event) bool { return e.Kind == "EXISTS" })
		if !ok {
			t.Fatalf("B: no EXISTS within %v of delivery %d on A (events: %v)", clWait, i+1, b.Pending())
		}
		if ev.Num != want {
			t.Fatalf("B: * %d EXISTS after delivery %d, want %d", ev.Num, i+1, want)
		}
		lat = append(lat, ev.At.Sub(t0))
	}
	t.Logf("%s bus: EXISTS on B, counted from the start of the LMTP transaction on A: %s", busKind, clLatencies(lat))
	for i, d := range lat {
		if d > clBusLatency {
			t.Errorf("EXISTS for delivery %d reached B after %v, want within %v", i+1, d, clBusLatency)
		}
	}

	// 2. FETCH FLAGS for a STORE on A.
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("A: SELECT INBOX: %v", err)
	}
	store := func(seq uint32, f imap.Flag) time.Time {
		t.Helper()
		t0 := time.Now()
		if err := a.Store(imap.SeqSetNum(seq), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{f}}, nil).Close(); err != nil {
			t.Fatalf("A: STORE %d +FLAGS.SILENT (%s): %v", seq, f, err)
		}
		return t0
	}
	t0 := store(1, imap.FlagFlagged)
	ev, ok := b.Wait(clWait, func(e cluster.Event) bool { return e.Kind == "FETCH" && e.Num == 1 })
	if !ok {
		t.Fatalf("B: no FETCH for seq 1 within %v of STORE on A (events: %v)", clWait, b.Pending())
	}
	flagsLat := ev.At.Sub(t0)
	if !slices.Equal(ev.Flags, []string{`\Flagged`}) {
		t.Errorf(`B: * 1 FETCH (FLAGS %v), want (\Flagged)`, ev.Flags)
	}

	// 3. EXPUNGE for an EXPUNGE on A (message 2).
	store(2, imap.FlagDeleted)
	t0 = time.Now()
	if err := a.Expunge().Close(); err != nil {
		t.Fatalf("A: EXPUNGE: %v", err)
	}
	ev, ok = b.Wait(clWait, func(e cluster.Event) bool { return e.Kind == "EXPUNGE" })
	if !ok {
		t.Fatalf("B: no EXPUNGE within %v of EXPUNGE on A (events: %v)", clWait, b.Pending())
	}
	expLat := ev.At.Sub(t0)
	if ev.Num != 2 {
		t.Errorf("B: * %d EXPUNGE, want * 2 EXPUNGE", ev.Num)
	}
	t.Logf("%s bus: on B, counted from sending the command on A: FETCH FLAGS %v, EXPUNGE %v", busKind, flagsLat.Round(100*time.Microsecond), expLat.Round(100*time.Microsecond))
	if flagsLat > clBusLatency || expLat > clBusLatency {
		t.Errorf("FETCH FLAGS after %v, EXPUNGE after %v: want each within %v", flagsLat, expLat, clBusLatency)
	}

	// 4. COPY message 1 (idle-1, \Flagged) and MOVE message 2 (idle-3) to
	// Kept on A; B, still IDLE on INBOX, sees the MOVE's EXPUNGE.
	cp, err := a.Copy(imap.SeqSetNum(1), "Kept").Wait()
	if err != nil {
		t.Fatalf("A: COPY 1 Kept: %v", err)
	}
	t0 = time.Now()
	mv, err := a.Move(imap.SeqSetNum(2), "Kept").Wait()
	if err != nil {
		t.Fatalf("A: MOVE 2 Kept: %v", err)
	}
	ev, ok = b.Wait(clWait, func(e cluster.Event) bool { return e.Kind == "EXPUNGE" })
	if !ok {
		t.Fatalf("B: no EXPUNGE within %v of MOVE on A (events: %v)", clWait, b.Pending())
	}
	if ev.Num != 2 {
		t.Errorf("B: * %d EXPUNGE after MOVE of message 2, want * 2 EXPUNGE", ev.Num)
	}
	t.Logf("%s bus: EXPUNGE on B, counted from sending MOVE on A: %v", busKind, ev.At.Sub(t0).Round(100*time.Microsecond))
	b.Done(t)
	if extra := b.Events(); len(extra) > 0 {
		for _, e := range extra {
			if e.Kind == "EXISTS" || e.Kind == "EXPUNGE" {
				t.Errorf("B: unexpected %s %d in INBOX after the MOVE (all events: %v)", e.Kind, e.Num, extra)
			}
		}
	}
	if got := fmt.Sprint(cp.DestUIDs); got != "1" {
		t.Errorf("A: COPY: COPYUID destination UIDs %s, want 1 (first message in Kept)", got)
	}
	if got := fmt.Sprint(mv.DestUIDs); got != "2" {
		t.Errorf("A: MOVE: COPYUID destination UIDs %s, want 2", got)
	}

	// Both servers show the same INBOX and Archive.
	for _, box := range []struct {
		name  string
		ids   []string
		uids  []imap.UID
		flags [][]string
	}{
		{"INBOX", []string{"idle-1"}, []imap.UID{1}, [][]string{{`\Flagged`}}},
		{"Kept", []string{"idle-1", "idle-3"}, []imap.UID{1, 2}, [][]string{{`\Flagged`}, {}}},
	} {
		va := clFetchAll(t, "A", a.Client, box.name, true)
		vb := clFetchAll(t, "B", b.Client, box.name, true)
		clSameView(t, box.name+" on A vs B", va, vb)
		var ids []string
		var uids []imap.UID
		var flags [][]string
		for _, v := range vb {
			ids = append(ids, clID(v.Body))
			uids = append(uids, v.UID)
			flags = append(flags, v.Flags)
		}
		if !slices.Equal(ids, box.ids) || !slices.Equal(uids, box.uids) || fmt.Sprint(flags) != fmt.Sprint(box.flags) {
			t.Errorf("B: %s: messages %v UIDs %v flags %v, want %v %v %v", box.name, ids, uids, flags, box.ids, box.uids, box.flags)
		}
		for _, v := range vb {
			want := msgs[0]
			if clID(v.Body) == "idle-3" {
				want = msgs[2]
			}
			if !bytes.HasSuffix(v.Body, want) || !e2e.TracePrefix(sender, acct).Match(v.Body[:len(v.Body)-len(want)]) {
				t.Errorf("B: %s UID %d: BODY[] is not the trace fields + the delivered message", box.name, v.UID)
			}
		}
	}
}
