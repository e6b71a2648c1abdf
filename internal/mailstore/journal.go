package mailstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/journal"
	"github.com/bucketmail/bucketmail/internal/metadb"
)

// The journal writer (package journal has the format and the crash
// guarantees). It does not hook each operation: it diffs the index
// against what it last wrote to the bucket, which it keeps in the
// journal_* tables. Every message or expunge with a MODSEQ above the
// journaled HIGHESTMODSEQ of its mailbox is written, and so is every
// mailbox whose name, UIDVALIDITY or special-use changed, every deleted
// mailbox and every subscription change. An account is flushed when it is
// dirty (any hub publish marks it): at once after COPY, MOVE, EXPUNGE and
// mailbox operations (journalNow), otherwise on the next tick of
// JournalInterval. A delivered or appended message whose object metadata
// already says all a rebuild needs (Change.SelfDescribed) does not mark
// it: a rebuild places such a message from its object, so delivery costs
// exactly one PUT; the message reaches the journal with the account's
// next flush, the sweep (every journalSweepTicks intervals) or Close. After SnapshotAfter records a flush writes a snapshot
// instead and deletes the journal objects it covers.
//
// Several servers (shared PostgreSQL) or processes (one SQLite file):
// seqs come from journal_accounts in the shared database, so object keys
// never collide, and each flush diffs against the state the previous one
// saved, whoever wrote it; flushes of one account are serialised across
// servers (lockJournal). The dirty set is per process, so every
// journalSweepTicks intervals each server also looks for accounts with
// changes no journal object holds (sweepJournal): those of a server that
// died before its flush, or of a process that does not journal.

// DefaultSnapshotAfter is Options.SnapshotAfter when zero.
const DefaultSnapshotAfter = 5000

// journalMigrations is the schema of the journal writer's state
// (metadb component "journal").
var journalMigrations = []string{`
CREATE TABLE journal_accounts (
	account_id     INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
	seq            INTEGER NOT NULL,
	snapshot_seq   INTEGER NOT NULL,
	since_snapshot INTEGER NOT NULL
);
CREATE TABLE journal_mailboxes (
	guid        TEXT PRIMARY KEY,
	account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	name        TEXT NOT NULL,
	uidvalidity INTEGER NOT NULL,
	special_use TEXT NOT NULL,
	modseq      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX journal_mailboxes_account ON journal_mailboxes (account_id);
CREATE TABLE journal_subs (
	account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
CREATE TABLE journal_blobs (
	key TEXT PRIMARY KEY
) WITHOUT ROWID;
`,
	// 2: deleted mailboxes are remembered (every snapshot repeats their
	// deletion), so that an object left behind by a failed delete is not
	// placed again by a rebuild.
	`ALTER TABLE journal_mailboxes ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;`,
}

// journalMigrationsPG is journalMigrations for PostgreSQL (same
// versions; types as in metadb.MailMigrationsPG).
var journalMigrationsPG = []string{`
CREATE TABLE journal_accounts (
	account_id     BIGINT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
	seq            BIGINT NOT NULL,
	snapshot_seq   BIGINT NOT NULL,
	since_snapshot BIGINT NOT NULL
);
CREATE TABLE journal_mailboxes (
	guid        TEXT COLLATE "C" PRIMARY KEY,
	account_id  BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	name        TEXT COLLATE "C" NOT NULL,
	uidvalidity BIGINT NOT NULL,
	special_use TEXT COLLATE "C" NOT NULL,
	modseq      BIGINT NOT NULL
);
CREATE INDEX journal_mailboxes_account ON journal_mailboxes (account_id);
CREATE TABLE journal_subs (
	account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	name       TEXT COLLATE "C" NOT NULL,
	PRIMARY KEY (account_id, name)
);
CREATE TABLE journal_blobs (
	key TEXT COLLATE "C" PRIMARY KEY
);
`,
	`ALTER TABLE journal_mailboxes ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;`,
}

// journaler runs the background flushes.
type journaler struct {
	mu    sync.Mutex
	dirty map[string]bool
	// urgent: accounts to flush within journalSoonDelay (journalSoon);
	// each is also in dirty.
	urgent map[string]bool
	kick   chan struct{} // wakes the loop for urgent accounts
	flush  sync.Mutex    // one flush at a time
	stop   context.CancelFunc
	done   chan struct{}
	down   atomic.Int64 // UnixNano until which journalNow does not try (bucket failing)
}

