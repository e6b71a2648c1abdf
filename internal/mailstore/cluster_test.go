package mailstore

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	blobfs "github.com/bucketmail/bucketmail/internal/blob/fs"
)

// servers opens n more Stores on e's metadata database and blob store,
// each with its own *sql.DB pool and spool dir, as separate servers (or
// processes, on SQLite) would have. They are closed at cleanup.
func (e *env) servers(n int) []*Store {
	e.t.Helper()
	var out []*Store
	for i := range n {
		db := openMetaDB(e.t, e.dsn)
		s, err := Open(context.Background(), Options{DB: db, Blobs: e.blobs,
			SpoolDir: filepath.Join(e.dir, fmt.Sprintf("spool-server%d", i+1))})
		if err != nil {
			db.Close()
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { s.Close(); db.Close() })
		out = append(out, s)
	}
	return out
}

// clusterMsg is a message whose Message-ID names its appender.
func clusterMsg(id string) string {
	return fmt.Sprintf("From: a@example.org\r\nTo: c@x\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\n\r\nbody %s\r\n", id, id, id)
}

// TestConcurrentServers: three Stores on one metadata database (separate
// pools: three servers on PostgreSQL, three processes on one SQLite
// file) create the account, append, copy, move, store flags and expunge
// at once on the same mailboxes, while a client mirrors each mailbox
// through Changes since the HIGHESTMODSEQ it last saw. Checked:
//   - UIDs: no two rows share one; each UID returned by Append is in its
//     mailbox; a UID never seen before is above every UID seen before in
//     that mailbox (ascending in commit order, RFC 3501 §2.3.1.1);
//   - UIDNEXT and HIGHESTMODSEQ never go back; every row's and every
//     expunge's MODSEQ ≤ HIGHESTMODSEQ; the MODSEQs given out in one
//     mailbox (appends, flag changes) are all distinct (RFC 7162 §3.1);
//   - the mirror ends equal to the mailbox (no change invisible to
//     CONDSTORE/QRESYNC);
//   - every message appended to INBOX is there exactly once; rows in
//     Work and Archive = copies + appends to Work − expunged; blob refs
//     match the rows pointing at them.
func TestConcurrentServers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	stores := append([]*Store{e.s}, e.servers(2)...)
	const account = "c@x"

	// Every server creates the account at once: one wins, all see it.
	accts := make([]*Account, len(stores))
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := s.Account(ctx, account)
			if err != nil {
				errc <- err
				return
			}
			accts[i] = a
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	for i, a := range accts[1:] {
		if a.id != accts[0].id {
			t.Fatalf("server %d: account id %d, server 0: %d", i+1, a.id, accts[0].id)
		}
	}
	if _, err := accts[0].CreateMailbox(ctx, "Work", ""); err != nil {
		t.Fatal(err)
	}
	names := []string{"INBOX", "Work", "Archive"}
	mbs := map[string]Mailbox{}
	for _, n := range names {
		mbs[n] = e.mailbox(accts[0], n)
	}

	perAppender := 12
	if testing.Short() {
		perAppender = 6
	}
	var (
		mu        sync.Mutex
		modseqs   = map[string][]uint64{} // given out, by mailbox
		appended  = map[string][]uint32{} // UIDs returned by Append, by mailbox
		inboxIDs  []string                // Message-IDs appended to INBOX
		copies    atomic.Int64
		workApp   atomic.Int64
		expunged  atomic.Int64
		appending atomic.Int64
	)
	note := func(mb string, modseq uint64) {
		mu.Lock()
		modseqs[mb] = append(modseqs[mb], modseq)
		mu.Unlock()
	}
	fail := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}

	// Appenders: two per server, INBOX and Work alternately.
	for si, s := range stores {
		for w := range 2 {
			wg.Add(1)
			appending.Add(1)
			go func() {
				defer wg.Done()
				defer appending.Add(-1)
				for i := range perAppender {
					mb := names[i%2]
					id := fmt.Sprintf("s%d-w%d-%d-%s", si, w, i, strings.ToLower(mb))
					in, err := s.Spool(ctx, strings.NewReader(clusterMsg(id)), false, 0)
					if err != nil {
						fail(err)
						return
					}
					res, err := accts[si].Append(ctx, mb, in, nil, time.Time{})
					in.Close()
					if err != nil {
						fail(fmt.Errorf("server %d append: %w", si, err))
						return
					}
					note(mb, res.ModSeq)
					mu.Lock()
					appended[mb] = append(appended[mb], res.UID)
					if mb == "INBOX" {
						inboxIDs = append(inboxIDs, id)
					} else {
						workApp.Add(1)
					}
					mu.Unlock()
				}
			}()
		}
	}

	// Movers: one per server, until the appenders are done.
	pick := func(r *rand.Rand, st []MessageState, n int) []uint32 {
		var out []uint32
		for range n {
			if len(st) > 0 {
				out = append(out, st[r.IntN(len(st))].UID)
			}
		}
		return out
	}
	for si := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := accts[si]
			r := rand.New(rand.NewPCG(uint64(si), 7))
			for round := 0; appending.Load() > 0 || round < 3; round++ {
				st, err := a.States(ctx, mbs["INBOX"].ID)
				if err != nil {
					fail(err)
					return
				}
				res, err := a.Copy(ctx, mbs["INBOX"].ID, pick(r, st, 2), "Work")
				if err != nil {
					fail(fmt.Errorf("server %d copy: %w", si, err))
					return
				}
				copies.Add(int64(len(res.DstUIDs)))
				ch, _, err := a.StoreFlags(ctx, mbs["INBOX"].ID, pick(r, st, 3), Add, []string{FlagSeen, fmt.Sprintf("$s%d", si)}, 0)
				if err != nil {
					fail(fmt.Errorf("server %d store: %w", si, err))
					return
				}
				if len(ch) > 0 {
					note("INBOX", ch[0].ModSeq)
				}
				if st, err = a.States(ctx, mbs["Work"].ID); err != nil {
					fail(err)
					return
				}
				if _, err := a.Move(ctx, mbs["Work"].ID, pick(r, st, 2), "Archive"); err != nil {
					fail(fmt.Errorf("server %d move: %w", si, err))
					return
				}
				if st, err = a.States(ctx, mbs["Archive"].ID); err != nil {
					fail(err)
					return
				}
				del := pick(r, st, 1)
				ch, _, err = a.StoreFlags(ctx, mbs["Archive"].ID, del, Add, []string{FlagDeleted}, 0)
				if err != nil {
					fail(fmt.Errorf("server %d store: %w", si, err))
					return
				}
				if len(ch) > 0 {
					note("Archive", ch[0].ModSeq)
				}
				gone, err := a.Expunge(ctx, mbs["Archive"].ID, del)
				if err != nil {
					fail(fmt.Errorf("server %d expunge: %w", si, err))
					return
				}
				expunged.Add(int64(len(gone)))
			}
		}()
	}

	// The client: one mirror per mailbox, kept by Changes (through server
	// 0's pool), checked at every poll.
	type mirror struct {
		highest uint64
		uidnext uint32
		maxUID  uint32
		rows    map[uint32]string // UID → flags
		polls   int
	}
	mirrors := map[string]*mirror{}
	for _, n := range names {
		mirrors[n] = &mirror{highest: 0, rows: map[uint32]string{}}
	}
	poll := func(name string) error {
		m := mirrors[name]
		mb := mbs[name]
		c, err := accts[0].Changes(ctx, mb.ID, mb.UIDValidity, m.highest)
		if err != nil {
			return err
		}
		m.polls++
		if c.HighestModSeq < m.highest || c.UIDNext < m.uidnext {
			return fmt.Errorf("%s: HIGHESTMODSEQ %d UIDNEXT %d went back from %d %d", name, c.HighestModSeq, c.UIDNext, m.highest, m.uidnext)
		}
		maxBefore := m.maxUID
		for _, u := range c.Expunged {
			delete(m.rows, u)
		}
		for _, st := range c.Updated {
			if st.ModSeq > c.HighestModSeq || st.ModSeq <= m.highest {
				return fmt.Errorf("%s: UID %d MODSEQ %d outside (%d, %d]", name, st.UID, st.ModSeq, m.highest, c.HighestModSeq)
			}
			if st.UID >= c.UIDNext {
				return fmt.Errorf("%s: UID %d at or above UIDNEXT %d", name, st.UID, c.UIDNext)
			}
			if _, known := m.rows[st.UID]; !known && st.UID <= maxBefore {
				return fmt.Errorf("%s: new UID %d appeared after UID %d was seen", name, st.UID, maxBefore)
			}
			m.rows[st.UID] = fmt.Sprint(st.Flags)
			m.maxUID = max(m.maxUID, st.UID)
		}
		m.highest, m.uidnext = c.HighestModSeq, c.UIDNext
		return nil
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case err := <-errc:
			t.Fatal(err)
		default:
			for _, n := range names {
				if err := poll(n); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}

	// Final state, through a fresh pool (another server).
	check := e.servers(1)[0]
	ca, err := check.Account(ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := poll(n); err != nil {
			t.Fatal(err)
		}
		m := mirrors[n]
		st, err := ca.States(ctx, mbs[n].ID)
		if err != nil {
			t.Fatal(err)
		}
		got := map[uint32]string{}
		for _, s := range st {
			got[s.UID] = fmt.Sprint(s.Flags)
		}
		if fmt.Sprint(got) != fmt.Sprint(m.rows) {
			t.Errorf("%s: mirror after %d polls\n%v\nmailbox\n%v", n, m.polls, m.rows, got)
		}
		mb, err := ca.Mailbox(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if int(mb.Messages) != len(st) || (len(st) > 0 && st[len(st)-1].UID >= mb.UIDNext) {
			t.Errorf("%s: %d messages, %d states, UIDNEXT %d", n, mb.Messages, len(st), mb.UIDNext)
		}
		for _, s := range st {
			if s.ModSeq > mb.HighestModSeq {
				t.Errorf("%s: UID %d MODSEQ %d above HIGHESTMODSEQ %d", n, s.UID, s.ModSeq, mb.HighestModSeq)
			}
		}
		ms := slices.Clone(modseqs[n])
		slices.Sort(ms)
		if d := len(ms) - len(slices.Compact(ms)); d != 0 {
			t.Errorf("%s: %d MODSEQs given out twice", n, d)
		}
		if len(ms) > 0 && ms[len(ms)-1] > mb.HighestModSeq {
			t.Errorf("%s: MODSEQ %d given out, HIGHESTMODSEQ %d", n, ms[len(ms)-1], mb.HighestModSeq)
		}
		var bad int
		if err := e.db.QueryRow(`SELECT count(*) FROM expunged WHERE mailbox_id = ? AND modseq > ?`, mb.ID, mb.HighestModSeq).Scan(&bad); err != nil {
			t.Fatal(err)
		}
		if bad != 0 {
			t.Errorf("%s: %d expunges above HIGHESTMODSEQ", n, bad)
		}
	}
	// INBOX: every appended message exactly once, under the UID Append
	// returned.
	rows, err := e.db.Query(`SELECT uid, message_id FROM messages WHERE mailbox_id = ? ORDER BY uid`, mbs["INBOX"].ID)
	if err != nil {
		t.Fatal(err)
	}
	var inboxGot []string
	var inboxUIDs []uint32
	for rows.Next() {
		var u uint32
		var id string
		if err := rows.Scan(&u, &id); err != nil {
			t.Fatal(err)
		}
		inboxGot = append(inboxGot, strings.TrimSuffix(strings.TrimPrefix(id, "<"), "@test>"))
		inboxUIDs = append(inboxUIDs, u)
	}
	rows.Close()
	slices.Sort(inboxGot)
	slices.Sort(inboxIDs)
	if !slices.Equal(inboxGot, inboxIDs) {
		t.Errorf("INBOX Message-IDs\n%v\nwant\n%v", inboxGot, inboxIDs)
	}
	if want := 3 * 2 * ((perAppender + 1) / 2); len(inboxIDs) != want {
		t.Errorf("%d appends to INBOX, want %d", len(inboxIDs), want)
	}
	a := slices.Clone(appended["INBOX"])
	slices.Sort(a)
	if !slices.Equal(a, inboxUIDs) {
		t.Errorf("INBOX UIDs %v, Append returned %v", inboxUIDs, a)
	}
	// Work and Archive: conservation of messages.
	var rest int64
	if err := e.db.QueryRow(`SELECT count(*) FROM messages WHERE mailbox_id IN (?, ?)`, mbs["Work"].ID, mbs["Archive"].ID).Scan(&rest); err != nil {
		t.Fatal(err)
	}
	if want := copies.Load() + workApp.Load() - expunged.Load(); rest != want {
		t.Errorf("Work+Archive hold %d messages; copies %d + appends %d - expunged %d = %d",
			rest, copies.Load(), workApp.Load(), expunged.Load(), want)
	}
	var badRefs int
	if err := e.db.QueryRow(`SELECT count(*) FROM blobs b WHERE refs != (SELECT count(*) FROM messages m WHERE m.blob_key = b.key)`).Scan(&badRefs); err != nil {
		t.Fatal(err)
	}
	if badRefs != 0 {
		t.Errorf("%d blob rows with a wrong reference count", badRefs)
	}
	t.Logf("appends %d (INBOX %d), copies %d, expunged %d; polls %d/%d/%d",
		int64(len(inboxIDs))+workApp.Load(), len(inboxIDs), copies.Load(), expunged.Load(),
		mirrors["INBOX"].polls, mirrors["Work"].polls, mirrors["Archive"].polls)
}

// putRecorder counts Puts per key of journal and snapshot objects.
type putRecorder struct {
	blob.Store
	mu   sync.Mutex
	puts map[string]int
}

func (p *putRecorder) Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.Metadata) error {
	if strings.Contains(key, "/journal/") || strings.Contains(key, "/snapshot/") {
		p.mu.Lock()
		p.puts[key]++
		p.mu.Unlock()
	}
	return p.Store.Put(ctx, key, r, size, meta)
}

