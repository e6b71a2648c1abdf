// Package metadb opens the metadata database and keeps its schema.
//
// Two databases: SQLite (OpenSQLite, below), the embedded default for one
// server, and PostgreSQL (OpenPostgres, postgres.go), shared by several
// servers. Open picks one from the --metadb value; DialectOf tells them
// apart; BeginWrite and BeginRead start transactions with the same
// guarantees on both (writers one at a time, readers on one snapshot).
//
// The embedded default is one SQLite file (modernc.org/sqlite, pure Go)
// in WAL mode. Its settings, per connection:
//
//   - journal_mode=WAL: readers never block the writer and see a
//     consistent snapshot; one writer at a time.
//   - synchronous=FULL: in WAL mode, NORMAL does not sync the WAL at
//     commit, so the last transactions before a power loss can roll back.
//     A delivery is answered "250" (LMTP) or "OK" (IMAP APPEND) right after
//     its index transaction commits, so that commit must be durable: FULL
//     syncs the WAL on every commit. The cost is one fsync per write
//     transaction, which is why mailstore batches concurrent writes into
//     one transaction (group commit, mailstore/commit.go).
//   - busy_timeout=10000 (ms): a writer from another connection or
//     process is waited for, not failed at once.
//   - foreign_keys=ON.
//   - _txlock=immediate: every read-write transaction starts with BEGIN
//     IMMEDIATE, taking the write lock up front, so two transactions that
//     read and then write can never deadlock (SQLITE_BUSY_SNAPSHOT).
//     Transactions opened with sql.TxOptions{ReadOnly: true} use a plain
//     (deferred) BEGIN and run concurrently with the writer.
//
// Pool: up to MaxOpenConns connections so readers run in parallel; write
// transactions queue on SQLite's write lock (and, inside one process, in
// the write queue of the package that writes, e.g. mailstore's group
// commit), never on each other's snapshots.
//
// Schema: Migrate runs numbered migrations per component, recording the
// last one applied in the schema_version table (component, version).
// OpenSQLite runs the migrations of every component this package owns
// (MailMigrations, component "mail"); other packages that keep tables in
// the same file (e.g. the embedded userdb) call Migrate with their own
// component name and list.
package metadb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrSchema: the database has a newer schema version than this binary knows.
var ErrSchema = errors.New("metadb: schema version newer than this binary")

// MaxOpenConns is the connection pool size of a SQLite database: enough
// parallel readers for a 2..8-core machine; writers are serialised by
// SQLite's write lock.
const MaxOpenConns = 8

// BusyTimeoutMillis is how long a connection waits for another writer.
const BusyTimeoutMillis = 10000

// DSN returns the modernc.org/sqlite data source name for path with the
// settings in the package doc.
func DSN(path string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", BusyTimeoutMillis))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// OpenSQLite opens (creating if missing) the SQLite database at path with
// the settings in the package doc and runs MailMigrations. The parent
// directory is created (0700) if missing. The caller closes the *sql.DB.
func OpenSQLite(ctx context.Context, path string) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("metadb: open %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", DSN(path))
	if err != nil {
		return nil, fmt.Errorf("metadb: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(MaxOpenConns)
	db.SetMaxIdleConns(MaxOpenConns)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	// Check the settings took: journal_mode is persistent in the file;
	// the others are per connection and applied by the DSN.
	//
	// Two processes opening a new file at once (serve starting while
	// `bucketmail user add` runs) race to switch it to WAL; the loser's
	// connection gets SQLITE_BUSY at once, without the busy handler. It
	// is retried for up to BusyTimeoutMillis.
	var mode string
	deadline := time.Now().Add(BusyTimeoutMillis * time.Millisecond)
	for {
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode)
		if err == nil {
			break
		}
		if !isBusy(err) || time.Now().After(deadline) || ctx.Err() != nil {
			db.Close()
			return nil, fmt.Errorf("metadb: open %s: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if mode != "wal" {
		db.Close()
		return nil, fmt.Errorf("metadb: open %s: journal_mode is %q, want wal", path, mode)
	}
	if err := Migrate(ctx, db, "mail", MailMigrations); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Migrate brings component's schema up to len(migrations): migrations[i]
// is version i+1 and runs, in its own transaction with the version bump,
// only if the recorded version is below i+1. A recorded version above
// len(migrations) gives ErrSchema (a newer binary wrote the file). Safe to
// call at every open and from several processes (BEGIN IMMEDIATE
// serialises them) or servers (on PostgreSQL each step first takes an
// advisory transaction lock and creates schema_version if missing).
// migrations must be in db's dialect (DialectOf).
func Migrate(ctx context.Context, db *sql.DB, component string, migrations []string) error {
	if DialectOf(db) == SQLite {
		if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		component TEXT PRIMARY KEY,
		version   INTEGER NOT NULL
	) WITHOUT ROWID`); err != nil {
			return fmt.Errorf("metadb: migrate %s: %w", component, err)
		}
	}
	for {
		done, err := migrateOne(ctx, db, component, migrations)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateOne applies the next migration, if any; done reports that none
// was left.
func migrateOne(ctx context.Context, db *sql.DB, component string, migrations []string) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("metadb: migrate %s: %w", component, err)
	}
	defer tx.Rollback()
	if DialectOf(db) == Postgres {
		// Servers starting together: one migrates, the others wait and
		// then find nothing to do. CREATE TABLE IF NOT EXISTS is not safe
		// against a concurrent create without the lock.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, migrateLockKey); err != nil {
			return false, fmt.Errorf("metadb: migrate %s: lock: %w", component, err)
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
			component TEXT COLLATE "C" PRIMARY KEY,
			version   BIGINT NOT NULL
		)`); err != nil {
			return false, fmt.Errorf("metadb: migrate %s: %w", component, err)
		}
	}
	var v int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version WHERE component = ?`, component).Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("metadb: migrate %s: %w", component, err)
	}
	if v > len(migrations) {
		return false, fmt.Errorf("%w: migrate %s: database at version %d, binary knows %d", ErrSchema, component, v, len(migrations))
	}
	if v == len(migrations) {
		return true, nil
	}
	if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("metadb: migrate %s to version %d: %w", component, v+1, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (component, version) VALUES (?, ?)
		ON CONFLICT (component) DO UPDATE SET version = excluded.version`, component, v+1); err != nil {
		return false, fmt.Errorf("metadb: migrate %s to version %d: %w", component, v+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("metadb: migrate %s to version %d: %w", component, v+1, err)
	}
	return false, nil
}

// Version returns the recorded schema version of component (0 if none).
func Version(ctx context.Context, db *sql.DB, component string) (int, error) {
	var v int
	err := db.QueryRowContext(ctx, `SELECT version FROM schema_version WHERE component = ?`, component).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("metadb: version %s: %w", component, err)
	}
	return v, nil
}

// isBusy reports whether err is SQLite's SQLITE_BUSY (5, in any of its
// extended forms).
func isBusy(err error) bool {
	var c interface{ Code() int }
	return errors.As(err, &c) && c.Code()&0xff == 5
}