func (s *Store) startJournal(ctx context.Context) error {
	migrations := journalMigrations
	if s.dialect == metadb.Postgres {
		migrations = journalMigrationsPG
	}
	if err := metadb.Migrate(ctx, s.db, "journal", migrations); err != nil {
		return err
	}
	if s.opts.JournalInterval <= 0 {
		return nil
	}
	return s.runJournal(ctx)
}

// StartJournal turns the bucket journal on (see Options.JournalInterval)
// for a store opened without it; interval <= 0 means one second. Every
// account is flushed on the first tick (changes made while the journal
// was off are written then). Call it before serving; a second call is a
// no-op.
func (s *Store) StartJournal(ctx context.Context, interval time.Duration) error {
	if s.jrn != nil {
		return nil
	}
	if interval <= 0 {
		interval = time.Second
	}
	s.opts.JournalInterval = interval
	if err := s.runJournal(ctx); err != nil {
		return fmt.Errorf("mailstore: start journal: %w", err)
	}
	return nil
}

func (s *Store) runJournal(ctx context.Context) error {
	j := &journaler{dirty: map[string]bool{}, urgent: map[string]bool{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
	names, err := queryStrings(ctx, s.db, `SELECT name FROM accounts`)
	if err != nil {
		return err
	}
	for _, n := range names {
		j.dirty[n] = true
	}
	s.jrn = j
	s.hub.onPublish = func(ch Change) {
		if ch.Kind == ChangeNewMail && ch.SelfDescribed {
			// The object says all a rebuild needs: no journal PUT of
			// its own (one PUT per delivered message). The next flush
			// of the account, or the sweep, records it.
			return
		}
		s.markDirty(ch.Account)
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	j.stop = cancel
	go s.journalLoop(lctx)
	return nil
}

func (s *Store) markDirty(account string) {
	if s.jrn == nil {
		return
	}
	s.jrn.mu.Lock()
	s.jrn.dirty[account] = true
	s.jrn.mu.Unlock()
}

// journalSweepTicks: every this many JournalIntervals the loop also
// looks in the database for accounts whose changes no journal object
// holds yet (sweepJournal).
const journalSweepTicks = 30

// journalSoonDelay is how long the loop waits after a journalSoon
// before flushing, so that the changes of a burst of commands share
// one journal object per account.
const journalSoonDelay = 20 * time.Millisecond

func (s *Store) journalLoop(ctx context.Context) {
	defer close(s.jrn.done)
	t := time.NewTicker(s.opts.JournalInterval)
	defer t.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-s.jrn.kick:
			tick--
			select {
			case <-ctx.Done():
				return
			case <-time.After(journalSoonDelay):
			}
			s.flushUrgent(ctx)
			continue
		case <-t.C:
		}
		if tick%journalSweepTicks == 0 {
			s.sweepJournal(ctx)
		}
		s.flushDirty(ctx)
	}
}

// sweepJournal marks dirty every account whose index differs from what
// its journal objects say (journal_* tables): a mailbox not journaled,
// or with a HIGHESTMODSEQ, name, UIDVALIDITY or special-use the journal
// has not seen, a journaled mailbox gone, or a subscription change. The
// dirty set is per process; these are changes made by a process that
// did not journal them: another server that crashed before its flush
// (it may never come back), or a process without the journal on (an
// import into the SQLite file of a running server). Every server sweeps;
// flushes of one account are serialised (lockJournal) and a flush that
// finds nothing new writes nothing. Errors are logged.
func (s *Store) sweepJournal(ctx context.Context) {
	names, err := queryStrings(ctx, s.db, `SELECT a.name FROM accounts a WHERE
		EXISTS (SELECT 1 FROM mailboxes m LEFT JOIN journal_mailboxes j ON j.guid = m.guid AND j.deleted = 0
			WHERE m.account_id = a.id AND (j.guid IS NULL OR j.modseq < m.highestmodseq OR j.name != m.name
				OR j.uidvalidity != m.uidvalidity OR j.special_use != m.special_use))
		OR EXISTS (SELECT 1 FROM journal_mailboxes j WHERE j.account_id = a.id AND j.deleted = 0
			AND NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.guid = j.guid))
		OR EXISTS (SELECT 1 FROM subscriptions x WHERE x.account_id = a.id
			AND NOT EXISTS (SELECT 1 FROM journal_subs js WHERE js.account_id = a.id AND js.name = x.name))
		OR EXISTS (SELECT 1 FROM journal_subs js WHERE js.account_id = a.id
			AND NOT EXISTS (SELECT 1 FROM subscriptions x WHERE x.account_id = a.id AND x.name = js.name))`)
	if err != nil {
		s.log.Warn("mailstore: journal sweep failed", "err", err)
		return
	}
	for _, n := range names {
		s.markDirty(n)
	}
}

// flushDirty flushes every dirty account; failures stay dirty. A
// temporary failure (bucket unreachable) ends the round: the rest waits
// for the next one.
func (s *Store) flushDirty(ctx context.Context) {
	j := s.jrn
	j.mu.Lock()
	names := make([]string, 0, len(j.dirty))
	for n := range j.dirty {
		names = append(names, n)
	}
	clear(j.dirty)
	j.mu.Unlock()
	sort.Strings(names)
	for i, n := range names {
		err := s.flushAccount(ctx, n, false)
		switch {
		case err == nil, errors.Is(err, ErrNoAccount):
			continue
		case blob.IsTemporary(err) || ctx.Err() != nil:
			j.down.Store(time.Now().Add(5 * time.Second).UnixNano())
			for _, m := range names[i:] {
				s.markDirty(m)
			}
			s.log.Warn("mailstore: journal flush failed; retried next interval", "account", n, "pending", len(names)-i, "err", err)
			return
		default:
			s.markDirty(n)
			s.log.Warn("mailstore: journal flush failed; retried next interval", "account", n, "err", err)
		}
	}
}

// flushUrgent flushes the accounts journalSoon asked for, unless the
// bucket failed in the last seconds (they stay dirty for the loop).
func (s *Store) flushUrgent(ctx context.Context) {
	j := s.jrn
	if time.Now().UnixNano() < j.down.Load() {
		return
	}
	j.mu.Lock()
	names := make([]string, 0, len(j.urgent))
	for n := range j.urgent {
		names = append(names, n)
		delete(j.dirty, n)
	}
	clear(j.urgent)
	j.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		if err := s.flushAccount(ctx, n, false); err != nil && !errors.Is(err, ErrNoAccount) {
			s.markDirty(n)
			if blob.IsTemporary(err) || ctx.Err() != nil {
				j.down.Store(time.Now().Add(5 * time.Second).UnixNano())
			}
			s.log.Warn("mailstore: journal write failed; retried next interval", "account", n, "err", err)
		}
	}
}

