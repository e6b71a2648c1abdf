package mailstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
