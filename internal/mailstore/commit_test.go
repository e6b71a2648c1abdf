package mailstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGroupCommit queues appends (their UID reservations), flag stores,
// expunges and one operation that writes and then fails behind a blocked
// batch, and checks that they all join that batch's transaction,
// that the failing one gets its own error with its write undone, and
// that every other caller succeeds with UIDs and MODSEQs strictly
// increasing.
func TestGroupCommit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("gc@example.org")
	inbox := e.mailbox(a, "INBOX")
	const pre, nApp, nStore, nExp = 20, 12, 6, 4
	for i := range pre {
		e.appendMsg(a, "INBOX", testMsg(i), `\Deleted`)
	}
	// Messages 1..nStore get \Flagged; nStore+1..nStore+nExp are expunged.
	before := e.states(a, inbox.ID)
	var maxModSeq uint64
	for _, st := range before {
		maxModSeq = max(maxModSeq, st.ModSeq)
	}

	var mu sync.Mutex
	var sizes []int
	e.s.wq.onBatch = func(n int) { mu.Lock(); sizes = append(sizes, n); mu.Unlock() }

	// Block the writer inside a batch.
	gate, inGate := make(chan struct{}), make(chan struct{})
	gateDone := make(chan error, 1)
	go func() {
		gateDone <- e.s.writeTx(ctx, func(tx *sql.Tx) error { close(inGate); <-gate; return nil })
	}()
	<-inGate

	errForced := errors.New("forced failure")
	var wg sync.WaitGroup
	failErr := make(chan error, 1)
	wg.Go(func() {
		failErr <- e.s.writeTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `UPDATE mailboxes SET uidnext = uidnext + 1000, highestmodseq = highestmodseq + 1000 WHERE id = ?`, inbox.ID); err != nil {
				return err
			}
			return errForced
		})
	})
	appended := make([]AppendResult, nApp)
	appendErr := make([]error, nApp)
	for i := range nApp {
		in := e.spool(testMsg(100 + i))
		wg.Go(func() {
			defer in.Close()
			appended[i], appendErr[i] = a.Append(ctx, "INBOX", in, nil, time.Time{})
		})
	}
	stored := make([][]MessageState, nStore)
	storeErr := make([]error, nStore)
	for i := range nStore {
		wg.Go(func() {
			stored[i], _, storeErr[i] = a.StoreFlags(ctx, inbox.ID, []uint32{uint32(i + 1)}, Add, []string{`\Flagged`}, 0)
		})
	}
	expunged := make([][]uint32, nExp)
	expErr := make([]error, nExp)
	for i := range nExp {
		wg.Go(func() { expunged[i], expErr[i] = a.Expunge(ctx, inbox.ID, []uint32{uint32(nStore + 1 + i)}) })
	}
	// Everything is queued behind the gate: the stores, the expunges, the
	// failing operation and the first append's reservation (the others
	// wait for the mailbox's sequencer, which that reservation lets go
	// of once it has run in the next batch).
	want := 1 + 1 + nStore + nExp
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		e.s.wq.mu.Lock()
		n := len(e.s.wq.queue)
		e.s.wq.mu.Unlock()
		if n == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d operations queued, want %d", n, want)
		}
	}
	close(gate)
	wg.Wait()
	if err := <-gateDone; err != nil {
		t.Fatal(err)
	}
	e.s.wq.onBatch = nil

	if err := <-failErr; !errors.Is(err, errForced) {
		t.Errorf("failing operation: err %v, want %v", err, errForced)
	}
	mu.Lock()
	total := 0
	for _, n := range sizes {
		total += n
	}
	// Each append writes twice (reservation, row).
	// Operations queued while a batch runs join it: the gate's batch
	// holds at least everything queued behind the gate.
	if len(sizes) < 1 || sizes[0] < 1+want || total != 1+2*nApp+nStore+nExp+1 {
		t.Errorf("batch sizes %v, want the first >= %d, summing to %d", sizes, 1+want, 1+2*nApp+nStore+nExp+1)
	}
	mu.Unlock()

	var modseqs []uint64
	var uids []uint32
	for i := range nApp {
		if appendErr[i] != nil {
			t.Fatalf("append %d: %v", i, appendErr[i])
		}
		uids = append(uids, appended[i].UID)
		modseqs = append(modseqs, appended[i].ModSeq)
	}
	slices.Sort(uids)
	for i, u := range uids {
		if u != uint32(pre+1+i) {
			t.Fatalf("appended UIDs %v, want %d..%d", uids, pre+1, pre+nApp)
		}
	}
	for i := range nStore {
		if storeErr[i] != nil || len(stored[i]) != 1 || stored[i][0].UID != uint32(i+1) ||
			!slices.Equal(stored[i][0].Flags, []string{`\Deleted`, `\Flagged`}) {
			t.Fatalf("store %d: %v, %v", i, stored[i], storeErr[i])
		}
		modseqs = append(modseqs, stored[i][0].ModSeq)
	}
	for i := range nExp {
		if expErr[i] != nil || !slices.Equal(expunged[i], []uint32{uint32(nStore + 1 + i)}) {
			t.Fatalf("expunge %d: %v, %v", i, expunged[i], expErr[i])
		}
	}
	// MODSEQs: all distinct and above every earlier one; the failed
	// operation's +1000 left no trace.
	slices.Sort(modseqs)
	for i, m := range modseqs {
		if m <= maxModSeq || (i > 0 && m == modseqs[i-1]) {
			t.Fatalf("modseqs %v (before: highest %d): want distinct, above it", modseqs, maxModSeq)
		}
	}
	mb, err := a.Mailbox(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if mb.UIDNext != pre+nApp+1 {
		t.Errorf("UIDNEXT %d, want %d", mb.UIDNext, pre+nApp+1)
	}
	if mb.HighestModSeq >= maxModSeq+1000 {
		t.Errorf("HIGHESTMODSEQ %d: the failed operation's change was committed", mb.HighestModSeq)
	}
	after := e.states(a, inbox.ID)
	if len(after) != pre+nApp-nExp {
		t.Errorf("%d messages, want %d", len(after), pre+nApp-nExp)
	}
	for _, st := range after {
		flagged := slices.Contains(st.Flags, `\Flagged`)
		if flagged != (st.UID <= nStore) {
			t.Errorf("UID %d flags %v", st.UID, st.Flags)
		}
	}
}

