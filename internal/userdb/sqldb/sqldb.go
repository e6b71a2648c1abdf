// Package sqldb is the SQL user database: PostgreSQL (through pgx) and
// MySQL/MariaDB (through go-sql-driver/mysql), selected with
//
//	--userdb postgres://user:pw@host:5432/db?sslmode=disable   (also postgresql://)
//	--userdb mysql://user:pw@host:3306/db                       (?socket=/path for a unix socket)
//
// Both work in one of two ways.
//
// # Default schema (bucketmail owns the table)
//
// With no queries configured, Open creates this table if it is missing
// and DB implements userdb.Manager, so `bucketmail user ...` works:
//
//	CREATE TABLE IF NOT EXISTS bucketmail_users (
//	    address     VARCHAR(254) PRIMARY KEY,  -- userdb.Normalize'd; MySQL: utf8mb4_bin
//	    password    VARCHAR(512) NOT NULL,     -- Dovecot "{SCHEME}..." hash
//	    quota_bytes BIGINT NOT NULL DEFAULT 0, -- 0: no limit
//	    disabled    BOOLEAN NOT NULL DEFAULT FALSE,
//	    created     BIGINT NOT NULL            -- unix seconds
//	)
//
// # Existing tables (password_query, user_query)
//
// With Options.PasswordQuery and Options.UserQuery (TOML [userdb]
// password_query, user_query) any table works unchanged, as with
// Dovecot's dovecot-sql.conf.ext. DB is then read-only (Manager methods
// return userdb.ErrReadOnly). For PostfixAdmin's mailbox table:
//
//	password_query = "SELECT username AS user, password FROM mailbox WHERE username = '%u' AND active = '1'"
//	user_query     = "SELECT username AS user, quota, active FROM mailbox WHERE username = '%u'"
//
// Parameters: %u (the whole normalised address), %n (local part), %d
// (domain), with or without Dovecot's surrounding single quotes ('%u' and
// %u are the same), %Lu/%Ln/%Ld (lower-cased: the same as %u/%n/%d under
// the default address policy, which lower-cases already; with
// Options.Policy.KeepLocalCase they lower-case the local part), and the
// named forms :user, :local and :domain. They are sent as bound
// query parameters ($1 or ?), never pasted into the SQL text, so an
// address cannot inject SQL.
//
// Columns are found by name (use AS); others are ignored:
//
//	password                      the stored hash (password_query; required there)
//	user, username                the account name (default: the address)
//	quota_bytes, quota            quota in bytes (0 or less: no limit; PostfixAdmin's quota is bytes)
//	quota_rule, userdb_quota_rule Dovecot quota rule "*:bytes=N" / "*:storage=N" (KiB)
//	disabled, nologin             true/non-zero: disabled
//	active                        false/zero: disabled
//
// No row from password_query means an unknown user (or, with a WHERE on
// active, a disabled one): authentication fails. After a password
// matches, user_query gives the account; no row there fails the login too.
//
// Consistency: every read goes to the configured URL (the primary; there
// is no read-replica support yet), so reads are always consistent and
// userdb.WithConsistentRead needs nothing more here.
//
// Any database error (server down, connection refused, bad query) is
// userdb.ErrUnavailable: IMAP answers NO [UNAVAILABLE], LMTP 451 4.3.0,
// never a wrong reject. At most GOMAXPROCS hash verifications run at once.
package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/passwdfile"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
)

// Options are the settings beyond the URL (TOML [userdb]).
type Options struct {
	// PasswordQuery and UserQuery replace the default schema's queries;
	// both must be set, or neither (see the package doc).
	PasswordQuery string
	UserQuery     string
	// Hasher hashes new passwords (default schema only); default
	// password.Hash (ARGON2ID).
	Hasher password.Hasher
	// Policy: how addresses are made canonical before they go to the
	// queries (default: the zero userdb.AddressPolicy, lower-cased and
	// NFC). The default schema stores addresses in that form.
	Policy userdb.AddressPolicy
	// StartDown: a server that cannot be reached at Open is not an error;
	// calls fail with userdb.ErrUnavailable until it answers, and the
	// default schema is created then. serve sets it (it starts and
	// answers 451 / NO [UNAVAILABLE]); the CLI does not.
	StartDown bool
}

// Dialect is the database kind.
type Dialect int

