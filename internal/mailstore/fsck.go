package mailstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
)

// Orphans calls fn for every message object of account that no index row
// refers to and that is older than minAge: objects left by a crash
// between Put and the index commit, by an Append that failed after its
// Put, or by a failed delete. minAge keeps in-flight Appends (Put done,
// row not yet committed) out; an hour is plenty. fn may delete the
// object. The walk is in key order; an error from fn stops it.
func (s *Store) Orphans(ctx context.Context, account string, minAge time.Duration, fn func(blob.Attrs) error) error {
	cutoff := time.Now().Add(-minAge)
	err := s.opts.Blobs.List(ctx, accountPrefix(account)+"msg/", func(at blob.Attrs) error {
		if at.ModTime.After(cutoff) {
			return nil
		}
		var one int
		err := s.db.QueryRowContext(ctx, `SELECT 1 FROM blobs WHERE key = ?`, at.Key).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fn(at)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("mailstore: orphans %s: %w", account, err)
	}
	return nil
}

// Accounts returns the name of every account in the index, in byte order.
func (s *Store) Accounts(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM accounts ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("mailstore: accounts: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("mailstore: accounts: %w", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailstore: accounts: %w", err)
	}
	return names, nil
}

// MissingObject is an index entry whose object is not in the blob store.
type MissingObject struct {
	Account  string
	Key      string
	Size     int64 // bytes, as the index records it
	Messages int   // message rows (in any mailbox) that refer to the object
}

// DefaultFsckWorkers is how many Stat calls MissingObjects runs at once
// when asked for workers <= 0.
const DefaultFsckWorkers = 8

// MissingObjects checks that every object the index refers to exists:
// it Stats each one (S3 HeadObject), workers at a time (<= 0:
// DefaultFsckWorkers), and calls fn for each missing one, from one
// goroutine at a time, in no particular order. It returns how many
// objects it checked. Any Stat error other than blob.ErrNotFound
// (blob.ErrUnavailable above all) stops the check and is returned: an
// unreachable store must not look like a store with nothing in it. An
// error from fn stops it too. Rows committed during the walk may or may
// not be checked.
func (s *Store) MissingObjects(ctx context.Context, workers int, fn func(MissingObject) error) (checked int, err error) {
	if workers <= 0 {
		workers = DefaultFsckWorkers
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type item struct {
		key, account string
		size         int64
	}
	work := make(chan item)
	var (
		mu sync.Mutex // serialises fn and counts
		wg sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				_, err := s.opts.Blobs.Stat(ctx, it.key)
				if err != nil && !errors.Is(err, blob.ErrNotFound) {
					cancel(err)
					continue
				}
				mu.Lock()
				checked++
				if err != nil && context.Cause(ctx) == nil {
					m := MissingObject{Account: it.account, Key: it.key, Size: it.size}
					if qerr := s.db.QueryRowContext(ctx, `SELECT count(*) FROM messages WHERE blob_key = ?`, it.key).Scan(&m.Messages); qerr != nil {
						cancel(qerr)
					} else if ferr := fn(m); ferr != nil {
						cancel(ferr)
					}
				}
				mu.Unlock()
			}
		}()
	}
	// Page through the index by key, so no read transaction stays open
	// for the whole walk.
	last := ""
	var qerr error
produce:
	for ctx.Err() == nil {
		rows, err := s.db.QueryContext(ctx, `SELECT b.key, a.name, b.size FROM blobs b JOIN accounts a ON a.id = b.account_id
			WHERE b.key > ? ORDER BY b.key LIMIT 500`, last)
		if err != nil {
			qerr = err
			break
		}
		var page []item
		for rows.Next() {
			var it item
			if err := rows.Scan(&it.key, &it.account, &it.size); err != nil {
				qerr = err
				break
			}
			page = append(page, it)
		}
		if err := rows.Err(); err != nil && qerr == nil {
			qerr = err
		}
		rows.Close()
		if qerr != nil || len(page) == 0 {
			break
		}
		for _, it := range page {
			select {
			case work <- it:
			case <-ctx.Done():
				break produce
			}
		}
		last = page[len(page)-1].key
	}
	close(work)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil {
		qerr = cause
	}
	if qerr != nil {
		return checked, fmt.Errorf("mailstore: missing objects: %w", qerr)
	}
	return checked, nil
}