// TestGroupCommitCancelled: a caller whose ctx ends while queued gets
// ctx's error and its operation never runs; the batch commits the rest.
func TestGroupCommitCancelled(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	gate, inGate := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.s.writeTx(ctx, func(tx *sql.Tx) error { close(inGate); <-gate; return nil })
	}()
	<-inGate
	cctx, cancel := context.WithCancel(ctx)
	ran := false
	cerr := make(chan error, 1)
	go func() { cerr <- e.s.writeTx(cctx, func(tx *sql.Tx) error { ran = true; return nil }) }()
	okErr := make(chan error, 1)
	okRan := false
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		e.s.wq.mu.Lock()
		n := len(e.s.wq.queue)
		e.s.wq.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("operation not queued")
		}
	}
	go func() { okErr <- e.s.writeTx(ctx, func(tx *sql.Tx) error { okRan = true; return nil }) }()
	cancel()
	close(gate)
	if err := <-cerr; !errors.Is(err, context.Canceled) || ran {
		t.Errorf("cancelled operation: err %v, ran %v; want context.Canceled, not run", err, ran)
	}
	if err := <-okErr; err != nil || !okRan {
		t.Errorf("other operation: err %v, ran %v", err, okRan)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestStmtCache: hot queries are prepared once and reused; past
// maxCachedStmts distinct texts, queries still run, unprepared.
func TestStmtCache(t *testing.T) {
	sqliteOnly(t, "pgx caches prepared statements itself; the store's cache is off")
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("st@example.org")
	e.appendMsg(a, "INBOX", testMsg(1))
	e.s.stmts.mu.Lock()
	n := len(e.s.stmts.m)
	e.s.stmts.mu.Unlock()
	e.appendMsg(a, "INBOX", testMsg(2))
	e.s.stmts.mu.Lock()
	if len(e.s.stmts.m) != n || n == 0 {
		t.Errorf("%d statements cached after one append, %d after two; want the same, > 0", n, len(e.s.stmts.m))
	}
	e.s.stmts.mu.Unlock()
	p := e.s.pq(e.s.db)
	for i := range maxCachedStmts + 10 {
		var got int
		if err := p.QueryRowContext(ctx, fmt.Sprintf("SELECT %d + ?", i), 1).Scan(&got); err != nil || got != i+1 {
			t.Fatalf("query %d: %d, %v", i, got, err)
		}
	}
	e.s.stmts.mu.Lock()
	if len(e.s.stmts.m) != maxCachedStmts {
		t.Errorf("%d statements cached, want %d", len(e.s.stmts.m), maxCachedStmts)
	}
	e.s.stmts.mu.Unlock()
}

// TestGroupCommitCancelMidStatement: a caller whose ctx ends while its
// operation's statement runs loses only its own operation; the others of
// the batch commit (SQLite interrupts the statement; on PostgreSQL the
// statement ends and the caller's next call fails, since pgx would
// otherwise close the connection and with it the batch's transaction).
func TestGroupCommitCancelMidStatement(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	slow := `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT count(*) FROM c`
	if onPG {
		slow = `SELECT pg_sleep(0.4)`
	}
	gate, inGate := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.s.writeTx(ctx, func(tx *sql.Tx) error { close(inGate); <-gate; return nil })
	}()
	<-inGate
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	started := make(chan struct{})
	cerr, okErr := make(chan error, 1), make(chan error, 1)
	go func() {
		cerr <- e.s.writeTx(cctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(cctx, `INSERT INTO counters (name, value) VALUES ('cancelled-1', 1)`); err != nil {
				return err
			}
			close(started)
			if _, err := tx.ExecContext(cctx, slow); err != nil {
				return err
			}
			_, err := tx.ExecContext(cctx, `INSERT INTO counters (name, value) VALUES ('cancelled-2', 1)`)
			return err
		})
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		e.s.wq.mu.Lock()
		n := len(e.s.wq.queue)
		e.s.wq.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("operation not queued")
		}
	}
	go func() {
		okErr <- e.s.writeTx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO counters (name, value) VALUES ('other', 1)`)
			return err
		})
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		e.s.wq.mu.Lock()
		n := len(e.s.wq.queue)
		e.s.wq.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("operation not queued")
		}
	}
	close(gate)
	<-started
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-cerr; err == nil {
		t.Error("cancelled operation succeeded")
	}
	if err := <-okErr; err != nil {
		t.Errorf("other operation of the batch: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("first operation of the batch: %v", err)
	}
	names, err := queryStrings(ctx, e.db, `SELECT name FROM counters ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names, ","); got != "other" {
		t.Errorf("committed counters %q, want other (the cancelled operation rolled back whole)", got)
	}
}