// Dialects.
const (
	Postgres Dialect = iota
	MySQL
)

// DB is a SQL user database. It implements userdb.PassDB, userdb.UserDB
// and userdb.Manager (the latter only works with the default schema) and
// is safe for concurrent use.
type DB struct {
	db      *sql.DB
	dialect Dialect
	log     *slog.Logger
	managed bool
	hasher  password.Hasher
	sem     chan struct{}
	policy  userdb.AddressPolicy

	pwQuery   query
	userQuery query

	dummyOnce sync.Once
	dummy     string

	schemaMu   sync.Mutex
	schemaDone atomic.Bool
}

var (
	_ userdb.PassDB  = (*DB)(nil)
	_ userdb.UserDB  = (*DB)(nil)
	_ userdb.Manager = (*DB)(nil)
)

const (
	defaultPasswordQuery = "SELECT address AS user, password, quota_bytes, disabled FROM bucketmail_users WHERE address = :user"
	defaultUserQuery     = "SELECT address AS user, quota_bytes, disabled FROM bucketmail_users WHERE address = :user"
)

// Schema returns the default schema's CREATE TABLE statement for a
// dialect (see the package doc).
func Schema(d Dialect) string {
	col := "VARCHAR(254)"
	if d == MySQL {
		col = "VARCHAR(254) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
	}
	return `CREATE TABLE IF NOT EXISTS bucketmail_users (
	address     ` + col + ` PRIMARY KEY,
	password    VARCHAR(512) NOT NULL,
	quota_bytes BIGINT NOT NULL DEFAULT 0,
	disabled    BOOLEAN NOT NULL DEFAULT FALSE,
	created     BIGINT NOT NULL
)`
}

// IsDSN reports whether dsn selects this package (postgres://,
// postgresql:// or mysql://).
func IsDSN(dsn string) bool {
	for _, p := range []string{"postgres://", "postgresql://", "mysql://"} {
		if strings.HasPrefix(dsn, p) {
			return true
		}
	}
	return false
}

// Open opens the default-schema database at dsn (see the package doc).
// logger may be nil.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*DB, error) {
	return OpenWith(ctx, dsn, Options{}, logger)
}

// OpenWith opens dsn with options. It connects once, so a wrong URL or an
// unreachable server fails here (wrapping userdb.ErrUnavailable), and with
// the default schema creates the table.
func OpenWith(ctx context.Context, dsn string, o Options, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if (o.PasswordQuery == "") != (o.UserQuery == "") {
		return nil, errors.New("sqldb: open: set both password_query and user_query, or neither")
	}
	d := &DB{log: logger, hasher: o.Hasher, sem: make(chan struct{}, runtime.GOMAXPROCS(0)), policy: o.Policy}
	if d.hasher == nil {
		d.hasher = password.Hash
	}
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("sqldb: open: postgres URL: %w", err) // pgx does not echo the password
		}
		if !strings.Contains(dsn, "connect_timeout=") {
			cfg.ConnectTimeout = 5 * time.Second
		}
		d.dialect, d.db = Postgres, stdlib.OpenDB(*cfg)
	case strings.HasPrefix(dsn, "mysql://"):
		cfg, err := mysqlConfig(dsn)
		if err != nil {
			return nil, err
		}
		cfg.Logger = mysqlLogger{logger}
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			return nil, fmt.Errorf("sqldb: open: mysql URL: %w", err)
		}
		d.dialect, d.db = MySQL, sql.OpenDB(conn)
	default:
		return nil, fmt.Errorf("sqldb: open: want postgres://, postgresql:// or mysql://")
	}
	d.db.SetMaxOpenConns(32)
	d.db.SetConnMaxIdleTime(5 * time.Minute)
	pq, uq := o.PasswordQuery, o.UserQuery
	if pq == "" {
		d.managed = true
		pq, uq = defaultPasswordQuery, defaultUserQuery
	}
	var err error
	if d.pwQuery, err = parseQuery(pq, d.dialect); err != nil {
		d.db.Close()
		return nil, fmt.Errorf("sqldb: password_query: %w", err)
	}
	if d.userQuery, err = parseQuery(uq, d.dialect); err != nil {
		d.db.Close()
		return nil, fmt.Errorf("sqldb: user_query: %w", err)
	}
	err = d.ensureSchema(ctx)
	if err == nil && !d.managed {
		if err = d.db.PingContext(ctx); err != nil {
			err = unavailable("open", "", err)
		}
	}
	if err != nil {
		if o.StartDown && errors.Is(err, userdb.ErrUnavailable) {
			logger.Warn("sqldb: database unreachable at start; logins and deliveries are deferred until it answers", "err", err)
			return d, nil
		}
		d.db.Close()
		return nil, err
	}
	return d, nil
}