// TestJournalTwoServers: two servers with the journal on change one
// account at once (deliveries, flags, COPY, EXPUNGE, mailboxes created,
// renamed and subscribed) and flush its journal at once, with snapshots
// due every few records. No journal or snapshot key is written twice,
// and a rebuild of a fresh metadata database from the bucket alone
// restores the account exactly, without reading a message object.
func TestJournalTwoServers(t *testing.T) {
	fsStore, err := blobfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &putRecorder{Store: fsStore, puts: map[string]int{}}
	counting := &countingBlobs{Store: rec}
	const interval = 20 * time.Millisecond
	e := newJEnv(t, counting, interval, 12)
	ctx := context.Background()
	const account = "two@example.org"
	a := e.account(account)
	db2 := openMetaDB(t, e.dsn)
	defer db2.Close()
	s2, err := Open(ctx, Options{DB: db2, Blobs: counting, SpoolDir: filepath.Join(e.dir, "spool2"),
		JournalInterval: interval, SnapshotAfter: 12})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			s2.Close()
		}
	}()
	b, err := s2.Account(ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 6; i++ {
		e.deliver(a, "INBOX", testMsg(i), msgDate(i))
	}
	inbox := e.mailbox2(a, "INBOX")
	archive := e.mailbox2(a, "Archive")

	n := 14
	if testing.Short() {
		n = 8
	}
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		}()
	}
	deliver := func(s *Store, acct *Account, mailbox, raw string, date time.Time, flags ...string) error {
		in, err := s.Spool(ctx, strings.NewReader(raw), true, 0)
		if err != nil {
			return err
		}
		defer in.Close()
		_, err = acct.Append(ctx, mailbox, in, flags, date)
		return err
	}
	run(func() error { // server A: deliveries and flags in INBOX
		for i := range n {
			if err := deliver(e.s, a, "INBOX", testMsg(100+i), msgDate(100+i), "$a"); err != nil {
				return err
			}
			if _, _, err := a.StoreFlags(ctx, inbox.ID, []uint32{uint32(1 + i%6)}, Add, []string{fmt.Sprintf("$a%d", i)}, 0); err != nil {
				return err
			}
			if i%4 == 0 {
				e.s.FlushJournal(ctx)
			}
		}
		return nil
	})
	run(func() error { // server B: Archive, copies, expunges, mailboxes
		for i := range n {
			if err := deliver(s2, b, "Archive", testMsg(200+i), msgDate(200+i)); err != nil {
				return err
			}
			if _, err := b.Copy(ctx, inbox.ID, []uint32{uint32(1 + i%6)}, "Archive"); err != nil {
				return err
			}
			if i%3 == 2 {
				st, err := b.States(ctx, archive.ID)
				if err != nil {
					return err
				}
				if _, _, err := b.StoreFlags(ctx, archive.ID, []uint32{st[0].UID}, Add, []string{FlagDeleted}, 0); err != nil {
					return err
				}
				if _, err := b.Expunge(ctx, archive.ID, nil); err != nil {
					return err
				}
			}
			if i%5 == 0 {
				name := fmt.Sprintf("B/%d", i)
				if _, err := b.CreateMailbox(ctx, name, ""); err != nil {
					return err
				}
				if err := b.SetSubscribed(ctx, name, true); err != nil {
					return err
				}
				if err := b.RenameMailbox(ctx, name, fmt.Sprintf("B/ré%d", i)); err != nil {
					return err
				}
			}
			if i%4 == 1 {
				s2.FlushJournal(ctx)
			}
		}
		return nil
	})
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	closed = true
	s2.Close() // final flush of server B
	e.s.FlushJournal(ctx)
	before := dumpAccount(t, a)
	if got := strings.Count(before, "  uid="); got < 6+2*n {
		t.Fatalf("scenario state (%d messages):\n%s", got, before)
	}
	snapshots := 0
	rec.mu.Lock()
	for k, c := range rec.puts {
		if c != 1 {
			t.Errorf("%s written %d times", k, c)
		}
		if strings.Contains(k, "/snapshot/") {
			snapshots++
		}
	}
	t.Logf("%d journal and snapshot objects written (%d snapshots)", len(rec.puts), snapshots)
	rec.mu.Unlock()
	if snapshots == 0 {
		t.Errorf("no snapshot written; the test wants snapshots among concurrent flushes")
	}

	e.crash()
	e.open()
	counting.reset()
	st, err := e.s.Reindex(ctx, account, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Gets != 0 || counting.gets.Load() != 0 || len(st.NewValidity) != 0 {
		t.Errorf("reindex stats %+v; message GETs %d", st, counting.gets.Load())
	}
	if after := dumpAccount(t, e.account(account)); after != before {
		t.Errorf("state after reindex differs:\n--- before\n%s--- after\n%s", before, after)
	}
}

