package mailstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
)

// gatedBlobs holds the next Put (after arm) until release is closed.
type gatedBlobs struct {
	blob.Store
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newGated(s blob.Store) *gatedBlobs {
	return &gatedBlobs{Store: s, entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (g *gatedBlobs) Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.Metadata) error {
	if g.armed.CompareAndSwap(true, false) {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.Store.Put(ctx, key, r, size, meta)
}

// TestSequencerOrder: an Append whose Put is slow holds back the commit
// of a later Append to the same mailbox, so UIDs become visible in
// order; a waiting Append that is cancelled gives up its UID and its
// object without blocking the others.
func TestSequencerOrder(t *testing.T) {
	e := newEnv(t)
	g := newGated(e.blobs)
	e.s.opts.Blobs = g
	ctx := context.Background()
	a := e.account("a@x")
	inbox := e.mailbox(a, "INBOX")

	g.armed.Store(true)
	r1 := make(chan error, 1)
	go func() {
		in := e.spool(testMsg(1))
		defer in.Close()
		_, err := a.Append(ctx, "INBOX", in, nil, time.Time{})
		r1 <- err
	}()
	<-g.entered // Append 1 holds UID 1 and is inside Put

	// Append 2 reserves UID 2, stores its object, then must wait.
	cctx, cancel := context.WithCancel(ctx)
	r2 := make(chan error, 1)
	go func() {
		in := e.spool(testMsg(2))
		defer in.Close()
		_, err := a.Append(cctx, "INBOX", in, nil, time.Time{})
		r2 <- err
	}()
	waitFor(t, func() bool { return e.blobCount() == 1 })
	time.Sleep(50 * time.Millisecond)
	if st := e.states(a, inbox.ID); len(st) != 0 {
		t.Fatalf("UID visible before an earlier reservation committed: %v", st)
	}
	cancel()
	if err := <-r2; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled append: %v", err)
	}
	if n := e.blobCount(); n != 0 {
		t.Errorf("cancelled append left %d objects", n)
	}
	close(g.release)
	if err := <-r1; err != nil {
		t.Fatal(err)
	}
	r := e.appendMsg(a, "INBOX", testMsg(3))
	if r.UID != 3 {
		t.Errorf("next UID %d, want 3 (2 was reserved and given up)", r.UID)
	}
	if got := fmt.Sprint(e.states(a, inbox.ID)); got != "[{1 2 []} {3 3 []}]" {
		t.Errorf("states %s", got)
	}
	if n := e.blobCount(); n != 2 {
		t.Errorf("%d objects, want 2", n)
	}
}

// TestTwoProcesses: a second Store on the same database file (another
// process, such as the importer) commits a larger UID while this one's
// reservation is in its Put; the late row takes a fresh UID above it, so
// UIDs still appear in ascending order.
func TestTwoProcesses(t *testing.T) {
	e := newEnv(t)
	g := newGated(e.blobs)
	e.s.opts.Blobs = g
	ctx := context.Background()
	db2 := openMetaDB(t, e.dsn)
	defer db2.Close()
	s2, err := Open(ctx, Options{DB: db2, Blobs: e.blobs, SpoolDir: filepath.Join(e.dir, "spool2")})
	if err != nil {
		t.Fatal(err)
	}
	a := e.account("a@x")
	a2, err := s2.Account(ctx, "a@x")
	if err != nil {
		t.Fatal(err)
	}
	g.armed.Store(true)
	r1 := make(chan AppendResult, 1)
	in1 := e.spool(testMsg(1))
	defer in1.Close()
	go func() {
		res, err := a.Append(ctx, "INBOX", in1, nil, time.Time{}) // reserves UID 1
		if err != nil {
			t.Error(err)
		}
		r1 <- res
	}()
	<-g.entered
	in, err := s2.Spool(ctx, strings.NewReader(testMsg(2)), false, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	r2, err := a2.Append(ctx, "INBOX", in, nil, time.Time{})
	if err != nil || r2.UID != 2 {
		t.Fatalf("second process append %+v %v", r2, err)
	}
	close(g.release)
	res := <-r1
	if res.UID != 3 || res.ModSeq != 3 {
		t.Errorf("overtaken append %+v, want UID 3 MODSEQ 3", res)
	}
	inbox := e.mailbox(a, "INBOX")
	if got := fmt.Sprint(e.states(a, inbox.ID)); got != "[{2 2 []} {3 3 []}]" {
		t.Errorf("states %s", got)
	}
	if inbox.UIDNext != 4 {
		t.Errorf("UIDNEXT %d", inbox.UIDNext)
	}
	if got := e.body(a, inbox.ID, 3); got != testMsg(1) {
		t.Errorf("body %q", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
