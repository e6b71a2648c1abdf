package mailstore

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"

	"github.com/bucketmail/bucketmail/internal/metadb"
)

// Group commit.
//
// Under synchronous=FULL every commit syncs the WAL, and one process has
// one writer at a time, so a write transaction per operation caps the
// store at one fsync per operation however many callers wait. writeTx
// therefore queues the operation; one caller at a time (the leader) takes
// everything queued, runs it in one transaction and commits once:
//
//	BEGIN IMMEDIATE
//	  SAVEPOINT w; op1; RELEASE w          (op1 ok)
//	  SAVEPOINT w; op2; ROLLBACK TO w; RELEASE w   (op2 failed: only its changes undone)
//	  ... operations queued meanwhile join, up to maxBatch
//	COMMIT                                  (one fsync)
//
// then hands every caller its own result: its own error if its operation
// failed, the commit's error if the commit failed, else nil. When the
// batch is done, leadership passes to the first caller still queued (so
// no caller leads for longer than one batch) or lapses if none is.
//
// On PostgreSQL the batch's transaction starts by taking the cluster-wide
// write lock (metadb.BeginWrite), so batches of different servers run one
// after another, never interleaved: every read-then-write step of an
// operation (HIGHESTMODSEQ+1, UIDNEXT, the max-UID check of an insert)
// sees every earlier batch of every server committed, as on SQLite.
// The lock is held until the batch's commit.
//
// Invariants kept: operations run one at a time, in queue order, in one
// transaction, so UIDNEXT and HIGHESTMODSEQ grow exactly as they did with
// one transaction per operation; a caller learns of success only after
// the commit (so its publish, 250 reply or blob delete comes after it).
// An operation that another one waits for in process (an Append's
// sequencer ticket, seq.go) may release that wait from inside its
// operation: the waiter's operation then runs in the same or a later
// batch, and so commits in the same or a later transaction.
//
// A caller whose ctx is done before its operation starts gets ctx.Err()
// and its operation never runs. One whose ctx ends while its operation
// runs may make SQLite interrupt the statement; on PostgreSQL the
// statement runs to its end and the operation's next call fails
// (metadb's pgConn: pgx would close the connection otherwise); either way
// only that operation is rolled back (TestGroupCommitCancelMidStatement).
// If something aborted the whole transaction, the commit fails and every
// operation of the batch gets that error (nothing is reported committed
// that was not).
type writeQueue struct {
	mu      sync.Mutex
	queue   []*writeOp
	leading bool // some caller is running a batch or has been told to
	// onBatch, if set (by tests, before use), is called by the leader
	// after each commit attempt with the number of operations taken.
	onBatch func(n int)
}

// maxBatch bounds the operations in one transaction (latency of the
// first one; WAL growth).
const maxBatch = 256

type writeOp struct {
	ctx context.Context
	fn  func(tx *sql.Tx) error
	err error
	// sig receives true when the caller is to lead the next batch, false
	// when its operation is finished. At most one of each is ever sent.
	sig chan bool
}

// do queues fn and returns its result once its batch has committed.
func (q *writeQueue) do(ctx context.Context, db *sql.DB, log *slog.Logger, fn func(tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, fn: fn, sig: make(chan bool, 2)}
	q.mu.Lock()
	q.queue = append(q.queue, op)
	lead := !q.leading
	q.leading = true
	q.mu.Unlock()
	if !lead {
		lead = <-op.sig
	}
	if lead {
		// op is still queued: nobody but a leader takes from the queue,
		// and this caller is the only one.
		q.runBatch(db, log)
		<-op.sig
	}
	return op.err
}

// take removes and returns up to n queued operations.
func (q *writeQueue) take(n int) []*writeOp {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n > len(q.queue) {
		n = len(q.queue)
	}
	ops := q.queue[:n:n]
	q.queue = append([]*writeOp(nil), q.queue[n:]...)
	return ops
}

// runBatch runs one batch and passes leadership on.
func (q *writeQueue) runBatch(db *sql.DB, log *slog.Logger) {
	var done []*writeOp
	defer func() {
		for _, op := range done {
			op.sig <- false
		}
		q.mu.Lock()
		if len(q.queue) > 0 {
			q.queue[0].sig <- true
		} else {
			q.leading = false
		}
		q.mu.Unlock()
	}()

	ops := q.take(maxBatch)
	done = ops
	// The transaction is the batch's, not any caller's: one caller going
	// away must not roll back the others.
	tx, err := metadb.BeginWrite(context.Background(), db)
	if err != nil {
		for _, op := range ops {
			op.err = err
		}
		return
	}
	var ok []*writeOp // operations whose changes are in tx
	for len(ops) > 0 {
		for i, op := range ops {
			if err := op.ctx.Err(); err != nil {
				op.err = err
				continue
			}
			if err := runOp(tx, op); err != nil {
				// The transaction is unusable: fail this and every
				// operation not yet run, and roll back.
				tx.Rollback()
				log.Error("mailstore: write batch aborted", "err", err)
				for _, o := range ok {
					o.err = err
				}
				for _, o := range ops[i:] {
					if o.err == nil {
						o.err = err
					}
				}
				return
			}
			if op.err == nil {
				ok = append(ok, op)
			}
		}
		// Operations queued meanwhile (e.g. the next Append of a
		// mailbox whose ticket the last one released) join this commit.
		if len(done) >= maxBatch {
			break
		}
		ops = q.take(maxBatch - len(done))
		done = append(done, ops...)
	}
	err = tx.Commit()
	if err != nil {
		for _, op := range ok {
			op.err = err
		}
	}
	if q.onBatch != nil {
		q.onBatch(len(done))
	}
}

// runOp runs op inside a savepoint, setting op.err to fn's error (its
// changes then undone). The returned error is about the savepoint itself
// and means the transaction can no longer be used.
func runOp(tx *sql.Tx, op *writeOp) (txErr error) {
	ctx := context.Background()
	if _, err := tx.ExecContext(ctx, "SAVEPOINT w"); err != nil {
		op.err = err
		return fmt.Errorf("savepoint: %w", err)
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				op.err = fmt.Errorf("mailstore: write operation panicked: %v", r)
			}
		}()
		op.err = op.fn(tx)
	}()
	if op.err != nil {
		if _, err := tx.ExecContext(ctx, "ROLLBACK TO w"); err != nil {
			return fmt.Errorf("rollback to savepoint: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, "RELEASE w"); err != nil {
		if op.err == nil {
			op.err = err
		}
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}
