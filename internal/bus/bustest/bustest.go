// Package bustest is the conformance suite every bus implementation runs:
// bustest.Run(t, factory).
package bustest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/bus"
)

// Harness gives the suite buses on one shared transport.
type Harness struct {
	// Open returns a bus for node name node on the shared transport,
	// without waiting for it to connect; the suite closes it (Close must
	// then be harmless at cleanup too).
	Open func(t *testing.T, node string) bus.Bus
	// MultiNode: buses from New see each other's events (false for the
	// in-process bus, whose buses are independent).
	MultiNode bool
	// Stop and Start stop the transport's server process and start it
	// again on the same address; nil when there is none.
	Stop, Start func(t *testing.T)
}

// New opens a bus and waits until it is Healthy.
func (h Harness) New(t *testing.T, node string) bus.Bus {
	t.Helper()
	b := h.Open(t, node)
	waitHealthy(t, []bus.Bus{b}, true)
	return b
}

// Factory makes a fresh harness for one subtest.
type Factory func(t *testing.T) Harness

const wait = 5 * time.Second

// Run runs the suite.
func Run(t *testing.T, f Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"PublishReceive", testPublishReceive},
		{"AccountFilter", testAccountFilter},
		{"Origin", testOrigin},
		{"SameNodeName", testSameNodeName},
		{"OrderPerPublisher", testOrder},
		{"ManySubscribers", testMany},
		{"SlowSubscriberResync", testSlow},
		{"Close", testClose},
		{"CloseEndsGoroutines", testGoroutines},
		{"Invalid", testInvalid},
		{"ServerRestart", testRestart},
		{"SkipIsGap", testSkip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, f(t)) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	t.Cleanup(cancel)
	return ctx
}

func subscribe(t *testing.T, b bus.Bus, account string, queue int) *bus.Subscription {
	t.Helper()
	s, err := b.Subscribe(t.Context(), account, queue)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", account, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func publish(t *testing.T, b bus.Bus, ev bus.Event) {
	t.Helper()
	if err := b.Publish(ctxT(t), ev); err != nil {
		t.Fatalf("Publish(%+v): %v", ev, err)
	}
}

// next returns the next event within wait; ErrResync and others fail.
func next(t *testing.T, s *bus.Subscription) bus.Event {
	t.Helper()
	ev, err := s.Next(ctxT(t))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return ev
}

// hint strips what the bus fills in except Origin.
func hint(ev bus.Event) bus.Event { ev.Boot, ev.Seq = 0, 0; return ev }

// quiet checks that s has nothing for a short while.
func quiet(t *testing.T, s *bus.Subscription) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	if ev, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %+v, %v; want nothing (deadline)", ev, err)
	}
}

func testPublishReceive(t *testing.T, h Harness) {
	b := h.New(t, "node-a")
	if !b.Healthy() {
		t.Fatal("Healthy = false on a fresh bus")
	}
	s := subscribe(t, b, "", 0)
	want := []bus.Event{
		{Kind: bus.KindNewMail, Account: "alice@example.org", Mailbox: "01J0GUIDINBOX", ModSeq: 42},
		{Kind: bus.KindFlags, Account: "alice@example.org", Mailbox: "01J0GUIDINBOX", ModSeq: 43},
		{Kind: bus.KindExpunge, Account: "alice@example.org", Mailbox: "01J0GUIDINBOX", ModSeq: 44},
		{Kind: bus.KindMailboxList, Account: "alice@example.org"},
		{Kind: bus.KindAccountUpdating, Account: "bob"},
		{Kind: bus.KindAccountUpdated, Account: "bob"},
	}
	for _, ev := range want {
		publish(t, b, ev)
	}
	var boot uint64
	for i, w := range want {
		got := next(t, s)
		w.Origin = "node-a"
		if hint(got) != w {
			t.Fatalf("event %d = %+v, want %+v", i, got, w)
		}
		if got.Seq != uint64(i+1) {
			t.Errorf("event %d Seq = %d, want %d", i, got.Seq, i+1)
		}
		if i == 0 {
			boot = got.Boot
		}
		if got.Boot == 0 || got.Boot != boot {
			t.Errorf("event %d Boot = %d, want nonzero and constant %d", i, got.Boot, boot)
		}
	}
	if bt, ok := b.(bus.Booter); !ok || bt.Boot() != boot {
		t.Errorf("bus.Booter: %v, Boot() does not match the events' Boot %d", ok, boot)
	}
	quiet(t, s)
}

