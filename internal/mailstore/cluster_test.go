package mailstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
