// Package redis is a user database kept in Redis: one hash per user.
//
// Key layout (Options.KeyTemplate, default "bucketmail:user:{address}";
// "{address}" is replaced by the address normalised under Options.Policy):
//
//	HSET bucketmail:user:alice@example.org \
//	     password    "{ARGON2ID}$argon2id$..."  # Dovecot {SCHEME} hash (userdb/password); missing: no login
//	     account     "alice@example.org"        # mail store key; missing or empty: the address
//	     quota_bytes "1073741824"               # decimal bytes; missing, empty or 0: no limit
//	     disabled    "0"                        # "1"/"true"/"yes": no login; missing: enabled
//
// A key that does not exist is an unknown user. Any hash scheme
// password.Verify knows is accepted, so hashes written by other tools
// (doveadm pw) work; new passwords are hashed with ARGON2ID unless
// Options.Hasher says otherwise.
//
// The dsn is go-redis's URL form: "redis://[user:password@]host:port/db"
// ("rediss://" for TLS), e.g. redis://127.0.0.1:6379/0. Options beyond the
// URL (the key template) come from the TOML file.
//
// Errors: a Redis that cannot be reached, or answers with an error, gives
// userdb.ErrUnavailable, never ErrAuthFailed or ErrNotFound. Writes are
// single Lua scripts (EVAL), so AddUser of a taken address and updates of
// a missing one are atomic. ListUsers SCANs the template's prefix
// ("bucketmail:user:*"), so the template must put "{address}" after a
// fixed prefix that no other keys use.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
)

// DefaultKeyTemplate is the key of a user's hash when Options.KeyTemplate
// is empty.
const DefaultKeyTemplate = "bucketmail:user:{address}"

// Hash field names.
const (
	FieldPassword = "password"
	FieldAccount  = "account"
	FieldQuota    = "quota_bytes"
	FieldDisabled = "disabled"
)

// ErrConfig: a bad dsn or key template.
var ErrConfig = errors.New("userdb/redis: bad configuration")

// Options are the settings beyond the dsn. The zero value is the default.
type Options struct {
	// KeyTemplate is the key of a user's hash; it must contain
	// "{address}" exactly once. Default DefaultKeyTemplate.
	KeyTemplate string `toml:"key_template"`
	// Hasher hashes new passwords (default password.Hash, ARGON2ID).
	Hasher password.Hasher `toml:"-"`
	// Timeout bounds each Redis dial, read and write (default 3s).
	Timeout time.Duration `toml:"timeout"`
	// Policy: how addresses are made canonical (default: the zero
	// userdb.AddressPolicy, lower-cased and NFC); keys hold that form.
	Policy userdb.AddressPolicy `toml:"-"`
}

// DB is a Redis user database. It implements userdb.PassDB, userdb.UserDB
// and userdb.Manager and is safe for concurrent use. Close it when done.
type DB struct {
	client         *goredis.Client
	prefix, suffix string // KeyTemplate split at "{address}"
	hasher         password.Hasher
	log            *slog.Logger
	check          *password.Checker // verification slots and the dummy hash
	policy         userdb.AddressPolicy
}

var (
	_ userdb.PassDB  = (*DB)(nil)
	_ userdb.UserDB  = (*DB)(nil)
	_ userdb.Manager = (*DB)(nil)
)

// Open connects to the Redis in dsn with default Options. It does not
// contact the server: a Redis that is down shows as ErrUnavailable on use.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*DB, error) {
	return OpenOptions(ctx, dsn, Options{}, logger)
}

