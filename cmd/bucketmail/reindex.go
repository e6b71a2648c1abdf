package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/bucketmail/bucketmail/internal/config"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/embedded"
)

// cmdReindex implements
//
//	bucketmail reindex [--user ADDRESS | --all] [--dry-run] [--force]
//
// It rebuilds the index of one account (--user) or of every account in
// the bucket (--all; in S3 mode also the user records under accounts/)
// from the bucket alone: snapshot + journal + HEAD of uncovered message
// objects, no message body downloaded (mailstore.Reindex). The account's
// index rows are replaced. --dry-run reads and reports, writes nothing.
//
// Run it with every server stopped: a delivery or change made while an
// account's rows are replaced is lost from the index (its object becomes
// an fsck orphan) and mailboxes get a new UIDVALIDITY. So reindex
// (without --dry-run) refuses, with errServerRunning, while a serve
// answers on DATA_DIR/control.sock; and with metadb = postgres, where
// servers on other machines share the index and cannot be seen from
// here, it refuses unless --force says every server was stopped.
func cmdReindex(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reindex", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := config.RegisterFlags(fs, false)
	user := fs.String("user", "", "`address` of the account to rebuild")
	all := fs.Bool("all", false, "rebuild every account found in the bucket")
	dry := fs.Bool("dry-run", false, "read the bucket and report; change nothing")
	force := fs.Bool("force", false, "with metadb = postgres: every server sharing the index has been stopped")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || (*user == "") == !*all {
		return fmt.Errorf("%w: reindex needs exactly one of --user ADDRESS or --all", errUsage)
	}
	cfg, err := flags.Load()
	if err != nil {
		return err
	}
	if !*dry {
		if err := reindexAllowed(cfg, *force); err != nil {
			return err
		}
	}
	log := newLogger(cfg, stderr)
	e, err := openEnv(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer e.Close()
	var accounts []string
	if *all {
		if accounts, err = bucketAccounts(ctx, e, *dry, stdout); err != nil {
			return err
		}
	} else {
		accounts = []string{e.policy.Normalize(*user)}
	}
	return reindexAccounts(ctx, e, accounts, *dry, stdout, log)
}

// errServerRunning: reindex would rebuild an index that a running
// server changes (cmdReindex).
var errServerRunning = errors.New("reindex: a server may be running")

// reindexAllowed refuses a reindex while a serve answers on the data
// directory's control socket, and, with a shared PostgreSQL index,
// unless force (the operator stopped every server). Errors wrap
// errServerRunning.
func reindexAllowed(cfg config.Config, force bool) error {
	path := filepath.Join(cfg.DataDir, controlSocketName)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%w: a server is running on data directory %s (%s answers); stop it first: "+
			"changes made while the index is rebuilt would be lost from it", errServerRunning, cfg.DataDir, path)
	}
	if cfg.MetaDBKind() == "postgres" && !force {
		return fmt.Errorf("%w: metadb = postgres is shared by servers this command cannot see; "+
			"stop every server first, then run reindex again with --force", errServerRunning)
	}
	return nil
}

// bucketAccounts returns every account with objects in the bucket, and,
// in S3 mode, restores user records from it (not with dryRun).
func bucketAccounts(ctx context.Context, e *env, dryRun bool, out io.Writer) ([]string, error) {
	accounts, err := mailstore.BucketAccounts(ctx, e.blobs)
	if err != nil {
		return nil, err
	}
	if e.cfg.S3Enabled() && e.cfg.UserDB.Kind() == config.UserDBSQLite && !dryRun {
		u, err := embedded.New(ctx, e.db, embedded.WithBucket(e.blobs), embedded.WithPolicy(e.policy))
		if err != nil {
			return nil, err
		}
		added, err := u.RestoreFromBucket(ctx)
		if err != nil {
			return nil, err
		}
		for _, a := range added {
			fmt.Fprintf(out, "user %s restored from the bucket\n", a)
		}
	}
	return accounts, nil
}

// rebuildLockKey is the PostgreSQL advisory lock key under which a server
// checks for an empty shared index and rebuilds it (prepareIndex).
const rebuildLockKey int64 = 0x626d7269 // "bmri"

