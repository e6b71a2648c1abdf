package mailstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	blobfs "github.com/bucketmail/bucketmail/internal/blob/fs"
)

// TestOnePutPerDelivery: with the journal on, a delivery costs exactly
// one PUT (the message object, which describes itself); the journal
// records those messages with the account's next flush, here caused by
// a flag change, and Close records whatever is left.
func TestOnePutPerDelivery(t *testing.T) {
	fsStore, err := blobfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	counting := &countingBlobs{Store: fsStore}
	// 100 ms: the sweep (every journalSweepTicks intervals, 3 s) stays out
	// of the ~1.5 s this takes.
	e := newJEnv(t, counting, 100*time.Millisecond, 1000)
	ctx := context.Background()
	alice, bob := e.account("alice@example.org"), e.account("bob@example.org")
	e.s.FlushJournal(ctx) // the accounts' creation
	time.Sleep(2 * e.interval)
	start := counting.puts.Load()
	for i := 1; i <= 12; i++ {
		e.deliver(alice, "INBOX", testMsg(i), msgDate(i))
		e.deliver(bob, "INBOX", testMsg(100+i), msgDate(i), FlagFlagged)
	}
	time.Sleep(4 * e.interval)
	if n := counting.puts.Load() - start; n != 24 {
		t.Fatalf("%d PUTs for 24 deliveries and 4 journal intervals, want 24", n)
	}
	inbox, err := alice.Mailbox(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.StoreFlags(ctx, inbox.ID, []uint32{1}, Add, []string{FlagSeen}, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * e.interval)
	if n := counting.puts.Load() - start; n != 25 {
		t.Fatalf("%d PUTs after a flag change, want 24 + 1 journal object (alice's)", n)
	}
	e.s.FlushJournal(ctx) // sweeps: bob's deliveries
	if n := counting.puts.Load() - start; n != 26 {
		t.Fatalf("%d PUTs after FlushJournal, want 24 + 2 journal objects", n)
	}
}