// journalSoon has account's journal written within journalSoonDelay (plus
// the flush itself), without waiting for it: after COPY, MOVE and
// EXPUNGE, whose answer does not wait for the bucket.
func (s *Store) journalSoon(account string) {
	j := s.jrn
	if j == nil {
		return
	}
	j.mu.Lock()
	j.dirty[account] = true
	j.urgent[account] = true
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default: // a kick is pending
	}
}

// closeJournal stops the loop and flushes what is dirty (a clean stop
// loses nothing).
func (s *Store) closeJournal() {
	if s.jrn == nil {
		return
	}
	s.jrn.stop()
	<-s.jrn.done
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s.sweepJournal(ctx)
	s.flushDirty(ctx)
	s.hub.onPublish = nil
	s.jrn = nil
}

// FlushJournal writes every pending journal change now (tests; serve
// before a planned stop does it through Close).
func (s *Store) FlushJournal(ctx context.Context) {
	if s.jrn != nil {
		s.sweepJournal(ctx)
		s.flushDirty(ctx)
	}
}

// journalNow flushes account at once (after COPY, MOVE, EXPUNGE and
// mailbox changes), waiting at most 5 s. A failure, or a bucket that
// failed in the last seconds, leaves it to the background flush: the
// command is not held up by an unreachable bucket.
func (s *Store) journalNow(ctx context.Context, account string) {
	j := s.jrn
	if j == nil {
		return
	}
	if time.Now().UnixNano() < j.down.Load() {
		return // marked dirty by publish; the loop retries
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	// Unmark first: a change committed after this point publishes (and
	// marks) again; one committed before is in this flush.
	j.mu.Lock()
	delete(j.dirty, account)
	j.mu.Unlock()
	if err := s.flushAccount(ctx, account, false); err != nil {
		s.markDirty(account)
		if blob.IsTemporary(err) || ctx.Err() != nil {
			j.down.Store(time.Now().Add(5 * time.Second).UnixNano())
		}
		s.log.Warn("mailstore: journal write failed; retried next interval", "account", account, "err", err)
	}
}

// jstate is what a flush wrote, applied to the journal_* tables after
// the object is stored.
type jstate struct {
	accountID int64
	seq       uint64
	snapshot  bool
	records   int
	mboxes    []journal.Mailbox
	modseqs   map[string]uint64
	gone      []string
	subs      []string
	blobs     []string
}

var errNothing = errors.New("nothing to journal")

// flushAccount writes one journal object with what changed in account
// since the last flush (or a snapshot, with snapshot or when due).
func (s *Store) flushAccount(ctx context.Context, account string, snapshot bool) error {
	j := s.jrn
	if j != nil {
		j.flush.Lock()
		defer j.flush.Unlock()
	}
	unlock, err := s.lockJournal(ctx, account)
	if err != nil {
		return fmt.Errorf("mailstore: journal %s: lock: %w", account, err)
	}
	defer unlock()
	prefix := accountPrefix(account)
	var w *journal.Writer
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	var st jstate
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		if w != nil {
			w.Close()
			w = nil
		}
		st = jstate{modseqs: map[string]uint64{}}
		var nextUV int64
		err := tx.QueryRowContext(ctx, `SELECT id, next_uidvalidity FROM accounts WHERE name = ?`, account).Scan(&st.accountID, &nextUV)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoAccount
		}
		if err != nil {
			return err
		}
		var since int64
		err = tx.QueryRowContext(ctx, `INSERT INTO journal_accounts (account_id, seq, snapshot_seq, since_snapshot)
			VALUES (?, 1, 0, 0) ON CONFLICT (account_id) DO UPDATE SET seq = journal_accounts.seq + 1
			RETURNING seq, since_snapshot`, st.accountID).Scan(&st.seq, &since)
		if err != nil {
			return err
		}
		after := s.opts.SnapshotAfter
		if after <= 0 {
			after = DefaultSnapshotAfter
		}
		st.snapshot = snapshot || since >= int64(after)
		kind := journal.KindJournal
		if st.snapshot {
			kind = journal.KindSnapshot
		}
		w, err = journal.NewWriter(s.opts.SpoolDir, journal.Header{Kind: kind, Account: account, Seq: st.seq,
			Time: time.Now().UTC(), NextUIDValidity: uint32(min(nextUV, 0xffffffff))})
		if err != nil {
			return err
		}
		if st.snapshot {
			return nil // read below, without holding the write lock
		}
		if err := s.journalDiff(ctx, tx, w, &st); err != nil {
			return err
		}
		if w.Len() == 0 {
			return errNothing // rolls the seq back
		}
		st.records = w.Len()
		return nil
	})
	if errors.Is(err, errNothing) {
		return nil
	}
	if err == nil && st.snapshot {
		if s.afterSnapshotSeq != nil {
			s.afterSnapshotSeq()
		}
		// A snapshot can be large: it is read in a read transaction (one
		// consistent view) so that writers are not held up. Its seq was
		// taken first; that is safe because flushes of one account are
		// serialised (j.flush in this process, lockJournal across
		// servers): no journal object is computed between the seq and
		// this read, and every change after the read is above the
		// MODSEQs saved below, so it goes into a later journal object.
		err = s.readTx(ctx, func(tx *sql.Tx) error { return s.journalDiff(ctx, tx, w, &st) })
		st.records = w.Len()
	}
	if err != nil {
		return fmt.Errorf("mailstore: journal %s: %w", account, err)
	}
	kind := journal.KindJournal
	if st.snapshot {
		kind = journal.KindSnapshot
	}
	if err := w.Put(ctx, s.opts.Blobs, journal.Key(prefix, kind, st.seq)); err != nil {
		return fmt.Errorf("mailstore: journal %s: %w", account, err)
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error { return saveJState(ctx, tx, &st) })
	if err != nil {
		return fmt.Errorf("mailstore: journal %s: save state: %w", account, err)
	}
	if st.snapshot {
		s.pruneJournal(ctx, prefix, st.seq)
	}
	return nil
}

