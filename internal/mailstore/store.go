package mailstore

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"

	"github.com/bucketmail/bucketmail/internal/blob"
)

// Options configure a Store.
type Options struct {
	// DB is the metadata database (SQLite, opened by metadb.OpenSQLite).
	DB *sql.DB
	// Blobs holds message bodies.
	Blobs blob.Store
	// SpoolDir holds incoming messages while they are parsed and stored;
	// it must be on local disk. Created if missing.
	SpoolDir string
	Logger   *slog.Logger
}

// Store is the mail store. See the package doc.
type Store struct {
	opts Options
}

// Open opens the store, creating its schema if needed.
func Open(ctx context.Context, opts Options) (*Store, error) {
	return nil, errors.New("mailstore: not implemented")
}

// Close releases the store's resources (not the DB, which the caller owns).
func (s *Store) Close() error { return nil }