// testSameNodeName: two buses given the same node name (a
// misconfiguration) have different Boots, and their interleaved events
// reach every subscriber in order without a resync: sequences are kept
// per Origin and Boot.
func testSameNodeName(t *testing.T, h Harness) {
	if !h.MultiNode {
		t.Skip("single-node bus")
	}
	a, b := h.New(t, "node-x"), h.New(t, "node-x")
	ba, bb := a.(bus.Booter).Boot(), b.(bus.Booter).Boot()
	if ba == bb {
		t.Fatalf("two buses share Boot %d", ba)
	}
	sa, sb := subscribe(t, a, "", 0), subscribe(t, b, "", 0)
	for i := range 6 {
		from, boot := a, ba
		if i%2 == 1 {
			from, boot = b, bb
		}
		publish(t, from, bus.Event{Kind: bus.KindNewMail, Account: "x", Mailbox: "m", ModSeq: uint64(i + 1)})
		// Each event reaches both before the next is sent: the order
		// on the wire is the order published.
		for _, s := range []*bus.Subscription{sa, sb} {
			if ev := next(t, s); ev.Origin != "node-x" || ev.ModSeq != uint64(i+1) || ev.Boot != boot || ev.Seq != uint64(i/2+1) {
				t.Fatalf("event %d = %+v, want origin node-x, modseq %d, boot %d, seq %d", i, ev, i+1, boot, i/2+1)
			}
		}
	}
	quiet(t, sa)
	quiet(t, sb)
}

func testAccountFilter(t *testing.T, h Harness) {
	b := h.New(t, "node-a")
	alice, bob, all := subscribe(t, b, "alice", 0), subscribe(t, b, "bob", 0), subscribe(t, b, "", 0)
	for i, acct := range []string{"alice", "bob", "alice", "carol"} {
		publish(t, b, bus.Event{Kind: bus.KindNewMail, Account: acct, Mailbox: "mb", ModSeq: uint64(i + 1)})
	}
	check := func(name string, s *bus.Subscription, want []uint64) {
		t.Helper()
		for _, ms := range want {
			if ev := next(t, s); ev.ModSeq != ms {
				t.Fatalf("%s: ModSeq = %d, want %d (%+v)", name, ev.ModSeq, ms, ev)
			}
		}
		quiet(t, s)
	}
	check("all", all, []uint64{1, 2, 3, 4})
	check("alice", alice, []uint64{1, 3})
	check("bob", bob, []uint64{2})
	if got := alice.Account(); got != "alice" {
		t.Errorf("Account() = %q, want alice", got)
	}
}

func testOrigin(t *testing.T, h Harness) {
	if !h.MultiNode {
		t.Skip("single-node bus")
	}
	a, b := h.New(t, "node-a"), h.New(t, "node-b")
	sa, sb := subscribe(t, a, "", 0), subscribe(t, b, "", 0)
	publish(t, a, bus.Event{Kind: bus.KindNewMail, Account: "x", Mailbox: "m", ModSeq: 1})
	// Wait until the first arrived everywhere, so the order is fixed.
	for _, s := range []*bus.Subscription{sa, sb} {
		if ev := next(t, s); ev.Origin != "node-a" || ev.ModSeq != 1 {
			t.Fatalf("got %+v, want origin node-a modseq 1", ev)
		}
	}
	publish(t, b, bus.Event{Kind: bus.KindFlags, Account: "x", Mailbox: "m", ModSeq: 2})
	for _, s := range []*bus.Subscription{sa, sb} {
		if ev := next(t, s); ev.Origin != "node-b" || ev.ModSeq != 2 || ev.Kind != bus.KindFlags || ev.Seq != 1 {
			t.Fatalf("got %+v, want origin node-b modseq 2 flags seq 1", ev)
		}
		quiet(t, s)
	}
}