// lockJournal serialises the flushes of account across servers sharing a
// PostgreSQL database: it takes the session advisory lock
// (metadb.JournalLockClass, metadb.AccountLockKey(account)) on a
// connection of its own, kept until the returned func releases it, so a
// flush of another server waits (ctx bounds the wait). Without it, two
// servers could interleave seq allocation, diff, Put and state save, and
// (worse) a journal object of server B could fall between the seq of a
// snapshot of server A and A's read of it; replay would then apply B's
// older records over the newer snapshot. Lock order: j.flush, then this
// lock, then the write lock (write batches never wait for this one).
// Each flush still reads the journal_* state the previous one saved in
// the shared database, and seqs come from journal_accounts there, so
// object keys never collide. On SQLite (one server per file) it is a
// no-op.
func (s *Store) lockJournal(ctx context.Context, account string) (unlock func(), err error) {
	if s.dialect != metadb.Postgres {
		return func() {}, nil
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	// A connection that may hold the lock must never go back to the
	// pool: returning ErrBadConn from Raw makes database/sql close it.
	discard := func() { conn.Raw(func(any) error { return driver.ErrBadConn }) }
	key := metadb.AccountLockKey(account)
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?, ?)`, metadb.JournalLockClass, key); err != nil {
		discard()
		conn.Close()
		return nil, err
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var ok bool
		if err := conn.QueryRowContext(uctx, `SELECT pg_advisory_unlock(?, ?)`, metadb.JournalLockClass, key).Scan(&ok); err != nil || !ok {
			s.log.Warn("mailstore: journal unlock failed; closing the connection", "account", account, "err", err)
			discard()
		}
		conn.Close()
	}, nil
}

// pruneJournal deletes the journal objects a snapshot at seq covers and
// older snapshots. Failures are logged: leftovers are replayed
// harmlessly (records are idempotent) and pruned by the next snapshot.
func (s *Store) pruneJournal(ctx context.Context, prefix string, seq uint64) {
	var keys []string
	for _, kind := range []string{journal.KindJournal, journal.KindSnapshot} {
		err := s.opts.Blobs.List(ctx, prefix+kind+"/", func(a blob.Attrs) error {
			k, n, ok := journal.ParseKey(prefix, a.Key)
			if ok && (n < seq || (n == seq && k == journal.KindJournal)) {
				keys = append(keys, a.Key)
			}
			return nil
		})
		if err != nil {
			s.log.Warn("mailstore: journal prune: list failed", "prefix", prefix, "err", err)
			return
		}
	}
	s.deleteBlobs(ctx, keys)
}

// journalDiff adds to w the records of what changed since the journaled
// state (everything, for a snapshot) and fills st with the new state.
func (s *Store) journalDiff(ctx context.Context, tx *sql.Tx, w *journal.Writer, st *jstate) error {
	type jm struct {
		name, su string
		uv       uint32
		modseq   uint64
	}
	old := map[string]jm{}
	if !st.snapshot {
		rows, err := tx.QueryContext(ctx, `SELECT guid, name, uidvalidity, special_use, modseq FROM journal_mailboxes
			WHERE account_id = ? AND deleted = 0`, st.accountID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var g string
			var m jm
			if err := rows.Scan(&g, &m.name, &m.uv, &m.su, &m.modseq); err != nil {
				rows.Close()
				return err
			}
			old[g] = m
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	type cur struct {
		id int64
		mb journal.Mailbox
	}
	var mbs []cur
	rows, err := tx.QueryContext(ctx, `SELECT id, guid, name, uidvalidity, uidnext, highestmodseq, special_use
		FROM mailboxes WHERE account_id = ? ORDER BY name`, st.accountID)
	if err != nil {
		return err
	}
	for rows.Next() {
		var c cur
		if err := rows.Scan(&c.id, &c.mb.GUID, &c.mb.Name, &c.mb.UIDValidity, &c.mb.UIDNext, &c.mb.HighestModSeq, &c.mb.SpecialUse); err != nil {
			rows.Close()
			return err
		}
		mbs = append(mbs, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	emitted := map[string]bool{}
	for _, c := range mbs {
		o, known := old[c.mb.GUID]
		delete(old, c.mb.GUID)
		st.mboxes = append(st.mboxes, c.mb)
		st.modseqs[c.mb.GUID] = c.mb.HighestModSeq
		if known && o.name == c.mb.Name && o.uv == c.mb.UIDValidity && o.su == c.mb.SpecialUse && o.modseq >= c.mb.HighestModSeq {
			continue
		}
		mb := c.mb
		var maxUID sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT max(u) FROM (
			SELECT max(uid) AS u FROM messages WHERE mailbox_id = ?
			UNION ALL SELECT max(uid) FROM expunged WHERE mailbox_id = ?) AS t`, c.id, c.id).Scan(&maxUID); err != nil {
			return err
		}
		mb.Committed = uint32(maxUID.Int64 + 1)
		if err := w.Add(journal.Record{T: journal.TMailbox, Mailbox: &mb}); err != nil {
			return err
		}
		if err := s.journalMessages(ctx, tx, w, st, c.id, c.mb.GUID, o.modseq, emitted); err != nil {
			return err
		}
		if known {
			uids, err := queryUIDs(ctx, tx, `SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid`, c.id, o.modseq)
			if err != nil {
				return err
			}
			if len(uids) > 0 {
				if err := w.Add(journal.Record{T: journal.TExpunge, GUID: c.mb.GUID, UIDs: uids}); err != nil {
					return err
				}
			}
		}
	}
	for g := range old {
		st.gone = append(st.gone, g)
	}
	sort.Strings(st.gone)
	gone := st.gone
	if st.snapshot {
		// A snapshot repeats every deletion it knows of.
		if gone, err = queryStrings(ctx, tx, `SELECT guid FROM journal_mailboxes WHERE account_id = ? AND deleted = 1
			ORDER BY guid`, st.accountID); err != nil {
			return err
		}
	}
	for _, g := range gone {
		if err := w.Add(journal.Record{T: journal.TMailboxGo, GUID: g}); err != nil {
			return err
		}
	}
	// Subscriptions.
	subs, err := queryStrings(ctx, tx, `SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name`, st.accountID)
	if err != nil {
		return err
	}
	st.subs = subs
	oldSubs := map[string]bool{}
	if !st.snapshot {
		js, err := queryStrings(ctx, tx, `SELECT name FROM journal_subs WHERE account_id = ?`, st.accountID)
		if err != nil {
			return err
		}
		for _, n := range js {
			oldSubs[n] = true
		}
	}
	for _, n := range subs {
		if !oldSubs[n] {
			if err := w.Add(journal.Record{T: journal.TSub, Name: n}); err != nil {
				return err
			}
		}
		delete(oldSubs, n)
	}
	unsubs := make([]string, 0, len(oldSubs))
	for n := range oldSubs {
		unsubs = append(unsubs, n)
	}
	sort.Strings(unsubs)
	for _, n := range unsubs {
		if err := w.Add(journal.Record{T: journal.TUnsub, Name: n}); err != nil {
			return err
		}
	}
	return nil
}

