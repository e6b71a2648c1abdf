package metadb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL.
//
// A cluster of servers shares one PostgreSQL database (issue 6). The
// *sql.DB returned by OpenPostgres speaks pgx/v5 through database/sql
// with one addition: every query text is rewritten from SQLite's "?"
// placeholders to PostgreSQL's "$1, $2, …" (outside quoted strings,
// quoted identifiers and comments; see Rebind), so the packages that
// share the database keep one set of query strings. What the two
// dialects still disagree on is handled in the schema, not at the call
// sites:
//
//   - MailMigrationsPG is the mail schema in PostgreSQL types: BIGINT for
//     every integer (PostgreSQL's INTEGER is 32 bits; UIDVALIDITY, sizes
//     and MODSEQs are not), identity columns for ids (never reused, like
//     SQLite's AUTOINCREMENT), BYTEA for BLOB, and COLLATE "C" on every
//     text column so that ORDER BY and range scans compare bytes as
//     SQLite's BINARY collation does (mailbox rename relies on
//     name >= 'a/' AND name < 'a0').
//   - SQLite's two-argument scalar max(a, b) is defined in the schema as
//     a SQL function over greatest(a, b) (one argument stays the
//     aggregate).
//   - Portable spellings where no definition helps: subqueries in FROM
//     carry an alias, sums of booleans are counts of CASE.
//
// Concurrency: under READ COMMITTED, the read-then-write steps of the
// mail store (HIGHESTMODSEQ+1, UIDNEXT, the max-UID check of an insert)
// would race between servers. Every write transaction therefore starts
// by taking one cluster-wide transaction lock (BeginWrite:
// pg_advisory_xact_lock(WriteLockKey), released at commit or rollback),
// so writes are serialised across servers exactly as SQLite's BEGIN
// IMMEDIATE serialises them across processes; each server still batches
// its own writes into one transaction (mailstore's group commit), so the
// lock is taken once per batch, not per operation. Deadlock-free: it is
// the first lock a write transaction takes, so two of them never hold
// locks while waiting for each other; a holder could only wait for row
// locks of a transaction that writes without BeginWrite, and the mail
// store has none (other packages sharing the database write only their
// own tables). The wait is bounded (WriteLockTimeout). Per-account locks
// are the later optimisation. Read transactions (BeginRead) are
// REPEATABLE READ, READ ONLY: one snapshot for the whole transaction,
// never blocked.
//
// Connections: a statement inside a transaction is not cancelled by its
// ctx (pgConn), and a BEGIN or a SELECT outside a transaction that meets
// a dead pooled connection is run again on another (beginPG,
// pgConn.QueryContext): after a server restart only what was running
// at that moment fails, not the first use of every pooled connection.
//
// Prepared statements: pgx caches the prepared form of each query text
// per connection (QueryExecModeCacheStatement), so callers need no
// statement cache of their own.

// PGMaxOpenConns is the pool size of a PostgreSQL database per server.
const PGMaxOpenConns = 16

// WriteLockKey is the pg_advisory_xact_lock key every write transaction
// of the shared database takes first (BeginWrite). (PostgreSQL keeps
// one-bigint and two-int4 advisory keys apart, so JournalLockClass
// locks never meet it.)
const WriteLockKey int64 = 0x626d6c77 // "bmlw"

// WriteLockTimeout bounds the wait for the write lock: a server that
// stalls while holding it (frozen, or cut off without a TCP reset) makes
// the others' writes fail after this long instead of hanging. Set
// idle_in_transaction_session_timeout on the server as well, so that such
// a server's transaction is ended and the lock freed.
const WriteLockTimeout = 60 * time.Second

// connectTimeout is the connect timeout when the URL sets none.
const connectTimeout = 10 * time.Second

// migrateLockKey serialises schema migrations of servers starting at once.
const migrateLockKey int64 = 0x626d6d67 // "bmmg"

// JournalLockClass is the first key of the session-level advisory lock
// (pg_advisory_lock(JournalLockClass, AccountLockKey(account))) that a
// server holds while it writes an account's bucket journal.
const JournalLockClass int32 = 0x626d6a6c // "bmjl"

// Dialect is the SQL dialect of a metadata database.
type Dialect int

