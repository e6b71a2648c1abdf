package imapserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/bucketmail/bucketmail/internal/blob"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	blobfs "github.com/bucketmail/bucketmail/internal/blob/fs"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/userdb"
)

// testPassDB is a tiny PassDB: address → password, account = address.
type testPassDB map[string]string

func (p testPassDB) Authenticate(ctx context.Context, address, password string) (*userdb.User, error) {
	switch address {
	case "down": // a backend that cannot be reached
		return nil, fmt.Errorf("testpassdb: %w", userdb.ErrUnavailable)
	case "broken": // an error nobody planned for
		return nil, errors.New("testpassdb: disk on fire")
	}
	want, ok := p[address]
	if !ok || want != password {
		return nil, userdb.ErrAuthFailed
	}
	return &userdb.User{Address: address, Account: address}, nil
}

var testUsers = testPassDB{"alice": "secret", "bob": "hunter2", "carol@example.org": "pw"}

// testEnv is a real server on loopback over a real mail store in a temp dir.
type testEnv struct {
	srv   *Server
	store *mailstore.Store
	addr  string
	done  chan error
}

// logWriter sends slog output to t.Log when -v and IMAPTEST_LOG are set.
type logWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(string(p))
	return len(p), nil
}

// flakyBlobs is a blob.Store whose reads fail with blob.ErrUnavailable
// while down is set (an S3 outage, say).
type flakyBlobs struct {
	blob.Store
	down atomic.Bool
}

func (f *flakyBlobs) NewRangeReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if f.down.Load() {
		return nil, fmt.Errorf("flaky: %w", blob.ErrUnavailable)
	}
	return f.Store.NewRangeReader(ctx, key, offset, length)
}

func newTestStore(t testing.TB) *mailstore.Store {
	st, _ := newTestStoreBlobs(t)
	return st
}

func newTestStoreBlobs(t testing.TB) (*mailstore.Store, *flakyBlobs) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := metadb.OpenSQLite(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := blobfs.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	fb := &flakyBlobs{Store: blobs}
	st, err := mailstore.Open(ctx, mailstore.Options{DB: db, Blobs: fb, SpoolDir: filepath.Join(dir, "spool")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, fb
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("IMAPTEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(&logWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newTestEnv(t testing.TB, mod func(*Options)) *testEnv {
	t.Helper()
	st := newTestStore(t)
	opts := Options{Store: st, Auth: testUsers, Logger: testLogger(t), Trace: os.Getenv("IMAPTEST_LOG") != "", AuthFailureDelay: -1}
	if mod != nil {
		mod(&opts)
	}
	srv := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{srv: srv, store: st, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { env.done <- srv.Serve(ln, false) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-env.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return env
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
