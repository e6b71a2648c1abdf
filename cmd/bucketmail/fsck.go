package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/config"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/userdb"
)

// defaultGrace keeps objects younger than this out of the orphan list: a
// delivery in progress has Put its object but not yet committed its row.
const defaultGrace = 24 * time.Hour

// errFsckProblems: fsck found problems that remain after it finished
// (exit status 1).
var errFsckProblems = errors.New("fsck: problems remain")

// cmdFsck compares the index with the blob store (the bucket in S3 mode).
// It prints one line per problem and a summary:
//
//	orphan KEY SIZE MODTIME            an object no index row refers to, older than --grace
//	deleted orphan KEY                 with --repair, after deleting it
//	missing ACCOUNT KEY SIZE MESSAGES  an index entry whose object is gone (reported, never repaired:
//	                                   FETCH answers NO for those messages; restore the object or expunge them)
//	unindexed ACCOUNT OBJECTS          the bucket holds mail of an account the index does not know but
//	                                   the user database does (a lost index: run reindex; never repaired)
//
// Objects of an account that neither the index nor the user database
// knows (a user deleted while its mail could not all be deleted) are
// orphans like any other.
//
// An orphan is judged by the index alone: after the index was lost or
// restored from an old copy, run reindex first, or --repair deletes mail
// that a reindex would have placed again. It runs beside a live serve (it
// does not open the read cache). The exit
// status is 0 when nothing is wrong (or every orphan was deleted with
// --repair), 1 when problems remain or the store could not be checked.
func cmdFsck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fsck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := config.RegisterFlags(fs, false)
	repair := fs.Bool("repair", false, "delete orphaned objects (missing objects are only reported)")
	grace := fs.Duration("grace", defaultGrace, "ignore orphaned objects younger than this `duration`")
	workers := fs.Int("workers", mailstore.DefaultFsckWorkers, "objects checked at once")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: fsck takes no arguments, got %q", errUsage, pos)
	}
	if *grace < 0 {
		return fmt.Errorf("%w: fsck: --grace must not be negative", errUsage)
	}
	cfg, err := flags.Load()
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	e, err := openEnv(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer e.Close()

	var orphans, deleted, missing int
	accounts, err := e.store.Accounts(ctx)
	if err != nil {
		return err
	}
	indexed := make(map[string]bool, len(accounts))
	for _, a := range accounts {
		indexed[a] = true
	}
	inBucket, err := mailstore.BucketAccounts(ctx, e.blobs)
	if err != nil {
		return err
	}
	var unindexed int
	for _, acct := range inBucket {
		if indexed[acct] {
			continue
		}
		_, err := e.users.Lookup(ctx, acct)
		if err == nil {
			var n int
			if err := e.store.Orphans(ctx, acct, 0, func(blob.Attrs) error { n++; return nil }); err != nil {
				return err
			}
			unindexed++
			fmt.Fprintf(stdout, "unindexed %s %d\n", acct, n)
			continue
		}
		if !errors.Is(err, userdb.ErrNotFound) {
			return fmt.Errorf("fsck: account %s: %w", acct, err)
		}
		accounts = append(accounts, acct) // a deleted user's leftovers: orphans
	}
	for _, acct := range accounts {
		var keys []blob.Attrs
		err := e.store.Orphans(ctx, acct, *grace, func(a blob.Attrs) error {
			keys = append(keys, a)
			return nil
		})
		if err != nil {
			return err
		}
		for _, a := range keys {
			orphans++
			fmt.Fprintf(stdout, "orphan %s %d %s\n", a.Key, a.Size, a.ModTime.UTC().Format(time.RFC3339))
			if !*repair {
				continue
			}
			if err := e.blobs.Delete(ctx, a.Key); err != nil && !errors.Is(err, blob.ErrNotFound) {
				return fmt.Errorf("fsck: delete orphan: %w", err)
			}
			deleted++
			fmt.Fprintf(stdout, "deleted orphan %s\n", a.Key)
		}
	}
	checked, err := e.store.MissingObjects(ctx, *workers, func(m mailstore.MissingObject) error {
		missing++
		fmt.Fprintf(stdout, "missing %s %s %d %d\n", m.Account, m.Key, m.Size, m.Messages)
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fsck: %d accounts, %d objects referenced by the index checked; %d missing; %d orphans older than %s (%d deleted); %d accounts not in the index\n",
		len(accounts), checked, missing, orphans, *grace, deleted, unindexed)
	if missing > 0 || orphans > deleted || unindexed > 0 {
		return errFsckProblems
	}
	return nil
}