const (
	SQLite Dialect = iota
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// DialectOf reports the dialect of db: Postgres for a database opened by
// OpenPostgres (or any sql.DB over this package's "bucketmail-pgx"
// driver), SQLite otherwise.
func DialectOf(db *sql.DB) Dialect {
	if _, ok := db.Driver().(pgDriver); ok {
		return Postgres
	}
	return SQLite
}

// IsPostgresURL reports whether dsn names a PostgreSQL database
// ("postgres://…" or "postgresql://…").
func IsPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open opens the metadata database named by dsn (the --metadb value):
// "" or "sqlite" is the SQLite file dataDir/index.db (OpenSQLite);
// "postgres://…" or "postgresql://…" is a PostgreSQL database
// (OpenPostgres). The mail schema is migrated either way. The caller
// closes the *sql.DB. Errors never contain the URL's password.
func Open(ctx context.Context, dsn, dataDir string) (*sql.DB, error) {
	switch {
	case dsn == "" || dsn == "sqlite":
		return OpenSQLite(ctx, filepath.Join(dataDir, "index.db"))
	case IsPostgresURL(dsn):
		return OpenPostgres(ctx, dsn)
	}
	return nil, fmt.Errorf("metadb: open: unknown database %q: want sqlite or postgres://…", redact(dsn))
}

// OpenPostgres opens the PostgreSQL database at url (a libpq URL or
// key=value string, e.g. "postgres://user:pw@host:5432/mail?sslmode=disable"),
// checks that it answers, and runs MailMigrationsPG (component "mail").
// The pool holds up to PGMaxOpenConns connections. The caller closes the
// *sql.DB. Errors never contain the password.
func OpenPostgres(ctx context.Context, url string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("metadb: open %s: bad URL", redact(url)) // pgx's error may quote the password
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	db := sql.OpenDB(pgConnector{base: stdlib.GetConnector(*cfg)})
	db.SetMaxOpenConns(PGMaxOpenConns)
	db.SetMaxIdleConns(PGMaxOpenConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("metadb: open %s: %w", redact(url), err)
	}
	if err := Migrate(ctx, db, "mail", MailMigrationsPG); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// MailMigrationsFor returns the mail schema of dialect d
// (MailMigrations or MailMigrationsPG; same versions, same meaning).
func MailMigrationsFor(d Dialect) []string {
	if d == Postgres {
		return MailMigrationsPG
	}
	return MailMigrations
}

// BeginWrite starts a read-write transaction. On PostgreSQL it first
// takes the cluster-wide write lock (pg_advisory_xact_lock(WriteLockKey),
// held until commit or rollback), so write transactions of every server
// run one at a time; on SQLite the DSN's BEGIN IMMEDIATE does the same.
// The wait for the lock is bounded by WriteLockTimeout (PostgreSQL error
// 55P03, lock_not_available, when it expires).
//
// On PostgreSQL a BEGIN (or lock) that fails because its pooled
// connection turned out dead (server restarted, backend terminated) is
// tried again on another connection, up to beginAttempts times in all:
// nothing was written yet. Without that, every connection the pool held
// when the server went away would fail one caller's transaction.
func BeginWrite(ctx context.Context, db *sql.DB) (*sql.Tx, error) {
	if DialectOf(db) != Postgres {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("metadb: begin: %w", err)
		}
		return tx, nil
	}
	return beginPG(ctx, db, nil, writeLockSQL)
}

// beginAttempts bounds the BEGINs of one BeginWrite or BeginRead on
// PostgreSQL (one per dead pooled connection met, then a fresh one).
const beginAttempts = PGMaxOpenConns + 1

// beginPG begins a transaction with opts and runs first (if not "") in
// it, retrying on connection errors (connLost).
func beginPG(ctx context.Context, db *sql.DB, opts *sql.TxOptions, first string) (*sql.Tx, error) {
	var err error
	for range beginAttempts {
		var tx *sql.Tx
		tx, err = db.BeginTx(ctx, opts)
		if err == nil && first != "" {
			// One round trip (no arguments: simple protocol, two
			// statements for the write lock).
			if _, err = tx.ExecContext(ctx, first); err != nil {
				tx.Rollback()
				err = fmt.Errorf("write lock: %w", err)
			}
		}
		if err == nil {
			return tx, nil
		}
		if !connLost(err) || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("metadb: begin: %w", err)
}

// connLost reports whether err says the connection is gone (and the
// statement therefore did not run): SQLSTATE class 08 (connection
// exception), 57P01..57P03 (server shutting down, backend terminated),
// a closed connection or a network error.
func connLost(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ne net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne) || pgconn.SafeToRetry(err)
}

var writeLockSQL = fmt.Sprintf(`SET LOCAL lock_timeout = %d; SELECT pg_advisory_xact_lock(%d)`,
	WriteLockTimeout.Milliseconds(), WriteLockKey)

// BeginRead starts a read-only transaction that sees one consistent
// snapshot: SQLite's deferred BEGIN in WAL mode, PostgreSQL's REPEATABLE
// READ, READ ONLY. It never waits for writers.
//
// On PostgreSQL a BEGIN on a dead pooled connection is tried again, as in
// BeginWrite.
func BeginRead(ctx context.Context, db *sql.DB) (*sql.Tx, error) {
	if DialectOf(db) != Postgres {
		tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("metadb: begin: %w", err)
		}
		return tx, nil
	}
	return beginPG(ctx, db, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}, "")
}

