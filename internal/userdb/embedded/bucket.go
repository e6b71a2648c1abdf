package embedded

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/journal"
	"github.com/bucketmail/bucketmail/internal/userdb"
)

// Account records in the bucket (DESIGN §3: an operator can lose every
// local disk). With WithBucket, every change of a user (add, passwd,
// hash, quota, disable) also writes the user's record to
//
//	accounts/<address as a key segment>   (journal.AccountSegment)
//
// as JSON (BucketRecord), and DeleteUser deletes it; RestoreFromBucket
// loads them into an empty users table. The record holds the password
// hash as stored ("{SCHEME}..."): the bucket must be as private as the
// index. A change that reached the index but not the bucket is reported
// as an error wrapping userdb.ErrUnavailable; running it again fixes it.

// BucketPrefix is the key prefix of account records.
const BucketPrefix = "accounts/"

// maxRecordBytes bounds a record read back (a hash and a few numbers).
const maxRecordBytes = 64 << 10

// BucketRecord is an account record as stored in the bucket.
type BucketRecord struct {
	V          int    `json:"v"`
	Address    string `json:"address"`
	Password   string `json:"password"`
	QuotaBytes int64  `json:"quota_bytes"`
	Disabled   bool   `json:"disabled"`
	Created    int64  `json:"created"`
}

// WithBucket mirrors account records to store (S3 mode).
func WithBucket(store blob.Store) Option { return func(d *DB) { d.bucket = store } }

// BucketKey returns the key of an address's record.
func BucketKey(address string) string { return BucketPrefix + journal.AccountSegment(address) }

// mirror writes the user's current record to the bucket (or deletes it
// when the user is gone). No-op without WithBucket.
func (d *DB) mirror(ctx context.Context, op, address string, err error) error {
	if err != nil || d.bucket == nil {
		return err
	}
	var r BucketRecord
	qerr := d.db.QueryRowContext(ctx, `SELECT address, password, quota_bytes, disabled, created FROM users WHERE address = ?`,
		address).Scan(&r.Address, &r.Password, &r.QuotaBytes, &r.Disabled, &r.Created)
	key := BucketKey(address)
	if qerr != nil {
		// Deleted (or unreadable: then leave the bucket alone).
		if !errors.Is(qerr, sql.ErrNoRows) {
			return unavailable(op, address, qerr)
		}
		if derr := d.bucket.Delete(ctx, key); derr != nil && !errors.Is(derr, blob.ErrNotFound) {
			return fmt.Errorf("userdb: %s %s: done in the index, not in the bucket: %w: %w", op, address, userdb.ErrUnavailable, derr)
		}
		return nil
	}
	r.V = 1
	b, merr := json.Marshal(r)
	if merr != nil {
		return fmt.Errorf("userdb: %s %s: %w", op, address, merr)
	}
	if perr := d.bucket.Put(ctx, key, bytes.NewReader(b), int64(len(b)), blob.Metadata{"v": "1"}); perr != nil {
		return fmt.Errorf("userdb: %s %s: done in the index, not in the bucket: %w: %w", op, address, userdb.ErrUnavailable, perr)
	}
	return nil
}

// RestoreFromBucket adds every account record in the bucket whose
// address is not in the users table, and returns the addresses added
// (in key order). Needs WithBucket.
func (d *DB) RestoreFromBucket(ctx context.Context) ([]string, error) {
	if d.bucket == nil {
		return nil, errors.New("userdb: restore: no bucket")
	}
	var keys []string
	if err := d.bucket.List(ctx, BucketPrefix, func(a blob.Attrs) error {
		keys = append(keys, a.Key)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("userdb: restore: %w", err)
	}
	var added []string
	for _, k := range keys {
		r, err := d.readRecord(ctx, k)
		if err != nil {
			return added, err
		}
		if BucketKey(r.Address) != k || userdb.ValidateAddress(r.Address) != nil || r.Password == "" {
			return added, fmt.Errorf("userdb: restore %s: bad record for %q", k, r.Address)
		}
		res, err := d.db.ExecContext(ctx, `INSERT INTO users (address, password, quota_bytes, disabled, created)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (address) DO NOTHING`, r.Address, r.Password, r.QuotaBytes, r.Disabled, r.Created)
		if err != nil {
			return added, unavailable("restore", r.Address, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			added = append(added, r.Address)
		}
	}
	return added, nil
}

func (d *DB) readRecord(ctx context.Context, key string) (BucketRecord, error) {
	var r BucketRecord
	rc, err := d.bucket.NewRangeReader(ctx, key, 0, maxRecordBytes)
	if err != nil {
		return r, fmt.Errorf("userdb: restore %s: %w", key, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(io.LimitReader(rc, maxRecordBytes))
	if err := dec.Decode(&r); err != nil || r.V != 1 {
		return r, fmt.Errorf("userdb: restore %s: bad record (version %d): %v", key, r.V, err)
	}
	return r, nil
}

// SyncToBucket writes the record of every user that has none in the
// bucket (users added before WithBucket was in use, or whose write
// failed). One LIST, then one PUT per missing record.
func (d *DB) SyncToBucket(ctx context.Context) error {
	if d.bucket == nil {
		return nil
	}
	have := map[string]bool{}
	if err := d.bucket.List(ctx, BucketPrefix, func(a blob.Attrs) error {
		have[a.Key] = true
		return nil
	}); err != nil {
		return fmt.Errorf("userdb: sync: %w: %w", userdb.ErrUnavailable, err)
	}
	users, err := d.ListUsers(ctx)
	if err != nil {
		return err
	}
	for _, u := range users {
		if have[BucketKey(u.Address)] {
			continue
		}
		if err := d.mirror(ctx, "sync", u.Address, nil); err != nil {
			return err
		}
	}
	return nil
}