// journalMessages adds the messages of a mailbox with MODSEQ above since,
// each preceded by its object's index data unless already journaled.
func (s *Store) journalMessages(ctx context.Context, tx *sql.Tx, w *journal.Writer, st *jstate, mailboxID int64,
	guid string, since uint64, emitted map[string]bool) error {
	q := `SELECT m.uid, m.blob_key, m.flags, m.keywords, m.modseq, m.internal_date, m.internal_tz, m.save_date,
		m.size, m.sha256, m.envelope, m.bodystructure, m.body, m.structure, m.header,
		m.subject, m.from_addr, m.to_addr, m.cc_addr, m.bcc_addr, m.date, m.message_id,
		EXISTS (SELECT 1 FROM journal_blobs j WHERE j.key = m.blob_key)
		FROM messages m WHERE m.mailbox_id = ? AND m.modseq > ? ORDER BY m.uid`
	if st.snapshot {
		since = 0
	}
	rows, err := tx.QueryContext(ctx, q, mailboxID, since)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var m journal.MessageRec
		var b journal.BlobIndex
		var bits int64
		var kw string
		var date sql.NullInt64
		var known bool
		if err := rows.Scan(&m.UID, &m.Key, &bits, &kw, &m.ModSeq, &m.InternalDate, &m.InternalTZ, &m.SaveDate,
			&b.Size, &b.SHA256, &b.Envelope, &b.BodyStructure, &b.Body, &b.Structure, &b.Header,
			&b.Subject, &b.From, &b.To, &b.Cc, &b.Bcc, &date, &b.MessageID, &known); err != nil {
			return err
		}
		m.GUID = guid
		m.Flags = flagList(bits, kw)
		if (st.snapshot || !known) && !emitted[m.Key] {
			emitted[m.Key] = true
			b.Key = m.Key
			if date.Valid {
				b.Date = &date.Int64
			}
			if err := w.Add(journal.Record{T: journal.TBlob, Blob: &b}); err != nil {
				return err
			}
			st.blobs = append(st.blobs, m.Key)
		}
		if err := w.Add(journal.Record{T: journal.TMessage, Message: &m}); err != nil {
			return err
		}
	}
	return rows.Err()
}