// AccountLockKey is the second key of per-account advisory locks: a
// 32-bit FNV-1a hash of the account name (collisions only make two
// accounts share a lock).
func AccountLockKey(account string) int32 {
	h := fnv.New32a()
	h.Write([]byte(account))
	return int32(h.Sum32())
}

// redact removes the password from a URL for messages.
func redact(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		if at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@"); at >= 0 {
			if c := strings.Index(rest[:at], ":"); c >= 0 {
				return dsn[:i+3] + rest[:c] + ":xxxxx" + rest[at:]
			}
		}
		return dsn
	}
	if strings.Contains(dsn, "password") {
		return "(key=value string with a password)"
	}
	return dsn
}

// Rebind rewrites the "?" placeholders of query to "$1", "$2", … in
// order, leaving alone any "?" inside '…' strings, "…" identifiers,
// -- line comments and /* */ comments. A query without "?" is returned
// as it is.
func Rebind(query string) string {
	if strings.IndexByte(query, '?') < 0 {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(query[i+1:], c)
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+2])
			i += j + 1
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+1])
			i += j
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			j := strings.Index(query[i+2:], "*/")
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+4])
			i += j + 3
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// pgDriver, pgConnector and pgConn wrap pgx's database/sql driver,
// rewriting every query with Rebind.
type pgDriver struct{}

func (pgDriver) Open(name string) (driver.Conn, error) {
	c, err := stdlib.GetDefaultDriver().Open(name)
	if err != nil {
		return nil, err
	}
	return wrapConn(c)
}

type pgConnector struct{ base driver.Connector }

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return wrapConn(cn)
}

func (pgConnector) Driver() driver.Driver { return pgDriver{} }

func wrapConn(c driver.Conn) (driver.Conn, error) {
	sc, ok := c.(*stdlib.Conn)
	if !ok {
		c.Close()
		return nil, errors.New("metadb: pgx stdlib returned an unexpected connection type")
	}
	return &pgConn{sc}, nil
}

// pgConn is a pgx stdlib connection whose query texts are rebound. It
// keeps the stdlib connection's other interfaces (BeginTx, Ping,
// ResetSession, CheckNamedValue, …) by embedding.
//
// Cancellation inside a transaction: pgx answers a ctx cancelled while a
// statement runs by closing the connection, which would end the whole
// transaction, i.e. a group commit batch of several callers, for one
// caller gone away. Inside a transaction a statement therefore runs to
// its end regardless of ctx (statements are short; a write batch holds
// the write lock, so nothing waits long), and the caller's next call
// fails with ctx.Err() from database/sql, so only its own operation is
// rolled back (to its savepoint), as SQLite's interrupt does. Outside a
// transaction ctx cancels the statement as usual.
type pgConn struct{ *stdlib.Conn }

// stmtCtx is ctx, detached from its cancellation inside a transaction.
func (c *pgConn) stmtCtx(ctx context.Context) context.Context {
	if c.Conn.Conn().PgConn().TxStatus() != 'I' {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (c *pgConn) Prepare(query string) (driver.Stmt, error) {
	return c.Conn.Prepare(Rebind(query))
}

func (c *pgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(c.stmtCtx(ctx), Rebind(query))
}

func (c *pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(c.stmtCtx(ctx), Rebind(query), args)
}

// QueryContext runs query. A SELECT outside a transaction that finds its
// connection dead (connLost) returns driver.ErrBadConn, so that
// database/sql runs it again on another connection: it wrote nothing.
// Anything else (a write, or inside a transaction) returns the error.
func (c *pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	inTx := c.Conn.Conn().PgConn().TxStatus() != 'I'
	rows, err := c.Conn.QueryContext(c.stmtCtx(ctx), Rebind(query), args)
	if err != nil && !inTx && connLost(err) && ctx.Err() == nil && isSelect(query) {
		return nil, driver.ErrBadConn
	}
	return rows, err
}

// isSelect reports whether query is a plain SELECT (no data-modifying
// statement can hide in one: bucketmail writes no SELECT that calls a
// writing function, except the advisory lock ones, which a retry takes
// again).
func isSelect(query string) bool {
	q := strings.TrimLeft(query, " \t\r\n(")
	return len(q) >= 6 && strings.EqualFold(q[:6], "select")
}

var (
	_ driver.ExecerContext      = (*pgConn)(nil)
	_ driver.QueryerContext     = (*pgConn)(nil)
	_ driver.ConnPrepareContext = (*pgConn)(nil)
	_ driver.ConnBeginTx        = (*pgConn)(nil)
	_ driver.SessionResetter    = (*pgConn)(nil)
	_ driver.NamedValueChecker  = (*pgConn)(nil)
	_ driver.Pinger             = (*pgConn)(nil)
)