// OpenOptions is Open with options from the TOML file. ErrConfig for a
// dsn go-redis cannot parse or a template without "{address}".
func OpenOptions(ctx context.Context, dsn string, o Options, logger *slog.Logger) (*DB, error) {
	ropts, err := goredis.ParseURL(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: dsn: %w", ErrConfig, err)
	}
	tmpl := o.KeyTemplate
	if tmpl == "" {
		tmpl = DefaultKeyTemplate
	}
	if strings.Count(tmpl, "{address}") != 1 {
		return nil, fmt.Errorf("%w: key template %q must contain {address} once", ErrConfig, tmpl)
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	ropts.DialTimeout, ropts.ReadTimeout, ropts.WriteTimeout = o.Timeout, o.Timeout, o.Timeout
	// A Redis that is down answers ErrUnavailable at once: one retry of a
	// command, one dial per attempt (go-redis defaults to 3 and 5).
	ropts.MaxRetries, ropts.DialerRetries = 1, 1
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	i := strings.Index(tmpl, "{address}")
	d := &DB{
		client: goredis.NewClient(ropts),
		prefix: tmpl[:i],
		suffix: tmpl[i+len("{address}"):],
		hasher: o.Hasher,
		log:    logger,

		policy: o.Policy,
	}
	if d.hasher == nil {
		d.hasher = password.Hash
	}
	d.check = password.NewChecker(d.hasher)
	return d, nil
}

// Close closes the connection pool.
func (d *DB) Close() error { return d.client.Close() }

// Key returns the key of address's hash (address normalised first).
func (d *DB) Key(address string) string { return d.prefix + d.policy.Normalize(address) + d.suffix }

// fail wraps a Redis error: the context's own error as is, else
// ErrUnavailable.
func fail(ctx context.Context, op, address string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("userdb: %s %s: %w", op, address, ctxErr)
	}
	return fmt.Errorf("userdb: %s %s: %w: %w", op, address, userdb.ErrUnavailable, err)
}

// get reads a user and its stored hash ("" if none).
func (d *DB) get(ctx context.Context, address string) (*userdb.User, string, error) {
	m, err := d.client.HGetAll(ctx, d.prefix+address+d.suffix).Result()
	if err != nil {
		return nil, "", fail(ctx, "lookup", address, err)
	}
	if len(m) == 0 {
		return nil, "", fmt.Errorf("userdb: lookup %s: %w", address, userdb.ErrNotFound)
	}
	u, err := d.parse(address, m)
	if err != nil {
		return nil, "", err
	}
	return u, m[FieldPassword], nil
}

// parse makes a User of a hash's fields. A malformed quota is an error
// naming the key (the record is broken, not the backend down).
func (d *DB) parse(address string, m map[string]string) (*userdb.User, error) {
	u := &userdb.User{Address: address, Account: m[FieldAccount]}
	if u.Account == "" {
		u.Account = address
	}
	if q := m[FieldQuota]; q != "" {
		n, err := strconv.ParseInt(q, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("userdb: lookup %s: bad %s %q in %s", address, FieldQuota, q, d.prefix+address+d.suffix)
		}
		u.QuotaBytes = n
	}
	switch strings.ToLower(m[FieldDisabled]) {
	case "1", "true", "yes", "y", "on":
		u.Disabled = true
	}
	return u, nil
}

// Authenticate implements userdb.PassDB. Unknown user, wrong password, a
// missing or unreadable hash and a disabled user are all ErrAuthFailed.
func (d *DB) Authenticate(ctx context.Context, address, pw string) (*userdb.User, error) {
	return userdb.AuthenticateStored(ctx, d.check, d.policy.Normalize(address), pw, d.get)
}

// Lookup implements userdb.UserDB. A disabled user is returned with
// Disabled set; ErrNotFound if the key does not exist.
func (d *DB) Lookup(ctx context.Context, address string) (*userdb.User, error) {
	u, _, err := d.get(ctx, d.policy.Normalize(address))
	return u, err
}

// addScript creates the hash only if the key does not exist: 1 if
// created, 0 if taken.
var addScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1`)

// updateScript sets fields only if the key exists: 1 if set, 0 if none.
var updateScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1`)

// AddUser implements userdb.Manager: an enabled user with no quota,
// account = address.
func (d *DB) AddUser(ctx context.Context, address, pw string) error {
	address = d.policy.Normalize(address)
	if err := userdb.ValidateAddress(address); err != nil {
		return fmt.Errorf("userdb: add %s: %w", address, err)
	}
	hash, err := d.hasher(pw)
	if err != nil {
		return fmt.Errorf("userdb: add %s: %w", address, err)
	}
	n, err := addScript.Run(ctx, d.client, []string{d.Key(address)},
		FieldPassword, hash, FieldAccount, address, FieldQuota, "0", FieldDisabled, "0").Int()
	if err != nil {
		return fail(ctx, "add", address, err)
	}
	if n == 0 {
		return fmt.Errorf("userdb: add %s: %w", address, userdb.ErrExists)
	}
	return nil
}

