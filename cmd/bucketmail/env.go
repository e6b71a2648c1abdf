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

	"github.com/bucketmail/bucketmail/internal/blob/fs"
	"github.com/bucketmail/bucketmail/internal/config"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/embedded"
)

// users is what the binary needs of a user database: the embedded one
// implements all three.
type users interface {
	userdb.PassDB
	userdb.UserDB
	userdb.Manager
}

// env is the opened data directory.
type env struct {
	cfg   config.Config
	log   *slog.Logger
	db    *sql.DB
	store *mailstore.Store
	users users
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

// openEnv opens the index, the blob store, the mail store and the user
// database under cfg.DataDir, creating them if missing. Wiring is an
// explicit choice of the embedded backends; later issues switch on config.
func openEnv(ctx context.Context, cfg config.Config, log *slog.Logger) (*env, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	db, err := metadb.OpenSQLite(ctx, filepath.Join(cfg.DataDir, "index.db"))
	if err != nil {
		return nil, err
	}
	blobs, err := fs.New(filepath.Join(cfg.DataDir, "blobs"))
	if err != nil {
		db.Close()
		return nil, err
	}
	store, err := mailstore.Open(ctx, mailstore.Options{
		DB:       db,
		Blobs:    blobs,
		SpoolDir: filepath.Join(cfg.DataDir, "spool"),
		Logger:   log,
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	u, err := embedded.New(ctx, db)
	if err != nil {
		store.Close()
		db.Close()
		return nil, err
	}
	return &env{cfg: cfg, log: log, db: db, store: store, users: u}, nil
}

func (e *env) Close() error {
	return errors.Join(e.store.Close(), e.db.Close())
}
