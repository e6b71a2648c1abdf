package mailstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/metadb"
)

// Options configure a Store.
type Options struct {
	// DB is the metadata database: SQLite (metadb.OpenSQLite) or
	// PostgreSQL (metadb.OpenPostgres); the dialect is found from the
	// driver (metadb.DialectOf). Several servers may share one
	// PostgreSQL database: see the package doc and seq.go.
	DB *sql.DB
	// Blobs holds message bodies.
	Blobs blob.Store
	// SpoolDir holds incoming messages while they are parsed and stored;
	// it must be on local disk. Created if missing.
	SpoolDir string
	Logger   *slog.Logger

	// JournalInterval > 0 turns the bucket journal on (journal.go,
	// package journal): changes are written to the bucket at most this
	// long after they happen (1 s is the usual value; COPY, MOVE,
	// EXPUNGE and mailbox changes are written at once). 0: no journal
	// (the index is then the only record of flags and mailbox names).
	JournalInterval time.Duration
	// SnapshotAfter is how many journal records an account gathers
	// before a flush writes a snapshot instead (0: DefaultSnapshotAfter).
	SnapshotAfter int

	// OnChange, if set, is called after every committed change, in the
	// goroutine that made it, before the local watchers are woken. It
	// must not block (the cluster glue hands the change to the bus
	// asynchronously) and must not call back into the Store.
	OnChange func(Change)
}

// Store is the mail store. See the package doc.
//
// Lock order: a mailbox's sequencer lock (seq.go) before the write
// semaphore; nothing is held while calling a watcher or a Messages
// callback.
type Store struct {
	opts    Options
	db      *sql.DB
	dialect metadb.Dialect
	log     *slog.Logger

	// wq batches this process's write transactions into group commits
	// (commit.go); SQLite's BEGIN IMMEDIATE and busy_timeout handle other
	// processes, PostgreSQL's cluster-wide write lock (metadb.BeginWrite)
	// other servers.
	wq writeQueue

	seqMu sync.Mutex
	seqs  map[int64]*mboxSeq // by mailbox id; see seq.go

	stmts stmtCache // prepared statements of hot queries; see stmts.go

	hub *hub // change notifications; see watch.go

	jrn *journaler // nil when the journal is off; see journal.go

	del deleter // objects of expunged messages, deleted in the background; see deleter.go

	// afterSnapshotSeq, if set (tests, before use), runs in a snapshot
	// flush between taking its seq and reading the snapshot.
	afterSnapshotSeq func()
}

// Open opens the store, creating its schema if needed.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.DB == nil || opts.Blobs == nil || opts.SpoolDir == "" {
		return nil, errors.New("mailstore: open: DB, Blobs and SpoolDir are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("mailstore: open: spool dir: %w", err)
	}
	dialect := metadb.DialectOf(opts.DB)
	if err := metadb.Migrate(ctx, opts.DB, "mail", metadb.MailMigrationsFor(dialect)); err != nil {
		return nil, fmt.Errorf("mailstore: open: %w", err)
	}
	s := &Store{
		opts:    opts,
		db:      opts.DB,
		dialect: dialect,
		log:     opts.Logger,
		seqs:    make(map[int64]*mboxSeq),
		hub:     newHub(),
	}
	s.hub.onChange = opts.OnChange
	s.cleanSpool()
	if err := s.startJournal(ctx); err != nil {
		return nil, fmt.Errorf("mailstore: open: journal: %w", err)
	}
	return s, nil
}

// Close releases the store's resources (not the DB, which the caller
// owns). With the journal on, it writes what is pending first (up to 30 s).
func (s *Store) Close() error {
	s.closeDeleter()
	s.closeJournal()
	s.stmts.close()
	return nil
}

// cleanSpool removes spool files left by a crash. Only files older than a
// day are removed: another process (the importer) may share the spool dir.
func (s *Store) cleanSpool() {
	ents, err := os.ReadDir(s.opts.SpoolDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() || len(e.Name()) < 3 || e.Name()[:3] != "in-" {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > 24*time.Hour {
			os.Remove(s.opts.SpoolDir + string(os.PathSeparator) + e.Name())
		}
	}
}

// writeTx runs fn in a read-write transaction (metadb.BeginWrite: BEGIN
// IMMEDIATE on SQLite; on PostgreSQL READ COMMITTED after the
// cluster-wide write lock, so fn runs as if alone on the database, as on
// SQLite) and returns once that transaction has committed (or fn's
// error).
//
// Group commit (commit.go): write operations queued by concurrent callers
// run one after another in one transaction with one commit (one WAL
// fsync under synchronous=FULL), each inside its own SAVEPOINT, so an
// error in one rolls back only its own changes and is returned only to
// its own caller. fn therefore sees the uncommitted changes of the
// operations before it in the batch (never of later ones), and must not
// assume it is alone in its transaction (no total_changes()). Nothing
// the caller does after writeTx returns (publish, blob deletes) happens
// before the commit.
func (s *Store) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.wq.do(ctx, s.db, s.log, fn)
}

// readTx runs fn in a read-only transaction (one consistent snapshot:
// metadb.BeginRead).
func (s *Store) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := metadb.BeginRead(ctx, s.db)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

// anyBytes is the argument for a value of a column that may hold any
// bytes (ENVELOPE, BODYSTRUCTURE and the decoded header values keep 8-bit
// header bytes as received): on SQLite the string itself (TEXT stores any
// bytes); on PostgreSQL, whose TEXT must be valid UTF-8 without NUL, the
// column is BYTEA and the value goes as []byte (never NULL). Reading it
// back into a string works on both.
func (s *Store) anyBytes(v string) any {
	if s.dialect == metadb.Postgres {
		return append([]byte{}, v...)
	}
	return v
}

// deleteBlobs deletes objects whose last reference was dropped by a
// committed transaction. It runs even if ctx was cancelled (the index no
// longer points at them); a failure leaves an orphan for fsck and is
// logged, not returned.
func (s *Store) deleteBlobs(ctx context.Context, keys []string) {
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for _, k := range keys {
		if err := s.opts.Blobs.Delete(ctx, k); err != nil && !errors.Is(err, blob.ErrNotFound) {
			s.log.Warn("mailstore: blob delete failed; left for fsck", "key", k, "err", err)
		}
	}
}