// update sets fields of an existing user; ErrNotFound if none.
func (d *DB) update(ctx context.Context, op, address string, fields ...any) error {
	n, err := updateScript.Run(ctx, d.client, []string{d.Key(address)}, fields...).Int()
	if err != nil {
		return fail(ctx, op, address, err)
	}
	if n == 0 {
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
	return d.update(ctx, "passwd", address, FieldPassword, hash)
}

// SetPasswordHash stores an already hashed "{SCHEME}..." password.
// ErrNotFound if no such user.
func (d *DB) SetPasswordHash(ctx context.Context, address, hash string) error {
	return d.update(ctx, "passwd", d.policy.Normalize(address), FieldPassword, hash)
}

// SetDisabled enables or disables login. ErrNotFound if no such user.
func (d *DB) SetDisabled(ctx context.Context, address string, disabled bool) error {
	v := "0"
	if disabled {
		v = "1"
	}
	return d.update(ctx, "disable", d.policy.Normalize(address), FieldDisabled, v)
}

// SetQuota sets the quota in bytes (0: no limit). ErrNotFound if no such user.
func (d *DB) SetQuota(ctx context.Context, address string, bytes int64) error {
	if bytes < 0 {
		return fmt.Errorf("userdb: quota %s: negative quota %d", address, bytes)
	}
	return d.update(ctx, "quota", d.policy.Normalize(address), FieldQuota, strconv.FormatInt(bytes, 10))
}

// DeleteUser implements userdb.Manager (DEL of the user's hash).
func (d *DB) DeleteUser(ctx context.Context, address string) error {
	address = d.policy.Normalize(address)
	n, err := d.client.Del(ctx, d.Key(address)).Result()
	if err != nil {
		return fail(ctx, "delete", address, err)
	}
	if n == 0 {
		return fmt.Errorf("userdb: delete %s: %w", address, userdb.ErrNotFound)
	}
	return nil
}

// ListUsers implements userdb.Manager: SCAN of the template's prefix,
// then HGETALL of each user, sorted by address. Keys under the prefix
// that do not end in the template's suffix are ignored.
func (d *DB) ListUsers(ctx context.Context) ([]userdb.User, error) {
	var addrs []string
	it := d.client.Scan(ctx, 0, globEscape(d.prefix)+"*"+globEscape(d.suffix), 500).Iterator()
	for it.Next(ctx) {
		k := it.Val()
		if len(k) < len(d.prefix)+len(d.suffix) || !strings.HasSuffix(k, d.suffix) {
			continue
		}
		addrs = append(addrs, k[len(d.prefix):len(k)-len(d.suffix)])
	}
	if err := it.Err(); err != nil {
		return nil, fail(ctx, "list", "", err)
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs) // SCAN may return a key twice
	pipe := d.client.Pipeline()
	cmds := make([]*goredis.MapStringStringCmd, len(addrs))
	for i, a := range addrs {
		cmds[i] = pipe.HGetAll(ctx, d.prefix+a+d.suffix)
	}
	if len(addrs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fail(ctx, "list", "", err)
		}
	}
	out := make([]userdb.User, 0, len(addrs))
	for i, a := range addrs {
		m := cmds[i].Val()
		if len(m) == 0 { // deleted since the SCAN
			continue
		}
		u, err := d.parse(a, m)
		if err != nil {
			d.log.Warn("userdb: list: skipping broken record", "key", d.prefix+a+d.suffix, "err", err)
			continue
		}
		out = append(out, *u)
	}
	return out, nil
}

// globEscape escapes Redis MATCH pattern characters.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// LogAdapter routes go-redis's own messages (e.g. "connection pool:
// failed to dial") to an slog.Logger at level Warn. go-redis has only a
// process-wide logger, so the program's main sets it once:
//
//	goredis.SetLogger(redis.LogAdapter{Logger: logger})
//
// Without it go-redis writes to stderr.
type LogAdapter struct{ Logger *slog.Logger }

// Printf implements go-redis's internal.Logging.
func (a LogAdapter) Printf(ctx context.Context, format string, v ...any) {
	a.Logger.WarnContext(ctx, "redis: "+fmt.Sprintf(format, v...), "component", "userdb")
}
