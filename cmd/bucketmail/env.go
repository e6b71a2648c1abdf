package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/blob/fs"
	"github.com/bucketmail/bucketmail/internal/blob/s3"
	"github.com/bucketmail/bucketmail/internal/bus"
	"github.com/bucketmail/bucketmail/internal/cache"
	"github.com/bucketmail/bucketmail/internal/cluster"
	"github.com/bucketmail/bucketmail/internal/config"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/metrics"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/authcache"
	"github.com/bucketmail/bucketmail/internal/userdb/dynamodb"
	"github.com/bucketmail/bucketmail/internal/userdb/embedded"
	"github.com/bucketmail/bucketmail/internal/userdb/passwdfile"
	"github.com/bucketmail/bucketmail/internal/userdb/redis"
	"github.com/bucketmail/bucketmail/internal/userdb/sqldb"
)

// users is what the binary needs of a user database. Writable backends
// also implement userdb.Manager (see manager).
type users interface {
	userdb.PassDB
	userdb.UserDB
}

// manager returns the user database's Manager, or an error wrapping
// userdb.ErrReadOnly that names the backend.
func (e *env) manager() (userdb.Manager, error) {
	if m, ok := e.users.(userdb.Manager); ok {
		if s, ok := e.users.(*sqldb.DB); !ok || s.Managed() {
			return m, nil
		}
	}
	return nil, fmt.Errorf("user database %s: %w: change its users with the tools that own it", e.cfg.UserDB.Redacted(), userdb.ErrReadOnly)
}

// env is the opened data directory (and bucket).
type env struct {
	cfg   config.Config
	log   *slog.Logger
	db    *sql.DB
	store *mailstore.Store
	users users
	// blobs is what the mail store uses: blob/fs, the S3 store, or the
	// read cache in front of the S3 store.
	blobs blob.Store
	// closeUsers closes a networked user database; nil for the others.
	closeUsers func() error
	s3         *s3.Store    // nil without a bucket
	cache      *cache.Cache // nil unless opened with envOptions.cache in S3 mode
	// auth is the auth cache in front of users (envOptions.authCache and
	// auth.cache_max_entries > 0), else nil.
	auth *authcache.Cache
	// bus is the notification bus (--bus); for the CLI with the local
	// bus, a client of serve's control socket (see cluster.go).
	bus bus.Bus
	// node publishes the store's changes on bus (and, in serve, applies
	// other servers' events once started).
	node *cluster.Node
	// metrics is serve's registry (nil for the CLI).
	metrics *metrics.Registry
	// policy is how addresses are normalised (auth.local_part_case,
	// auth.normalize), for every backend, LOGIN, LMTP and the CLI.
	policy userdb.AddressPolicy
	// closing is set when Close starts: the bus's warnings about its
	// connection going away are then expected (closingHandler).
	closing atomic.Bool
}

// closingHandler is the bus's log handler: once closing is set, its
// warnings ("bus: disconnected" err=<nil> from NATS, "listener
// disconnected" from PostgreSQL, which a normal Close causes) are
// logged at debug level instead.
type closingHandler struct {
	h       slog.Handler
	closing *atomic.Bool
}

func (c *closingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return c.h.Enabled(ctx, l)
}

func (c *closingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && c.closing.Load() {
		r.Level = slog.LevelDebug
	}
	if !c.h.Enabled(ctx, r.Level) {
		return nil
	}
	return c.h.Handle(ctx, r)
}

func (c *closingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &closingHandler{h: c.h.WithAttrs(as), closing: c.closing}
}

func (c *closingHandler) WithGroup(name string) slog.Handler {
	return &closingHandler{h: c.h.WithGroup(name), closing: c.closing}
}

// envOptions says what openEnvWith opens besides the defaults.
type envOptions struct {
	// cache puts the read cache ([cache]) in front of the bucket. Only one
	// process may hold the cache directory, so only serve asks for it;
	// other subcommands go to the bucket directly (objects are immutable,
	// so they cannot make the cache stale).
	cache bool
	// usersMayBeDown: a SQL user database that cannot be reached at start
	// is not fatal (serve answers 451 / NO [UNAVAILABLE] until it is
	// back); for the CLI it is.
	usersMayBeDown bool
	// server: this is serve: the bus is the configured one with the
	// node name as origin, the auth cache is built (when configured),
	// metrics are collected. Otherwise the process is a CLI command: its
	// events carry origin "<node_name>/<cli>-<pid>", and with the local
	// bus they go to serve's control socket.
	server bool
	// cli names the CLI command in its origin ("user", "import", …).
	cli string
}

