// Package nats is the bus over NATS core pub/sub (nats.go client; the
// server is e.g. Debian's nats-server). All events go to one subject
// (Config.Subject); every server subscribes to it and filters by account
// locally, so per-origin gaps can be detected.
//
// The client reconnects forever (Config.ReconnectWait apart); while it is
// disconnected Healthy is false and publishes are buffered by nats.go
// (and lost if the buffer fills). On every (re)connect all subscriptions
// get bus.ErrResync. A NATS slow-consumer error also causes a resync.
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/bucketmail/bucketmail/internal/bus"
)

var (
	_ bus.Bus     = (*Bus)(nil)
	_ bus.Skipper = (*Bus)(nil)
	_ bus.Booter  = (*Bus)(nil)
)

// Config configures a NATS bus. The zero value of each optional field is
// the documented default.
type Config struct {
	URL           string        // nats://host:port, required
	Node          string        // this server's name, required; the events' Origin
	Subject       string        // default "bucketmail.bus"
	ReconnectWait time.Duration // between reconnect attempts; default 500ms
	// PingInterval: the client pings the server this often and drops the
	// connection after two unanswered pings; default 20s.
	PingInterval time.Duration
	Logger       *slog.Logger // nil: discard
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, fmt.Errorf("bus/nats: empty URL: %w", bus.ErrInvalid))
	}
	if c.Node == "" {
		errs = append(errs, fmt.Errorf("bus/nats: empty node name: %w", bus.ErrInvalid))
	}
	return errors.Join(errs...)
}

// Bus is a NATS bus. Its goroutines belong to the nats.go connection and
// end with Close.
type Bus struct {
	hub     *bus.Hub
	log     *slog.Logger
	subject string
	up      atomic.Bool // connected and our subscription confirmed
	nc      *natsgo.Conn
	sub     *natsgo.Subscription

	mu     sync.Mutex // serialises Stamp and Publish
	st     *bus.Stamper
	closed bool
}

// Open connects (or keeps trying in the background when the server is
// down: Open does not fail for that) and subscribes. Errors: bus.ErrInvalid.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Subject == "" {
		cfg.Subject = "bucketmail.bus"
	}
	if cfg.ReconnectWait <= 0 {
		cfg.ReconnectWait = 500 * time.Millisecond
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 20 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("bus", "nats")
	b := &Bus{hub: bus.NewHub(log), log: log, subject: cfg.Subject, st: bus.NewStamper(cfg.Node)}
	// Healthy turns true only after a round trip on the new connection:
	// then the server has our subscription and no event sent after that
	// is missed. nats.go calls the connect handler also after a
	// synchronous first connect (asynchronously); no subscription can have
	// missed anything then. opened orders the handlers after Open.
	opened := make(chan struct{})
	syncConnected := false
	markUp := func(nc *natsgo.Conn, initial bool) {
		<-opened
		resync := !initial || !syncConnected
		if err := nc.FlushTimeout(5 * time.Second); err != nil {
			log.Warn("bus: connected but not responding", "err", err)
			return
		}
		if resync {
			b.hub.ResyncAll()
		}
		b.up.Store(true)
		log.Info("bus: connected", "url", nc.ConnectedUrlRedacted())
	}
	nc, err := natsgo.Connect(cfg.URL,
		natsgo.Name("bucketmail "+cfg.Node),
		natsgo.MaxReconnects(-1),
		natsgo.RetryOnFailedConnect(true),
		natsgo.ReconnectWait(cfg.ReconnectWait),
		natsgo.PingInterval(cfg.PingInterval),
		natsgo.MaxPingsOutstanding(2),
		natsgo.ReconnectJitter(cfg.ReconnectWait/10, cfg.ReconnectWait/10),
		natsgo.ConnectHandler(func(nc *natsgo.Conn) { markUp(nc, true) }),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) { markUp(nc, false) }),
		natsgo.DisconnectErrHandler(func(nc *natsgo.Conn, err error) {
			b.up.Store(false)
			log.Warn("bus: disconnected", "err", err)
		}),
		natsgo.ErrorHandler(func(nc *natsgo.Conn, s *natsgo.Subscription, err error) {
			log.Warn("bus: error", "err", err)
			if errors.Is(err, natsgo.ErrSlowConsumer) {
				b.hub.ResyncAll()
			}
		}),
	)
	if err != nil {
		close(opened)
		return nil, fmt.Errorf("bus/nats: open %s: %v: %w", cfg.URL, err, bus.ErrInvalid)
	}
	b.nc = nc
	sub, err := nc.Subscribe(cfg.Subject, b.receive)
	if err != nil {
		close(opened)
		nc.Close()
		return nil, fmt.Errorf("bus/nats: subscribe %s: %v: %w", cfg.Subject, err, bus.ErrInvalid)
	}
	b.sub = sub
	syncConnected = nc.IsConnected()
	close(opened)
	return b, nil
}

func (b *Bus) receive(m *natsgo.Msg) {
	if err := b.hub.DeliverWire(m.Data); err != nil {
		b.log.Warn("bus: undecodable event", "err", err)
	}
}

// Publish implements bus.Publisher. It does not wait for the server.
// Errors: bus.ErrInvalid, bus.ErrClosed, bus.ErrUnavailable.
func (b *Bus) Publish(ctx context.Context, ev bus.Event) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("bus/nats: publish %s: %w", ev.Account, bus.ErrClosed)
	}
	data, err := bus.Marshal(b.st.Stamp(ev))
	if err != nil {
		return err
	}
	if err := b.nc.Publish(b.subject, data); err != nil {
		return fmt.Errorf("bus/nats: publish %s: %v: %w", ev.Account, err, bus.ErrUnavailable)
	}
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

// Healthy reports whether the client is connected to a server that has
// confirmed our subscription.
func (b *Bus) Healthy() bool { return b.up.Load() && b.nc.IsConnected() }

// Close implements bus.Bus.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.nc.Close()
	b.hub.Close()
	return nil
}