// schemaLock names the lock taken around the default schema's creation:
// a PostgreSQL advisory lock key ("bm_users" in ASCII) and a MySQL
// GET_LOCK name.
const (
	schemaLockKey  int64 = 0x626d5f7573657273
	schemaLockName       = "bucketmail_users_schema"
	// schemaLockWait bounds the wait for another server's schema setup
	// on MySQL, in seconds (GET_LOCK's timeout).
	schemaLockWait = 30
)

// ensureSchema creates the default schema's table once (no-op with
// custom queries). Servers starting at once on a fresh database would
// race in CREATE TABLE IF NOT EXISTS (PostgreSQL: a unique violation on
// pg_type_typname_nsp_index), so the statement runs under a database
// lock: pg_advisory_xact_lock in its transaction on PostgreSQL,
// GET_LOCK/RELEASE_LOCK on one connection on MySQL. Errors wrap
// userdb.ErrUnavailable.
func (d *DB) ensureSchema(ctx context.Context) error {
	if !d.managed || d.schemaDone.Load() {
		return nil
	}
	d.schemaMu.Lock()
	defer d.schemaMu.Unlock()
	if d.schemaDone.Load() {
		return nil
	}
	var err error
	if d.dialect == MySQL {
		err = d.createMySQL(ctx)
	} else {
		err = d.createPostgres(ctx)
	}
	if err != nil {
		return unavailable("create table", "bucketmail_users", err)
	}
	d.schemaDone.Store(true)
	return nil
}

func (d *DB) createPostgres(ctx context.Context) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockKey); err != nil {
		return fmt.Errorf("advisory lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, Schema(Postgres)); err != nil {
		return err
	}
	return tx.Commit()
}

func (d *DB) createMySQL(ctx context.Context) error {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", schemaLockName, schemaLockWait).Scan(&got); err != nil {
		return fmt.Errorf("GET_LOCK: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("GET_LOCK %s: not granted within %d s", schemaLockName, schemaLockWait)
	}
	_, err = conn.ExecContext(ctx, Schema(MySQL))
	// The lock is the session's: release it even when the statement
	// failed (a connection returned to the pool would keep it).
	if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK(?)", schemaLockName); rerr != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn }) // drop the connection: its session ends
		if err == nil {
			err = fmt.Errorf("RELEASE_LOCK: %w", rerr)
		}
	}
	return err
}

