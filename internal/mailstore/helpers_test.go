package mailstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	blobfs "github.com/bucketmail/bucketmail/internal/blob/fs"
)

// env is a store on a real metadata database (a SQLite file, or a
// PostgreSQL database on the PostgreSQL run: main_test.go) and a real
// filesystem blob store in a temp dir.
type env struct {
	t     testing.TB
	dir   string
	dsn   string // newMetaDB
	db    *sql.DB
	blobs blob.Store
	fs    *blobfs.Store
	s     *Store
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.dsn = newMetaDB(t, filepath.Join(e.dir, "meta.db"))
	fsStore, err := blobfs.New(filepath.Join(e.dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	e.fs = fsStore
	e.blobs = fsStore
	e.open()
	t.Cleanup(func() { e.close() })
	return e
}

func (e *env) open() {
	e.t.Helper()
	ctx := context.Background()
	db := openMetaDB(e.t, e.dsn)
	e.db = db
	s, err := Open(ctx, Options{DB: db, Blobs: e.blobs, SpoolDir: filepath.Join(e.dir, "spool")})
	if err != nil {
		e.t.Fatal(err)
	}
	e.s = s
}

func (e *env) close() {
	if e.s != nil {
		e.s.Close()
		e.s = nil
	}
	if e.db != nil {
		e.db.Close()
		e.db = nil
	}
}

// reopen closes the store and the database and opens them again (a
// restart).
func (e *env) reopen() {
	e.close()
	e.open()
}

func (e *env) account(name string) *Account {
	e.t.Helper()
	a, err := e.s.Account(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *env) mailbox(a *Account, name string) Mailbox {
	e.t.Helper()
	mb, err := a.Mailbox(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return mb
}

// testMsg returns a small CRLF message, distinct per i.
func testMsg(i int) string {
	return fmt.Sprintf("From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: test %d\r\n"+
		"Date: Mon, 2 Jan 2006 15:04:05 +0000\r\nMessage-ID: <%d@example.org>\r\n\r\nbody %d\r\n", i, i, i)
}

func (e *env) spool(raw string) *Incoming {
	e.t.Helper()
	in, err := e.s.Spool(context.Background(), strings.NewReader(raw), false, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return in
}

// appendMsg spools and appends raw.
func (e *env) appendMsg(a *Account, mailbox, raw string, flags ...string) AppendResult {
	e.t.Helper()
	in := e.spool(raw)
	defer in.Close()
	res, err := a.Append(context.Background(), mailbox, in, flags, time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600)))
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// blobCount counts objects in the blob store.
func (e *env) blobCount() int {
	e.t.Helper()
	e.s.waitDeletes()
	n := 0
	if err := e.blobs.List(context.Background(), "", func(blob.Attrs) error { n++; return nil }); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// body reads a message's whole body through OpenBody.
func (e *env) body(a *Account, mailboxID int64, uid uint32) string {
	e.t.Helper()
	var out string
	found := false
	err := a.Messages(context.Background(), mailboxID, []uint32{uid}, func(m *Message) error {
		found = true
		rc, err := a.OpenBody(context.Background(), m, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc) // test-only: small messages
		out = string(b)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if !found {
		e.t.Fatalf("uid %d not found", uid)
	}
	return out
}

func uidsOf(states []MessageState) []uint32 {
	out := make([]uint32, len(states))
	for i, s := range states {
		out[i] = s.UID
	}
	return out
}

func (e *env) states(a *Account, id int64) []MessageState {
	e.t.Helper()
	st, err := a.States(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func eqUIDs(t testing.TB, what string, got, want []uint32) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

// failingBlobs fails Put with ErrUnavailable while fail is set.
type failingBlobs struct {
	blob.Store
	fail atomic.Bool
	puts atomic.Int64
}

func (f *failingBlobs) Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.Metadata) error {
	f.puts.Add(1)
	if f.fail.Load() {
		return fmt.Errorf("blob: put %s: %w: injected", key, blob.ErrUnavailable)
	}
	return f.Store.Put(ctx, key, r, size, meta)
}

var _ = errors.Is
