// Package embedded is the default user database: a users table in the
// same SQLite file as the mail index (internal/metadb).
//
// Schema (component "userdb" in metadb's schema_version):
//
//	users(address TEXT PRIMARY KEY,   -- normalised (WithPolicy), also the account name
//	      password TEXT NOT NULL,     -- Dovecot "{SCHEME}..." hash (userdb/password)
//	      quota_bytes INTEGER,        -- 0: no limit
//	      disabled INTEGER,           -- 1: no login (delivery is the caller's choice)
//	      created INTEGER)            -- unix seconds
//
// New passwords are hashed with ARGON2ID (password.Hash) unless
// WithHasher says otherwise; any scheme password.Verify knows is accepted,
// so hashes copied from a Dovecot user table work unchanged.
//
// Authentication spends the same work for an unknown user as for a known
// one (a dummy hash is verified) and reports both, a wrong password and a
// disabled user as userdb.ErrAuthFailed. At most GOMAXPROCS hash
// verifications run at once, so a burst of logins cannot exhaust memory
// (ARGON2ID takes 64 MiB each).
package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
)

// Migrations of the "userdb" component.
var Migrations = []string{
	`CREATE TABLE IF NOT EXISTS users (
		address     TEXT PRIMARY KEY NOT NULL,
		password    TEXT NOT NULL,
		quota_bytes INTEGER NOT NULL DEFAULT 0,
		disabled    INTEGER NOT NULL DEFAULT 0,
		created     INTEGER NOT NULL
	) WITHOUT ROWID`,
}

// DB is the embedded user database. It implements userdb.PassDB,
// userdb.UserDB and userdb.Manager and is safe for concurrent use.
type DB struct {
	db     *sql.DB
	hasher password.Hasher
	check  *password.Checker // verification slots and the dummy hash
	policy userdb.AddressPolicy

	bucket blob.Store // WithBucket: account records mirrored (bucket.go)
}

var (
	_ userdb.PassDB  = (*DB)(nil)
	_ userdb.UserDB  = (*DB)(nil)
	_ userdb.Manager = (*DB)(nil)
)

// Option configures New.
type Option func(*DB)

// WithHasher sets how new passwords are hashed (default password.Hash,
// ARGON2ID with Dovecot's parameters). Tests use cheap parameters.
func WithHasher(h password.Hasher) Option { return func(d *DB) { d.hasher = h } }

// WithPolicy sets how addresses are made canonical (default: the zero
// userdb.AddressPolicy, lower-cased and NFC). Addresses are stored in that
// form, so a database must keep its policy.
func WithPolicy(p userdb.AddressPolicy) Option { return func(d *DB) { d.policy = p } }

// New creates the users table if needed (metadb.Migrate, component
// "userdb") and returns the database. db is typically from
// metadb.OpenSQLite; the caller keeps ownership and closes it.
func New(ctx context.Context, db *sql.DB, opts ...Option) (*DB, error) {
	if err := metadb.Migrate(ctx, db, "userdb", Migrations); err != nil {
		return nil, fmt.Errorf("userdb: open: %w", err)
	}
	d := &DB{db: db, hasher: password.Hash}
	for _, o := range opts {
		o(d)
	}
	d.check = password.NewChecker(d.hasher)
	return d, nil
}

// unavailable wraps a database error as temporary.
func unavailable(op, address string, err error) error {
	return fmt.Errorf("userdb: %s %s: %w: %w", op, address, userdb.ErrUnavailable, err)
}

// Authenticate implements userdb.PassDB.
func (d *DB) Authenticate(ctx context.Context, address, pw string) (*userdb.User, error) {
	return userdb.AuthenticateStored(ctx, d.check, d.policy.Normalize(address), pw, d.get)
}

// Lookup implements userdb.UserDB. A disabled user is returned with
// Disabled set.
func (d *DB) Lookup(ctx context.Context, address string) (*userdb.User, error) {
	u, _, err := d.get(ctx, d.policy.Normalize(address))
	return u, err
}

func (d *DB) get(ctx context.Context, address string) (*userdb.User, string, error) {
	var (
		hash     string
		quota    int64
		disabled bool
	)
	err := d.db.QueryRowContext(ctx, `SELECT password, quota_bytes, disabled FROM users WHERE address = ?`, address).
		Scan(&hash, &quota, &disabled)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", fmt.Errorf("userdb: lookup %s: %w", address, userdb.ErrNotFound)
	}
	if err != nil {
		return nil, "", unavailable("lookup", address, err)
	}
	return &userdb.User{Address: address, Account: address, QuotaBytes: quota, Disabled: disabled}, hash, nil
}