// mysqlConfig turns mysql://user:pw@host:port/db?k=v into the driver's
// config. ?socket=/path uses a unix socket instead of host:port; other
// parameters go to the driver as in its DSN syntax.
func mysqlConfig(dsn string) (*mysql.Config, error) {
	rest := strings.TrimPrefix(dsn, "mysql://")
	rest, params, _ := strings.Cut(rest, "?")
	hostPart, db, _ := strings.Cut(rest, "/")
	userinfo := ""
	if at := strings.LastIndexByte(hostPart, '@'); at >= 0 {
		userinfo, hostPart = hostPart[:at], hostPart[at+1:]
	}
	cfg := mysql.NewConfig()
	vals, err := url.ParseQuery(params)
	if err != nil {
		return nil, fmt.Errorf("sqldb: open: mysql URL parameters: %w", err)
	}
	sock := vals.Get("socket")
	vals.Del("socket")
	if len(vals) > 0 {
		parsed, err := mysql.ParseDSN("/?" + vals.Encode())
		if err != nil {
			return nil, fmt.Errorf("sqldb: open: mysql URL parameters: %w", err)
		}
		cfg = parsed
	}
	user, pw, _ := strings.Cut(userinfo, ":")
	if cfg.User, err = unescape(user); err != nil {
		return nil, err
	}
	if cfg.Passwd, err = unescape(pw); err != nil {
		return nil, err
	}
	cfg.DBName = db
	if sock != "" {
		cfg.Net, cfg.Addr = "unix", sock
	} else {
		if hostPart == "" {
			hostPart = "127.0.0.1"
		}
		if !strings.Contains(hostPart, ":") || strings.HasSuffix(hostPart, "]") {
			hostPart += ":3306"
		}
		cfg.Net, cfg.Addr = "tcp", hostPart
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	cfg.ClientFoundRows = true // UPDATE reports matched rows (SetPassword's ErrNotFound)
	return cfg, nil
}

// mysqlLogger sends the driver's messages to the logger at debug level.
type mysqlLogger struct{ log *slog.Logger }

func (l mysqlLogger) Print(v ...any) { l.log.Debug("sqldb: mysql driver", "msg", fmt.Sprint(v...)) }

func unescape(s string) (string, error) {
	u, err := url.PathUnescape(s)
	if err != nil {
		return "", errors.New("sqldb: open: mysql URL: bad %-escape in user or password")
	}
	return u, nil
}

// Close closes the connection pool.
func (d *DB) Close() error { return d.db.Close() }

// Dialect reports the database kind.
func (d *DB) Dialect() Dialect { return d.dialect }

// query is a parsed password_query/user_query: SQL with driver
// placeholders and which value goes to each.
type query struct {
	sql   string
	args  []param
	lower []bool // per arg: a %L form, lower-cased
}

type param int

const (
	pUser param = iota
	pLocal
	pDomain

	pLower param = 8 // or-ed in by percent: a %L form
)

// parseQuery replaces %u/%n/%d ('%u' too, %L forms) and :user/:local/
// :domain by placeholders, leaving other string literals, identifiers
// and casts (::text) alone.
func parseQuery(s string, d Dialect) (query, error) {
	var q query
	var b strings.Builder
	add := func(p param) {
		q.lower = append(q.lower, p&pLower != 0)
		p &^= pLower
		q.args = append(q.args, p)
		if d == Postgres {
			fmt.Fprintf(&b, "$%d", len(q.args))
		} else {
			b.WriteByte('?')
		}
	}
	percent := func(s string) (param, int, bool) { // s starts with '%'
		t := s[1:]
		n := 1
		var lower param
		if strings.HasPrefix(t, "L") {
			t, n, lower = t[1:], 2, pLower
		}
		if t == "" {
			return 0, 0, false
		}
		switch t[0] {
		case 'u':
			return pUser | lower, n + 1, true
		case 'n':
			return pLocal | lower, n + 1, true
		case 'd':
			return pDomain | lower, n + 1, true
		}
		return 0, 0, false
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\'':
			// '%u' as a whole literal becomes a parameter; any other
			// literal is copied.
			if i+1 < len(s) && s[i+1] == '%' {
				if p, n, ok := percent(s[i+1:]); ok && i+1+n < len(s) && s[i+1+n] == '\'' {
					add(p)
					i += n + 2
					continue
				}
			}
			j := i + 1
			for j < len(s) {
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			if j >= len(s) {
				return q, errors.New("unterminated string literal")
			}
			b.WriteString(s[i : j+1])
			i = j + 1
		case c == '%':
			p, n, ok := percent(s[i:])
			if !ok {
				return q, fmt.Errorf("unknown variable %.3q (use %%u, %%n, %%d)", s[i:])
			}
			add(p)
			i += n
		case c == ':' && (i == 0 || s[i-1] != ':') && i+1 < len(s) && s[i+1] != ':':
			name := s[i+1:]
			end := strings.IndexFunc(name, func(r rune) bool {
				return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
			})
			if end >= 0 {
				name = name[:end]
			}
			switch name {
			case "user":
				add(pUser)
			case "local":
				add(pLocal)
			case "domain":
				add(pDomain)
			default:
				b.WriteByte(c)
				i++
				continue
			}
			i += 1 + len(name)
		default:
			b.WriteByte(c)
			i++
		}
	}
	q.sql = b.String()
	return q, nil
}

func (q query) values(address string) []any {
	local, domain := address, ""
	if at := strings.LastIndexByte(address, '@'); at >= 0 {
		local, domain = address[:at], address[at+1:]
	}
	out := make([]any, len(q.args))
	for i, p := range q.args {
		var v string
		switch p {
		case pUser:
			v = address
		case pLocal:
			v = local
		case pDomain:
			v = domain
		}
		if q.lower[i] {
			v = strings.ToLower(v)
		}
		out[i] = v
	}
	return out
}

// row is what a query returned, by lower-cased column name.
type row map[string]any

// queryRow runs q for address: (nil, nil) if no row.
func (d *DB) queryRow(ctx context.Context, q query, address string) (row, error) {
	if err := d.ensureSchema(ctx); err != nil {
		return nil, err
	}
	rows, err := d.db.QueryContext(ctx, q.sql, q.values(address)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	r := make(row, len(cols))
	for i, c := range cols {
		r[strings.ToLower(c)] = vals[i]
	}
	return r, rows.Close()
}

func asString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	case nil:
		return "", false
	}
	return fmt.Sprint(v), true
}

func asInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case int:
		return int64(v), true
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	case float64:
		return int64(v), true
	case nil:
		return 0, false
	}
	s, _ := asString(v)
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "t", "true", "y", "yes":
		return 1, true
	case "f", "false", "n", "no":
		return 0, true
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return int64(f), true
	}
	return 0, false
}

// user builds the user for address from a row's recognised columns; the
// account name is normalised under p.
func (r row) user(address string, p userdb.AddressPolicy) (*userdb.User, error) {
	u := &userdb.User{Address: address, Account: address}
	for _, k := range []string{"user", "username"} {
		if s, ok := asString(r[k]); ok && s != "" {
			u.Account = p.Normalize(s)
			break
		}
	}
	for _, k := range []string{"quota_bytes", "quota"} {
		if n, ok := asInt(r[k]); ok {
			u.QuotaBytes = max(n, 0)
			break
		}
	}
	for _, k := range []string{"quota_rule", "userdb_quota_rule"} {
		if s, ok := asString(r[k]); ok && s != "" {
			q, err := passwdfile.ParseQuotaRule(s)
			if err != nil {
				return nil, err
			}
			if q >= 0 {
				u.QuotaBytes = q
			}
		}
	}
	for _, k := range []string{"disabled", "nologin"} {
		if n, ok := asInt(r[k]); ok && n != 0 {
			u.Disabled = true
		}
	}
	if n, ok := asInt(r["active"]); ok && n == 0 {
		u.Disabled = true
	}
	return u, nil
}

// unavailable wraps a database error as temporary.
func unavailable(op, address string, err error) error {
	if address != "" {
		op += " " + address
	}
	return fmt.Errorf("sqldb: %s: %w: %w", op, userdb.ErrUnavailable, err)
}

// Lookup implements userdb.UserDB with user_query.
func (d *DB) Lookup(ctx context.Context, address string) (*userdb.User, error) {
	address = d.policy.Normalize(address)
	r, err := d.queryRow(ctx, d.userQuery, address)
	if err != nil {
		return nil, unavailable("lookup", address, err)
	}
	if r == nil {
		return nil, fmt.Errorf("sqldb: lookup %s: %w", address, userdb.ErrNotFound)
	}
	u, err := r.user(address, d.policy)
	if err != nil {
		return nil, unavailable("lookup", address, err)
	}
	return u, nil
}

func (d *DB) dummyHash() string {
	d.dummyOnce.Do(func() {
		h, err := d.hasher("bucketmail-dummy-password")
		if err != nil {
			h, _ = password.Hash("bucketmail-dummy-password")
		}
		d.dummy = h
	})
	return d.dummy
}

// Authenticate implements userdb.PassDB with password_query, then
// user_query (see the package doc).
func (d *DB) Authenticate(ctx context.Context, address, pw string) (*userdb.User, error) {
	address = d.policy.Normalize(address)
	failed := fmt.Errorf("sqldb: authenticate %s: %w", address, userdb.ErrAuthFailed)
	r, err := d.queryRow(ctx, d.pwQuery, address)
	if err != nil {
		return nil, unavailable("authenticate", address, err)
	}
	hash := ""
	if r != nil {
		hash, _ = asString(r["password"])
	}
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("sqldb: authenticate %s: %w", address, ctx.Err())
	}
	var ok bool
	if hash == "" {
		_, _ = password.Verify(d.dummyHash(), pw)
	} else {
		ok, err = password.Verify(hash, pw)
	}
	<-d.sem
	if err != nil {
		return nil, fmt.Errorf("sqldb: authenticate %s: %w: %w", address, userdb.ErrAuthFailed, err)
	}
	if !ok {
		return nil, failed
	}
	pu, err := r.user(address, d.policy)
	if err != nil {
		return nil, unavailable("authenticate", address, err)
	}
	u, err := d.Lookup(ctx, address)
	if errors.Is(err, userdb.ErrNotFound) {
		return nil, failed
	}
	if err != nil {
		return nil, err
	}
	if u.Disabled || pu.Disabled {
		return nil, failed
	}
	return u, nil
}