func (e *jenv) mailbox2(a *Account, name string) Mailbox {
	e.t.Helper()
	mb, err := a.Mailbox(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return mb
}

// TestJournalSnapshotRace: server B flushes the account's journal while
// server A's snapshot flush holds its seq but has not read the snapshot
// yet, and a flag changes right after. B's flush must wait for A's to
// finish (the journal lock): otherwise B's journal object, numbered
// after the snapshot but older than it, would be replayed over it and a
// rebuild would bring back the old flags.
func TestJournalSnapshotRace(t *testing.T) {
	if !onPG {
		t.Skip("PostgreSQL only: one server journals a SQLite file")
	}
	fsStore, err := blobfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	e := newJEnv(t, fsStore, time.Hour, 1000) // flushes only when told
	ctx := context.Background()
	const account = "race@example.org"
	a := e.account(account)
	e.deliver(a, "INBOX", testMsg(1), msgDate(1))
	e.deliver(a, "INBOX", testMsg(2), msgDate(2))
	inbox := e.mailbox2(a, "INBOX")
	if err := e.s.flushAccount(ctx, account, false); err != nil {
		t.Fatal(err)
	}
	db2 := openMetaDB(t, e.dsn)
	defer db2.Close()
	s2, err := Open(ctx, Options{DB: db2, Blobs: fsStore, SpoolDir: filepath.Join(e.dir, "spool2")})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	b, err := s2.Account(ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	bDone := make(chan error, 1)
	waited := false
	e.s.afterSnapshotSeq = func() {
		e.s.afterSnapshotSeq = nil
		if _, _, err := b.StoreFlags(ctx, inbox.ID, []uint32{1}, Add, []string{FlagFlagged}, 0); err != nil {
			t.Error(err)
		}
		go func() { bDone <- s2.flushAccount(ctx, account, false) }()
		select {
		case err := <-bDone:
			bDone <- err // B's flush did not wait for A's
		case <-time.After(500 * time.Millisecond):
			waited = true
		}
		if _, _, err := a.StoreFlags(ctx, inbox.ID, []uint32{1}, Replace, []string{FlagSeen}, 0); err != nil {
			t.Error(err)
		}
	}
	if err := e.s.flushAccount(ctx, account, true); err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	if !waited {
		t.Error("server B's flush ran inside server A's snapshot flush")
	}
	before := dumpAccount(t, a)
	if !strings.Contains(before, `uid=1 flags=[\Seen]`) {
		t.Fatalf("state before:\n%s", before)
	}
	e.crash()
	e.open()
	if _, err := e.s.Reindex(ctx, account, false); err != nil {
		t.Fatal(err)
	}
	if after := dumpAccount(t, e.account(account)); after != before {
		t.Errorf("state after reindex differs:\n--- before\n%s--- after\n%s", before, after)
	}
}

// TestJournalSweep: changes made by a store that does not journal them
// (another server that crashed before its flush, or a process without
// the journal) are written to the bucket by a server that sweeps for
// them, though it made none of them itself; a rebuild then has them.
func TestJournalSweep(t *testing.T) {
	fsStore, err := blobfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	counting := &countingBlobs{Store: fsStore}
	const interval = 10 * time.Millisecond // sweeps every 30 intervals
	e := newJEnv(t, counting, interval, DefaultSnapshotAfter)
	ctx := context.Background()
	dbA := openMetaDB(t, e.dsn)
	defer dbA.Close()
	sA, err := Open(ctx, Options{DB: dbA, Blobs: counting, SpoolDir: filepath.Join(e.dir, "spoolA")}) // no journal
	if err != nil {
		t.Fatal(err)
	}
	defer sA.Close()
	const account = "swept@example.org"
	a, err := sA.Account(ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		in, err := sA.Spool(ctx, strings.NewReader(testMsg(i)), true, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Append(ctx, "INBOX", in, nil, msgDate(i))
		in.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	inbox, err := a.Mailbox(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.StoreFlags(ctx, inbox.ID, []uint32{2}, Add, []string{FlagFlagged}, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.SetSubscribed(ctx, "Junk", false); err != nil {
		t.Fatal(err)
	}
	before := dumpAccount(t, a)
	start := time.Now()
	journaled := func() bool {
		var n int
		if err := e.db.QueryRow(`SELECT count(*) FROM journal_mailboxes j JOIN mailboxes m ON m.guid = j.guid
			WHERE m.id = ? AND j.modseq = m.highestmodseq`, inbox.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	for !journaled() {
		if time.Since(start) > 20*time.Second {
			t.Fatal("the other store's changes never reached the journal")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("journaled by the sweep after %s", time.Since(start).Round(time.Millisecond))
	sA.Close()
	e.crash()
	e.open()
	counting.reset()
	st, err := e.s.Reindex(ctx, account, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Gets != 0 || counting.gets.Load() != 0 || st.Journals == 0 {
		t.Errorf("reindex stats %+v; message GETs %d", st, counting.gets.Load())
	}
	if after := dumpAccount(t, e.account(account)); after != before {
		t.Errorf("state after reindex differs:\n--- before\n%s--- after\n%s", before, after)
	}
}
