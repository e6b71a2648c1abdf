package mailstore

import "context"

// UID assignment and commit order.
//
// The commit order is blob Put → index row, and the blob carries its UID
// and UIDVALIDITY in its metadata (DESIGN §3), so the UID must be known
// before the Put. Append therefore:
//
//  1. reserves a UID: a committed write takes UIDNEXT and bumps it (a
//     crash later only wastes the UID, which IMAP allows: UIDs must be
//     strictly ascending, not dense). It goes through the group commit
//     (commit.go), so the reservations of concurrent Appends, to this
//     mailbox or others, share one commit and one fsync;
//  2. Puts the object with that UID in its metadata (in parallel with
//     other Appends);
//  3. inserts the index row with that UID and a new MODSEQ.
//
// Concurrent Appends to one mailbox may finish their Puts in any order,
// but a session must never see UID 6 and later UID 5 appear (RFC 3501
// §2.3.1.1: UIDs are assigned in ascending order as messages are added).
// So each mailbox has a sequencer: reservations form a chain of tickets,
// and a ticket's index insert waits until every earlier ticket has
// committed or given up. Copy, Move and other operations that assign UIDs
// in one transaction hold the sequencer lock (no new reservations) and
// wait for the chain to drain first.
//
// The sequencer is per process. Another process writing the same SQLite
// file (the importer while the server runs), or another server on the
// shared PostgreSQL database, is caught by the insert's check that no
// larger UID exists in the mailbox (messages and expunge log); the row
// then takes a fresh UID (UIDNEXT) and the object's "uid" metadata is
// stale (a hint; the journal is authoritative). The check is sound
// across servers because write transactions of all servers run one at a
// time (BEGIN IMMEDIATE on SQLite, the cluster-wide write lock on
// PostgreSQL: commit.go), so the check and the insert see every other
// commit before them, and UIDs become visible in ascending order in
// commit order (TestConcurrentServers). A COPY or MOVE on another server
// does not wait for this server's reservations (it cannot see them): an
// Append overtaken that way takes the fresh UID as above.
type mboxSeq struct {
	lockc chan struct{} // 1-slot semaphore guarding reservations and tail
	tail  chan struct{} // closed when every ticket so far is done
}

func (s *Store) seqFor(mailboxID int64) *mboxSeq {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	q := s.seqs[mailboxID]
	if q == nil {
		done := make(chan struct{})
		close(done)
		q = &mboxSeq{lockc: make(chan struct{}, 1), tail: done}
		s.seqs[mailboxID] = q
	}
	return q
}

// dropSeq forgets a deleted mailbox's sequencer.
func (s *Store) dropSeq(mailboxID int64) {
	s.seqMu.Lock()
	delete(s.seqs, mailboxID)
	s.seqMu.Unlock()
}

func (q *mboxSeq) lock(ctx context.Context) error {
	select {
	case q.lockc <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *mboxSeq) unlock() { <-q.lockc }

// drain waits until every ticket issued so far is done. Call with the
// lock held, so that no new ticket is issued meanwhile.
func (q *mboxSeq) drain(ctx context.Context) error {
	select {
	case <-q.tail:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ticket is one Append's place in a mailbox's chain.
type ticket struct {
	prev, done chan struct{}
	waited     bool
	released   bool
}

// next issues a ticket. Call with the lock held, right after reserving
// the UID, so that chain order is UID order.
func (q *mboxSeq) next() *ticket {
	t := &ticket{prev: q.tail, done: make(chan struct{})}
	q.tail = t.done
	return t
}

// wait blocks until every earlier ticket is done.
func (t *ticket) wait(ctx context.Context) error {
	select {
	case <-t.prev:
		t.waited = true
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release marks the ticket done (committed or given up). Its done channel
// closes only after every earlier ticket's, so "done" always means "this
// and all before it". Idempotent.
func (t *ticket) release() {
	if t.released {
		return
	}
	t.released = true
	if t.waited {
		close(t.done)
		return
	}
	go func() {
		<-t.prev
		close(t.done)
	}()
}