// newLogger builds the logger the config asks for, writing to w.
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	level, _ := cfg.SlogLevel() // Validate checked it
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// openEnv opens the index, the blob store (see openBlobs), the mail store
// and the user database under cfg.DataDir, creating them if missing. No
// read cache.
func openEnv(ctx context.Context, cfg config.Config, log *slog.Logger) (*env, error) {
	return openEnvWith(ctx, cfg, log, envOptions{})
}

// openEnvWith is openEnv with options. Order: metadata database, blob
// store, user database (and auth cache), bus and cluster node, mail
// store (whose OnChange is the node's).
func openEnvWith(ctx context.Context, cfg config.Config, log *slog.Logger, o envOptions) (_ *env, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	db, err := metadb.Open(ctx, cfg.MetaDB, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, log: log, db: db}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if err := e.openBlobs(ctx, o); err != nil {
		return nil, err
	}
	if e.policy, err = userdb.ParseAddressPolicy(cfg.Auth.LocalPartCase, cfg.Auth.Normalize); err != nil {
		return nil, err
	}
	if err := e.openUsers(ctx, o); err != nil {
		return nil, err
	}
	if o.server && cfg.Auth.CacheMaxEntries > 0 {
		e.auth = authcache.New(e.users, authcache.Options{
			MaxEntries:    cfg.Auth.CacheMaxEntries,
			PositiveTTL:   cfg.Auth.CacheTTL,
			NegativeTTL:   cfg.Auth.CacheNegativeTTL,
			BypassContext: userdb.WithConsistentRead,
			Policy:        e.policy,
		})
	}
	if err := e.openCluster(ctx, o); err != nil {
		return nil, err
	}
	store, err := mailstore.Open(ctx, mailstore.Options{
		DB:       db,
		Blobs:    e.blobs,
		SpoolDir: filepath.Join(cfg.DataDir, "spool"),
		Logger:   log,
		OnChange: e.node.OnChange,
	})
	if err != nil {
		return nil, err
	}
	e.store = store
	return e, nil
}

// openCluster opens the bus and the cluster node (see cluster.go).
func (e *env) openCluster(ctx context.Context, o envOptions) error {
	origin := e.cfg.NodeName
	if !o.server {
		name := o.cli
		if name == "" {
			name = "cli"
		}
		origin = fmt.Sprintf("%s/%s-%d", e.cfg.NodeName, name, os.Getpid())
	}
	busLog := slog.New(&closingHandler{h: e.log.Handler(), closing: &e.closing}).With("component", "bus")
	b, err := openBus(ctx, e.cfg, origin, !o.server, busLog)
	if err != nil {
		return err
	}
	e.bus = b
	if o.server {
		e.metrics = metrics.New()
	}
	n, err := cluster.New(cluster.Options{
		Bus:               b,
		Node:              origin,
		Auth:              e.auth,
		Cache:             e.cache,
		Metrics:           e.metrics,
		PollInterval:      e.cfg.Cluster.PollInterval,
		ConsistencyWindow: e.cfg.Cluster.ConsistencyWindow,
		// The bus in every line of the Node (a "bus: down" line says
		// which bus; the password masked).
		Logger: e.log.With("bus", e.cfg.RedactedBus()),
	})
	if err != nil {
		return err
	}
	e.node = n
	return nil
}

