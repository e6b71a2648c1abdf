package local_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/bucketmail/bucketmail/internal/bus"
	"github.com/bucketmail/bucketmail/internal/bus/local"
)

// A subscriber's loop: subscribe, read the store, then apply hints; on
// ErrResync read the store again (by MODSEQ), on ErrClosed stop.
func Example() {
	ctx := context.Background()
	b := local.New("node-a", nil)
	sub, _ := b.Subscribe(ctx, "alice", 2)
	// ... read alice's mailboxes from the store here ...

	b.Publish(ctx, bus.Event{Kind: bus.KindNewMail, Account: "alice", Mailbox: "01J0", ModSeq: 7})
	b.Publish(ctx, bus.Event{Kind: bus.KindNewMail, Account: "bob", Mailbox: "01J1", ModSeq: 3})
	for i := 8; i <= 10; i++ { // more than the queue of 2 holds: 9 overflows it
		b.Publish(ctx, bus.Event{Kind: bus.KindFlags, Account: "alice", Mailbox: "01J0", ModSeq: uint64(i)})
	}
	for range 2 {
		ev, err := sub.Next(ctx)
		if errors.Is(err, bus.ErrResync) {
			fmt.Println("resync: re-read the store by MODSEQ")
			continue
		}
		fmt.Println(ev.Kind, ev.Account, ev.Mailbox, ev.ModSeq, ev.Origin, ev.Seq)
	}
	b.Close()
	_, err := sub.Next(ctx)
	fmt.Println(err)
	// Output:
	// resync: re-read the store by MODSEQ
	// flags alice 01J0 10 node-a 5
	// bus: closed
}