func queryUIDs(ctx context.Context, q querier, query string, args ...any) ([]uint32, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []uint32
	for rows.Next() {
		var u uint32
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// saveJState records what a stored journal object said.
func saveJState(ctx context.Context, tx *sql.Tx, st *jstate) error {
	if st.snapshot {
		if _, err := tx.ExecContext(ctx, `DELETE FROM journal_mailboxes WHERE account_id = ? AND deleted = 0`, st.accountID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE journal_accounts SET snapshot_seq = max(snapshot_seq, ?), since_snapshot = 0
			WHERE account_id = ?`, st.seq, st.accountID); err != nil {
			return err
		}
	} else if _, err := tx.ExecContext(ctx, `UPDATE journal_accounts SET since_snapshot = since_snapshot + ?
		WHERE account_id = ?`, st.records, st.accountID); err != nil {
		return err
	}
	for _, mb := range st.mboxes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO journal_mailboxes (guid, account_id, name, uidvalidity, special_use, modseq)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guid) DO UPDATE SET name = excluded.name,
			uidvalidity = excluded.uidvalidity, special_use = excluded.special_use, modseq = max(journal_mailboxes.modseq, excluded.modseq)`,
			mb.GUID, st.accountID, mb.Name, mb.UIDValidity, mb.SpecialUse, st.modseqs[mb.GUID]); err != nil {
			return err
		}
	}
	for _, g := range st.gone {
		if _, err := tx.ExecContext(ctx, `UPDATE journal_mailboxes SET deleted = 1 WHERE guid = ?`, g); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM journal_subs WHERE account_id = ?`, st.accountID); err != nil {
		return err
	}
	for _, n := range st.subs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO journal_subs (account_id, name) VALUES (?, ?)`, st.accountID, n); err != nil {
			return err
		}
	}
	for _, k := range st.blobs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO journal_blobs (key) VALUES (?) ON CONFLICT DO NOTHING`, k); err != nil {
			return err
		}
	}
	if st.snapshot {
		// Objects no longer indexed need no entry.
		if _, err := tx.ExecContext(ctx, `DELETE FROM journal_blobs WHERE key NOT IN (SELECT key FROM blobs)`); err != nil {
			return err
		}
	}
	return nil
}

// deleteJournal deletes an account's journal and snapshot objects (the
// account is gone; a rebuild must not bring its mailboxes back).
func (s *Store) deleteJournal(ctx context.Context, account string) {
	prefix := accountPrefix(account)
	var keys []string
	for _, kind := range []string{journal.KindJournal, journal.KindSnapshot} {
		err := s.opts.Blobs.List(ctx, prefix+kind+"/", func(a blob.Attrs) error {
			if _, _, ok := journal.ParseKey(prefix, a.Key); ok {
				keys = append(keys, a.Key)
			}
			return nil
		})
		if err != nil {
			s.log.Warn("mailstore: journal delete: list failed", "prefix", prefix, "err", err)
			return
		}
	}
	s.deleteBlobs(ctx, keys)
}