// openUsers opens the user database cfg.UserDB names (--userdb).
func (e *env) openUsers(ctx context.Context, o envOptions) error {
	u := e.cfg.UserDB
	log := e.log.With("component", "userdb")
	switch u.Kind() {
	case "sqlite":
		// In S3 mode every user record is mirrored to accounts/<address>
		// in the bucket, so that a server started on an empty disk gets
		// its users back (reindex --all, serve on an empty index).
		var uopts []embedded.Option
		if e.cfg.S3Enabled() {
			uopts = append(uopts, embedded.WithBucket(e.blobs))
		}
		d, err := embedded.New(ctx, e.db, append(uopts, embedded.WithPolicy(e.policy))...)
		if err != nil {
			return err
		}
		e.users = d
	case "passwd-file":
		d, err := passwdfile.Open(ctx, u.URL, log, passwdfile.WithPolicy(e.policy))
		if err != nil {
			return err
		}
		e.users = d
	case "postgres", "mysql":
		d, err := sqldb.OpenWith(ctx, u.URL, sqldb.Options{PasswordQuery: u.PasswordQuery, UserQuery: u.UserQuery, StartDown: o.usersMayBeDown, Policy: e.policy}, log)
		if err != nil {
			return err
		}
		e.users, e.closeUsers = d, d.Close
	case "redis":
		d, err := redis.OpenOptions(ctx, u.URL, redis.Options{KeyTemplate: u.KeyTemplate, Timeout: u.Timeout, Policy: e.policy}, log)
		if err != nil {
			return err
		}
		e.users, e.closeUsers = d, d.Close
	case "dynamodb":
		d, err := dynamodb.OpenOptions(ctx, u.URL, dynamodb.Options{Region: u.Region, ConsistentRead: u.ConsistentRead, MaxAttempts: u.MaxAttempts, Policy: e.policy}, log)
		if err != nil {
			return err
		}
		e.users = d
	default:
		return fmt.Errorf("userdb: unknown backend %q", u.Redacted())
	}
	return nil
}

// openBlobs opens the blob store: the bucket when s3.bucket is set (with
// the read cache in front when o.cache), else blob/fs under
// data_dir/blobs. A bucket that cannot be reached now is not fatal: the
// server starts, deliveries answer 451 until it is back. A bucket that
// answers with an error (missing, access denied, bad certificate) is.
func (e *env) openBlobs(ctx context.Context, o envOptions) error {
	if !e.cfg.S3Enabled() {
		b, err := fs.New(filepath.Join(e.cfg.DataDir, "blobs"))
		if err != nil {
			return err
		}
		e.blobs = b
		return nil
	}
	sc := e.cfg.S3
	if sc.SpoolDir == "" {
		sc.SpoolDir = filepath.Join(e.cfg.DataDir, "spool")
		if err := os.MkdirAll(sc.SpoolDir, 0o700); err != nil {
			return fmt.Errorf("spool dir: %w", err)
		}
	}
	st, err := s3.New(ctx, sc, e.log.With("component", "s3"))
	if errors.Is(err, blob.ErrUnavailable) {
		e.log.Warn("s3: bucket unreachable at start; continuing, deliveries are deferred (451) until it answers", "err", err)
		sc.SkipBucketCheck = true
		st, err = s3.New(ctx, sc, e.log.With("component", "s3"))
	}
	if err != nil {
		return err
	}
	e.s3, e.blobs = st, st
	if !o.cache {
		return nil
	}
	c, err := cache.Open(ctx, cache.Config{Dir: e.cfg.Cache.Dir, MaxBytes: e.cfg.Cache.MaxBytes, Policy: e.cfg.Cache.Policy},
		st, e.log.With("component", "cache"))
	if err != nil {
		st.Close()
		return err
	}
	e.cache, e.blobs = c, c
	return nil
}

func (e *env) closeBlobs() error {
	var errs []error
	if e.cache != nil {
		errs = append(errs, e.cache.Close())
	}
	if e.s3 != nil {
		errs = append(errs, e.s3.Close())
	}
	return errors.Join(errs...)
}

// Close closes what was opened: the node (it stops handling other
// servers' events; events still queued are published for up to 5 s),
// the store, the bus, the user database, the blob store and the metadata
// database. The caller has stopped everything that changes the store.
func (e *env) Close() error {
	e.closing.Store(true)
	var errs []error
	if e.node != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, e.node.Close(ctx))
		cancel()
	}
	if e.store != nil {
		errs = append(errs, e.store.Close())
	}
	if e.bus != nil {
		errs = append(errs, e.bus.Close())
	}
	if e.closeUsers != nil {
		errs = append(errs, e.closeUsers())
	}
	errs = append(errs, e.closeBlobs(), e.db.Close())
	return errors.Join(errs...)
}