func reindexAccounts(ctx context.Context, e *env, accounts []string, dryRun bool, out io.Writer, log *slog.Logger) error {
	var failed []string
	for _, a := range accounts {
		start := time.Now()
		st, err := e.store.Reindex(ctx, a, dryRun)
		if err != nil {
			log.Error("reindex failed", "account", a, "err", err)
			failed = append(failed, a)
			continue
		}
		verb := "rebuilt"
		if dryRun {
			verb = "would rebuild"
		}
		fmt.Fprintf(out, "%s %s: %d mailboxes, %d messages (snapshot %d, %d journal objects, %d placed from object metadata, "+
			"%d HEAD, %d GET, %d skipped as expunged, %d records without object) in %s\n",
			verb, a, st.Mailboxes, st.Messages, st.Snapshot, st.Journals, st.Placed, st.Heads, st.Gets, st.Skipped, st.Missing,
			time.Since(start).Round(time.Millisecond))
		for _, n := range st.NewValidity {
			fmt.Fprintf(out, "  mailbox %q: UIDs could not be proven; new UIDVALIDITY\n", n)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("reindex failed for %d of %d accounts: %q", len(failed), len(accounts), failed)
	}
	return nil
}

// prepareIndex runs before serve accepts connections: on an index with
// no mail account, it rebuilds from the bucket whatever the bucket holds
// (user records in S3 mode, keeping users already in the index, then
// every account's mail), and it starts the bucket journal. In S3 mode every user record is written to
// the bucket (records of users added before, or while the bucket was
// unreachable). A rebuild that fails stops the start with the reason.
//
// With a shared PostgreSQL index (--metadb postgres://…) several servers
// may start at once: the check and the rebuild run under a session-level
// advisory lock (pg_advisory_lock(rebuildLockKey)), so one server
// rebuilds and the others, finding the index no longer empty once they
// get the lock, skip it.
func prepareIndex(ctx context.Context, e *env, log *slog.Logger) error {
	if metadb.DialectOf(e.db) == metadb.Postgres {
		conn, err := e.db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("index: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, rebuildLockKey); err != nil {
			return fmt.Errorf("index: rebuild lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, rebuildLockKey)
	}
	var indexed int
	if err := e.db.QueryRowContext(ctx, `SELECT count(*) FROM accounts`).Scan(&indexed); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	var u *embedded.DB
	// Only the embedded user database keeps its records in the bucket.
	if e.cfg.S3Enabled() && e.cfg.UserDB.Kind() == config.UserDBSQLite {
		var err error
		if u, err = embedded.New(ctx, e.db, embedded.WithBucket(e.blobs), embedded.WithPolicy(e.policy)); err != nil {
			return err
		}
	}
	if indexed == 0 {
		accounts, err := mailstore.BucketAccounts(ctx, e.blobs)
		if err != nil {
			return fmt.Errorf("empty index; cannot list the bucket to rebuild it (run bucketmail reindex --all when it answers): %w", err)
		}
		if len(accounts) > 0 || u != nil {
			log.Info("empty index: rebuilding from the bucket before accepting logins", "accounts", len(accounts))
			if u != nil {
				added, err := u.RestoreFromBucket(ctx)
				if err != nil {
					return fmt.Errorf("empty index; restoring users from the bucket: %w", err)
				}
				log.Info("users restored from the bucket", "users", len(added))
			}
			if err := reindexAccounts(ctx, e, accounts, false, io.Discard, log); err != nil {
				return fmt.Errorf("empty index; rebuilding from the bucket: %w", err)
			}
			log.Info("index rebuilt from the bucket", "accounts", len(accounts))
		}
	}
	if u != nil {
		if err := u.SyncToBucket(ctx); err != nil && !errors.Is(err, userdb.ErrUnavailable) {
			return err
		} else if err != nil {
			log.Warn("user records not written to the bucket; retried at the next start", "err", err)
		}
	}
	// journal.interval: how often batched changes (flags, keywords) go
	// to the bucket journal, i.e. what a crash can lose (package
	// internal/journal, docs/operations.md).
	return e.store.StartJournal(ctx, e.cfg.Journal.Interval)
}