// AddUser implements userdb.Manager.
func (d *DB) AddUser(ctx context.Context, address, pw string) error {
	address = d.policy.Normalize(address)
	if err := userdb.ValidateAddress(address); err != nil {
		return fmt.Errorf("userdb: add %s: %w", address, err)
	}
	hash, err := d.hasher(pw)
	if err != nil {
		return fmt.Errorf("userdb: add %s: %w", address, err)
	}
	res, err := d.db.ExecContext(ctx, `INSERT INTO users (address, password, quota_bytes, disabled, created)
		VALUES (?, ?, 0, 0, ?) ON CONFLICT (address) DO NOTHING`, address, hash, time.Now().Unix())
	if err != nil {
		return unavailable("add", address, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return unavailable("add", address, err)
	} else if n == 0 {
		return fmt.Errorf("userdb: add %s: %w", address, userdb.ErrExists)
	}
	return d.mirror(ctx, "add", address, nil)
}

// update runs an UPDATE of one user; ErrNotFound if no row matched.
func (d *DB) update(ctx context.Context, op, address, query string, args ...any) error {
	res, err := d.db.ExecContext(ctx, query, append(args, address)...)
	if err != nil {
		return unavailable(op, address, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return unavailable(op, address, err)
	} else if n == 0 {
		return fmt.Errorf("userdb: %s %s: %w", op, address, userdb.ErrNotFound)
	}
	return nil
}

// SetPassword implements userdb.Manager.
func (d *DB) SetPassword(ctx context.Context, address, pw string) error {
	address = d.policy.Normalize(address)
	hash, err := d.hasher(pw)
	if err != nil {
		return fmt.Errorf("userdb: passwd %s: %w", address, err)
	}
	return d.mirror(ctx, "passwd", address, d.update(ctx, "passwd", address, `UPDATE users SET password = ? WHERE address = ?`, hash))
}

// SetPasswordHash stores an already hashed password ("{SCHEME}...", as
// Dovecot's passdb holds it), e.g. when migrating users from Dovecot.
// ErrNotFound if no such user.
func (d *DB) SetPasswordHash(ctx context.Context, address, hash string) error {
	address = d.policy.Normalize(address)
	return d.mirror(ctx, "passwd", address, d.update(ctx, "passwd", address, `UPDATE users SET password = ? WHERE address = ?`, hash))
}

// SetDisabled enables or disables login. ErrNotFound if no such user.
func (d *DB) SetDisabled(ctx context.Context, address string, disabled bool) error {
	address = d.policy.Normalize(address)
	return d.mirror(ctx, "disable", address, d.update(ctx, "disable", address, `UPDATE users SET disabled = ? WHERE address = ?`, disabled))
}

// SetQuota sets the quota in bytes (0: no limit). ErrNotFound if no such user.
func (d *DB) SetQuota(ctx context.Context, address string, bytes int64) error {
	if bytes < 0 {
		return fmt.Errorf("userdb: quota %s: negative quota %d", address, bytes)
	}
	address = d.policy.Normalize(address)
	return d.mirror(ctx, "quota", address, d.update(ctx, "quota", address, `UPDATE users SET quota_bytes = ? WHERE address = ?`, bytes))
}

// DeleteUser implements userdb.Manager.
func (d *DB) DeleteUser(ctx context.Context, address string) error {
	address = d.policy.Normalize(address)
	res, err := d.db.ExecContext(ctx, `DELETE FROM users WHERE address = ?`, address)
	if err != nil {
		return unavailable("delete", address, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return unavailable("delete", address, err)
	} else if n == 0 {
		return fmt.Errorf("userdb: delete %s: %w", address, userdb.ErrNotFound)
	}
	return d.mirror(ctx, "delete", address, nil)
}

// ListUsers implements userdb.Manager: every user sorted by address.
func (d *DB) ListUsers(ctx context.Context) ([]userdb.User, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT address, quota_bytes, disabled FROM users ORDER BY address`)
	if err != nil {
		return nil, unavailable("list", "", err)
	}
	defer rows.Close()
	var out []userdb.User
	for rows.Next() {
		var u userdb.User
		if err := rows.Scan(&u.Address, &u.QuotaBytes, &u.Disabled); err != nil {
			return nil, unavailable("list", "", err)
		}
		u.Account = u.Address
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("list", "", err)
	}
	return out, nil
}
