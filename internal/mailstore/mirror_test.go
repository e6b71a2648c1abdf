package mailstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestChangesMirror is the CONDSTORE/QRESYNC property: a client that
// keeps a copy of a mailbox and applies Changes since the HIGHESTMODSEQ
// it last saw, while appends, flag changes and expunges run
// concurrently, ends with exactly the mailbox's state.
func TestChangesMirror(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	for i := 0; i < 10; i++ {
		e.appendMsg(a, "INBOX", testMsg(i))
	}
	inbox := e.mailbox(a, "INBOX")
	rounds := 10
	if testing.Short() {
		rounds = 5
	}

	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := 0; w < 2; w++ { // appenders
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				in, err := e.s.Spool(ctx, strings.NewReader(testMsg(100*w+i)), false, 0)
				if err != nil {
					errc <- err
					return
				}
				_, err = a.Append(ctx, "INBOX", in, []string{"$new"}, time.Time{})
				in.Close()
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // flagger and expunger
		defer wg.Done()
		r := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < 3*rounds; i++ {
			st, err := a.States(ctx, inbox.ID)
			if err != nil || len(st) == 0 {
				errc <- fmt.Errorf("states: %v (%d)", err, len(st))
				return
			}
			u := st[r.IntN(len(st))].UID
			op := []StoreOp{Add, Remove, Replace}[r.IntN(3)]
			flag := []string{`\Seen`, `\Flagged`, "$kw", `\Deleted`}[r.IntN(4)]
			if _, _, err := a.StoreFlags(ctx, inbox.ID, []uint32{u, u + 1}, op, []string{flag}, 0); err != nil {
				errc <- err
				return
			}
			if i%5 == 4 {
				if _, err := a.Expunge(ctx, inbox.ID, nil); err != nil {
					errc <- err
					return
				}
			}
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	mirror := map[uint32]string{}
	var hms uint64
	syncs := 0
	resync := func() error {
		c, err := a.Changes(ctx, inbox.ID, inbox.UIDValidity, hms)
		if err != nil {
			return err
		}
		if c.HighestModSeq < hms {
			return fmt.Errorf("HIGHESTMODSEQ went down: %d after %d", c.HighestModSeq, hms)
		}
		for _, u := range c.Updated {
			if u.ModSeq <= hms || u.ModSeq > c.HighestModSeq {
				return fmt.Errorf("uid %d modseq %d outside (%d, %d]", u.UID, u.ModSeq, hms, c.HighestModSeq)
			}
			mirror[u.UID] = fmt.Sprint(u.Flags)
		}
		for _, u := range c.Expunged {
			delete(mirror, u)
		}
		hms = c.HighestModSeq
		syncs++
		return nil
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			time.Sleep(2 * time.Millisecond)
		}
		if err := resync(); err != nil {
			t.Fatal(err)
		}
	}
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	st := e.states(a, inbox.ID)
	if len(st) != len(mirror) {
		t.Fatalf("mirror has %d messages, mailbox %d (after %d syncs)", len(mirror), len(st), syncs)
	}
	for _, s := range st {
		if mirror[s.UID] != fmt.Sprint(s.Flags) {
			t.Errorf("uid %d: mirror %s, mailbox %v", s.UID, mirror[s.UID], s.Flags)
		}
	}
	if syncs < 3 {
		t.Errorf("only %d syncs: the test did not interleave", syncs)
	}
}