func (d *DB) readOnly(op string) error {
	return fmt.Errorf("sqldb: %s: %w (password_query/user_query are set; manage the table with its own tools)", op, userdb.ErrReadOnly)
}

// Managed reports whether the default schema is used (the Manager
// methods work).
func (d *DB) Managed() bool { return d.managed }

func (d *DB) ph(n int) string {
	if d.dialect == Postgres {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

func isDuplicate(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1062
	}
	return false
}

// AddUser implements userdb.Manager (default schema only; else
// ErrReadOnly).
func (d *DB) AddUser(ctx context.Context, address, pw string) error {
	if !d.managed {
		return d.readOnly("add user")
	}
	address = d.policy.Normalize(address)
	if err := userdb.ValidateAddress(address); err != nil {
		return fmt.Errorf("sqldb: add user: %w", err)
	}
	hash, err := d.hasher(pw)
	if err != nil {
		return fmt.Errorf("sqldb: add user %s: %w", address, err)
	}
	if err := d.ensureSchema(ctx); err != nil {
		return err
	}
	_, err = d.db.ExecContext(ctx, fmt.Sprintf("INSERT INTO bucketmail_users (address, password, quota_bytes, disabled, created) VALUES (%s, %s, 0, FALSE, %s)",
		d.ph(1), d.ph(2), d.ph(3)), address, hash, time.Now().Unix())
	if isDuplicate(err) {
		return fmt.Errorf("sqldb: add user %s: %w", address, userdb.ErrExists)
	}
	if err != nil {
		return unavailable("add user", address, err)
	}
	return nil
}

func (d *DB) update(ctx context.Context, op, address, q string, args ...any) error {
	if !d.managed {
		return d.readOnly(op)
	}
	if err := d.ensureSchema(ctx); err != nil {
		return err
	}
	res, err := d.db.ExecContext(ctx, q, args...)
	if err != nil {
		return unavailable(op, address, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return unavailable(op, address, err)
	}
	if n == 0 {
		return fmt.Errorf("sqldb: %s %s: %w", op, address, userdb.ErrNotFound)
	}
	return nil
}

// SetPassword implements userdb.Manager.
func (d *DB) SetPassword(ctx context.Context, address, pw string) error {
	if !d.managed {
		return d.readOnly("set password")
	}
	address = d.policy.Normalize(address)
	hash, err := d.hasher(pw)
	if err != nil {
		return fmt.Errorf("sqldb: set password %s: %w", address, err)
	}
	return d.update(ctx, "set password", address,
		fmt.Sprintf("UPDATE bucketmail_users SET password = %s WHERE address = %s", d.ph(1), d.ph(2)), hash, address)
}

// DeleteUser implements userdb.Manager.
func (d *DB) DeleteUser(ctx context.Context, address string) error {
	address = d.policy.Normalize(address)
	return d.update(ctx, "delete user", address, "DELETE FROM bucketmail_users WHERE address = "+d.ph(1), address)
}

// ListUsers implements userdb.Manager: every user, sorted by address
// (byte order, whatever the database's collation).
func (d *DB) ListUsers(ctx context.Context) ([]userdb.User, error) {
	if !d.managed {
		return nil, d.readOnly("list users")
	}
	if err := d.ensureSchema(ctx); err != nil {
		return nil, err
	}
	rows, err := d.db.QueryContext(ctx, "SELECT address, quota_bytes, disabled FROM bucketmail_users")
	if err != nil {
		return nil, unavailable("list users", "", err)
	}
	defer rows.Close()
	var out []userdb.User
	for rows.Next() {
		var u userdb.User
		if err := rows.Scan(&u.Address, &u.QuotaBytes, &u.Disabled); err != nil {
			return nil, unavailable("list users", "", err)
		}
		u.Account = u.Address
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("list users", "", err)
	}
	slices.SortFunc(out, func(a, b userdb.User) int { return strings.Compare(a.Address, b.Address) })
	return out, nil
}