func testOrder(t *testing.T, h Harness) {
	const n = 200
	nodes := []string{"node-a"}
	if h.MultiNode {
		nodes = append(nodes, "node-b")
	}
	buses := make([]bus.Bus, len(nodes))
	for i, name := range nodes {
		buses[i] = h.New(t, name)
	}
	s := subscribe(t, buses[0], "", 4*n)
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes)*2)
	for i, b := range buses {
		for g := 0; g < 2; g++ { // two publishing goroutines per bus, one account each
			acct := fmt.Sprintf("acct-%d-%d", i, g)
			wg.Go(func() {
				for ms := uint64(1); ms <= n; ms++ {
					if err := b.Publish(t.Context(), bus.Event{Kind: bus.KindNewMail, Account: acct, Mailbox: "m", ModSeq: ms}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	last := map[string]uint64{}
	seq := map[string]uint64{}
	for range len(buses) * 2 * n {
		ev := next(t, s)
		if ev.ModSeq != last[ev.Account]+1 {
			t.Fatalf("%s: ModSeq %d after %d", ev.Account, ev.ModSeq, last[ev.Account])
		}
		last[ev.Account] = ev.ModSeq
		if ev.Seq != seq[ev.Origin]+1 {
			t.Fatalf("%s: Seq %d after %d", ev.Origin, ev.Seq, seq[ev.Origin])
		}
		seq[ev.Origin] = ev.Seq
	}
	if len(last) != len(buses)*2 {
		t.Fatalf("accounts seen %v", last)
	}
	quiet(t, s)
}

func testMany(t *testing.T, h Harness) {
	const subs, n = 50, 20
	b := h.New(t, "node-a")
	ss := make([]*bus.Subscription, subs)
	for i := range ss {
		acct := ""
		if i%2 == 1 {
			acct = "alice"
		}
		ss[i] = subscribe(t, b, acct, 0)
	}
	for i := range n {
		acct := "alice"
		if i%2 == 1 {
			acct = "bob"
		}
		publish(t, b, bus.Event{Kind: bus.KindNewMail, Account: acct, Mailbox: "m", ModSeq: uint64(i + 1)})
	}
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Go(func() {
			ctx := ctxT(t)
			for j := range n {
				if i%2 == 1 && j%2 == 1 {
					continue // bob's
				}
				ev, err := s.Next(ctx)
				if err != nil || ev.ModSeq != uint64(j+1) {
					t.Errorf("sub %d: Next = %+v, %v; want modseq %d", i, ev, err, j+1)
					return
				}
			}
		})
	}
	wg.Wait()
}

func testSlow(t *testing.T, h Harness) {
	const n, q = 100, 8
	b := h.New(t, "node-a")
	slow := subscribe(t, b, "", q)
	witness := subscribe(t, b, "", 4*n)
	start := time.Now()
	for i := range n {
		publish(t, b, bus.Event{Kind: bus.KindNewMail, Account: "alice", Mailbox: "m", ModSeq: uint64(i + 1)})
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("%d publishes took %v with a stalled subscriber", n, d)
	}
	for i := range n { // once the witness has all, the slow one was offered all
		if ev := next(t, witness); ev.ModSeq != uint64(i+1) {
			t.Fatalf("witness: ModSeq %d, want %d", ev.ModSeq, i+1)
		}
	}
	if _, err := slow.Next(ctxT(t)); !errors.Is(err, bus.ErrResync) {
		t.Fatalf("slow Next err = %v, want ErrResync", err)
	}
	if got := slow.Dropped(); got < n-q {
		t.Errorf("Dropped = %d, want >= %d", got, n-q)
	}
	// After the resync the subscriber is current again: the queue is empty
	// except for events after the overflow point.
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	for {
		ev, err := slow.Next(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil || ev.ModSeq <= q {
			t.Fatalf("after resync: %+v, %v", ev, err)
		}
	}
	cancel()
	publish(t, b, bus.Event{Kind: bus.KindFlags, Account: "alice", Mailbox: "m", ModSeq: n + 1})
	if ev := next(t, slow); ev.ModSeq != n+1 || ev.Kind != bus.KindFlags {
		t.Fatalf("after resync: %+v, want flags modseq %d", ev, n+1)
	}
}

func testClose(t *testing.T, h Harness) {
	b := h.New(t, "node-a")
	s1, s2 := subscribe(t, b, "", 0), subscribe(t, b, "alice", 0)

	// A cancelled ctx ends Next with the ctx's error.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s1.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next(cancelled) err = %v, want context.Canceled", err)
	}

	// Subscription.Close: Next returns ErrClosed; others unaffected.
	blocked := make(chan error, 1)
	go func() { _, err := s1.Next(t.Context()); blocked <- err }()
	time.Sleep(20 * time.Millisecond)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-blocked:
		if !errors.Is(err, bus.ErrClosed) {
			t.Fatalf("blocked Next err = %v, want ErrClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not wake Next")
	}
	publish(t, b, bus.Event{Kind: bus.KindNewMail, Account: "alice", Mailbox: "m", ModSeq: 7})
	if ev := next(t, s2); ev.ModSeq != 7 {
		t.Fatalf("s2: %+v", ev)
	}

	// Bus.Close: every Next returns ErrClosed, Publish and Subscribe fail.
	go func() { _, err := s2.Next(t.Context()); blocked <- err }()
	time.Sleep(20 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-blocked:
		if !errors.Is(err, bus.ErrClosed) {
			t.Fatalf("Next after bus Close err = %v, want ErrClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("bus Close did not wake Next")
	}
	if err := b.Publish(t.Context(), bus.Event{Kind: bus.KindNewMail, Account: "alice"}); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("Publish after Close err = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe(t.Context(), "", 0); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("Subscribe after Close err = %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second bus Close: %v", err)
	}
}

func testInvalid(t *testing.T, h Harness) {
	b := h.New(t, "node-a")
	for _, ev := range []bus.Event{
		{Account: "alice"},
		{Kind: 99, Account: "alice"},
		{Kind: bus.KindNewMail},
		{Kind: bus.KindNewMail, Account: "alice", Mailbox: string(make([]byte, bus.MaxPayload))},
	} {
		if err := b.Publish(t.Context(), ev); !errors.Is(err, bus.ErrInvalid) {
			t.Errorf("Publish(kind %d, account %q, %d-byte mailbox) err = %v, want ErrInvalid", ev.Kind, ev.Account, len(ev.Mailbox), err)
		}
	}
}

func testRestart(t *testing.T, h Harness) {
	if h.Stop == nil {
		t.Skip("no server process")
	}
	a := h.New(t, "node-a")
	buses := []bus.Bus{a}
	if h.MultiNode {
		buses = append(buses, h.New(t, "node-b"))
	}
	subs := make([]*bus.Subscription, len(buses))
	for i, b := range buses {
		subs[i] = subscribe(t, b, "alice", 0)
	}
	publish(t, a, bus.Event{Kind: bus.KindNewMail, Account: "alice", Mailbox: "m", ModSeq: 1})
	for _, s := range subs {
		if ev := next(t, s); ev.ModSeq != 1 {
			t.Fatalf("before restart: %+v", ev)
		}
	}
	h.Stop(t)
	waitHealthy(t, buses, false)
	// A bus opened while the server is down is not Healthy and resyncs
	// its subscriptions once it connects.
	late := h.Open(t, "node-late")
	lateSub := subscribe(t, late, "alice", 0)
	if late.Healthy() {
		t.Fatal("bus opened while the server is down: Healthy = true")
	}
	buses, subs = append(buses, late), append(subs, lateSub)
	h.Start(t)
	waitHealthy(t, buses, true)
	for i, s := range subs {
		if ev, err := s.Next(ctxT(t)); !errors.Is(err, bus.ErrResync) {
			t.Fatalf("bus %d after reconnect: Next = %+v, %v; want ErrResync", i, ev, err)
		}
	}
	// Working again: an event published now reaches everyone. (Events
	// published while down may or may not arrive: that is what the
	// resync is for.)
	deadline := time.Now().Add(wait)
	for {
		err := a.Publish(ctxT(t), bus.Event{Kind: bus.KindExpunge, Account: "alice", Mailbox: "m", ModSeq: 2})
		if err == nil {
			break
		}
		if !errors.Is(err, bus.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Publish after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !h.MultiNode {
		subs = subs[:1] // the others do not hear a
	}
	for i, s := range subs {
		for {
			ev, err := s.Next(ctxT(t))
			if errors.Is(err, bus.ErrResync) {
				continue // a gap seen late is allowed
			}
			if err != nil || ev.ModSeq != 2 || ev.Kind != bus.KindExpunge {
				t.Fatalf("bus %d after restart: %+v, %v", i, ev, err)
			}
			break
		}
	}
}

func waitHealthy(t *testing.T, buses []bus.Bus, want bool) {
	t.Helper()
	deadline := time.Now().Add(wait + 5*time.Second)
	for _, b := range buses {
		for b.Healthy() != want {
			if time.Now().After(deadline) {
				t.Fatalf("Healthy() still %v", !want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func testGoroutines(t *testing.T, h Harness) {
	before := runtime.NumGoroutine()
	b := h.New(t, "node-a")
	s := subscribe(t, b, "", 0)
	publish(t, b, bus.Event{Kind: bus.KindNewMail, Account: "alice", Mailbox: "m", ModSeq: 1})
	next(t, s)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testSkip: a bus.Skipper's Skip makes receivers (other nodes and its
// own subscribers) resync at the next event, which then arrives.
func testSkip(t *testing.T, h Harness) {
	a := h.New(t, "node-a")
	sk, ok := a.(bus.Skipper)
	if !ok {
		t.Skip("bus does not implement bus.Skipper")
	}
	subs := []*bus.Subscription{subscribe(t, a, "", 0)}
	if h.MultiNode {
		b := h.New(t, "node-b")
		subs = append(subs, subscribe(t, b, "", 0))
	}
	publish(t, a, bus.Event{Kind: bus.KindNewMail, Account: "x", Mailbox: "m", ModSeq: 1})
	for _, s := range subs {
		if ev := next(t, s); ev.ModSeq != 1 || ev.Seq != 1 {
			t.Fatalf("got %+v, want modseq 1 seq 1", ev)
		}
	}
	sk.Skip()
	publish(t, a, bus.Event{Kind: bus.KindNewMail, Account: "x", Mailbox: "m", ModSeq: 3})
	for _, s := range subs {
		if ev, err := s.Next(ctxT(t)); !errors.Is(err, bus.ErrResync) {
			t.Fatalf("after Skip: Next = %+v, %v; want ErrResync", ev, err)
		}
		if ev := next(t, s); ev.ModSeq != 3 || ev.Seq != 3 {
			t.Fatalf("got %+v, want modseq 3 seq 3", ev)
		}
		quiet(t, s)
	}
}
