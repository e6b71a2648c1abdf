package cluster

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/bus"
	busnats "github.com/bucketmail/bucketmail/internal/bus/nats"
	buspg "github.com/bucketmail/bucketmail/internal/bus/pg"
)

// Spy listens on the cluster's bus (with the bus package the servers
// use, under node name "spy") and records every event of every account,
// so tests can check what a server or a CLI command published.
type Spy struct {
	mu     sync.Mutex
	events []bus.Event
}

// Spy connects to the cluster's bus and waits (up to 10 s) until it is
// subscribed. It stops at t.Cleanup.
func (c *Cluster) Spy(t testing.TB) *Spy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.DiscardHandler)
	var b bus.Bus
	var err error
	if c.NATS != nil {
		b, err = busnats.Open(ctx, busnats.Config{URL: c.BusURL, Node: "spy", Logger: log})
	} else {
		b, err = buspg.Open(ctx, buspg.Config{URL: c.BusURL, Node: "spy", Logger: log})
	}
	if err != nil {
		cancel()
		t.Fatalf("cluster: spy: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !b.Healthy() {
		if time.Now().After(deadline) {
			cancel()
			b.Close()
			t.Fatalf("cluster: spy: bus %s not healthy after 10s", c.BusURL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	sub, err := b.Subscribe(ctx, "", 4096)
	if err != nil {
		cancel()
		b.Close()
		t.Fatalf("cluster: spy: subscribe: %v", err)
	}
	s := &Spy{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := sub.Next(ctx)
			if errors.Is(err, bus.ErrResync) {
				continue
			}
			if err != nil {
				return
			}
			s.mu.Lock()
			s.events = append(s.events, ev)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		sub.Close()
		b.Close()
		<-done
	})
	return s
}

// Events returns the events received so far, in order of arrival.
func (s *Spy) Events() []bus.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// WaitFor waits up to d until match has accepted an event and returns
// it; ok is false when d passed first.
func (s *Spy) WaitFor(d time.Duration, match func(bus.Event) bool) (bus.Event, bool) {
	deadline := time.Now().Add(d)
	for {
		for _, ev := range s.Events() {
			if match(ev) {
				return ev, true
			}
		}
		if time.Now().After(deadline) {
			return bus.Event{}, false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
