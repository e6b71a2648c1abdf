// Package local is the in-process bus for a single server: Publish hands
// the event straight to the subscriptions' bounded queues (it never waits
// for a reader) and the bus is always healthy.
package local

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/bucketmail/bucketmail/internal/bus"
)

var (
	_ bus.Bus     = (*Bus)(nil)
	_ bus.Skipper = (*Bus)(nil)
	_ bus.Booter  = (*Bus)(nil)
)

// Bus is an in-process bus. It starts no goroutines.
type Bus struct {
	hub *bus.Hub

	mu     sync.Mutex // serialises Stamp and Deliver: Seq order is delivery order
	st     *bus.Stamper
	closed bool
}

// New returns a bus whose events carry node as Origin.
func New(node string, log *slog.Logger) *Bus {
	return &Bus{hub: bus.NewHub(log), st: bus.NewStamper(node)}
}

// Publish implements bus.Publisher. Errors: bus.ErrInvalid, bus.ErrClosed.
func (b *Bus) Publish(ctx context.Context, ev bus.Event) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("bus/local: publish %s: %w", ev.Account, bus.ErrClosed)
	}
	b.hub.Deliver(b.st.Stamp(ev))
	return nil
}

// Skip implements bus.Skipper: the next event published leaves a gap
// in the sequence, so receivers resync.
func (b *Bus) Skip() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.st.Skip()
}

// Boot implements bus.Booter: the Boot of this bus's events.
func (b *Bus) Boot() uint64 { return b.st.Boot() }

// Subscribe implements bus.Subscriber.
func (b *Bus) Subscribe(ctx context.Context, account string, queue int) (*bus.Subscription, error) {
	return b.hub.Subscribe(account, queue)
}

// Healthy is always true.
func (b *Bus) Healthy() bool { return true }

// Close implements bus.Bus.
func (b *Bus) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.hub.Close()
	return nil
}
