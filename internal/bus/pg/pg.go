// Package pg is the bus over PostgreSQL LISTEN/NOTIFY (pgx v5), for
// clusters that already run PostgreSQL for metadata: no extra service.
//
// One dedicated connection LISTENs on Config.Channel; a goroutine owned by
// the Bus waits for notifications and reconnects (Config.RetryWait apart)
// when the connection drops. Healthy is true while it is listening; on
// every (re)connect all subscriptions get bus.ErrResync. Publishing uses a
// second connection (pg_notify($1,$2)), opened on demand and reopened after
// an error. Payloads are at most bus.MaxPayload (7999) bytes.
//
// PostgreSQL delivers notifications of one session in commit order, so the
// per-origin sequence is kept while the publishing connection lives.
package pg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bucketmail/bucketmail/internal/bus"
)

var (
	_ bus.Bus     = (*Bus)(nil)
	_ bus.Skipper = (*Bus)(nil)
	_ bus.Booter  = (*Bus)(nil)
)

// Config configures a PostgreSQL bus.
type Config struct {
	URL       string        // postgres://…, required
	Node      string        // this server's name, required; the events' Origin
	Channel   string        // NOTIFY channel, default "bucketmail_bus"
	RetryWait time.Duration // between reconnect attempts; default 500ms
	// PingInterval: a listener that heard nothing for this long pings the
	// server (5 s timeout) to find a dead connection without a TCP reset;
	// default 30s.
	PingInterval time.Duration
	Logger       *slog.Logger // nil: discard
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, fmt.Errorf("bus/pg: empty URL: %w", bus.ErrInvalid))
	} else if _, err := pgx.ParseConfig(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("bus/pg: URL: %v: %w", err, bus.ErrInvalid))
	}
	if c.Node == "" {
		errs = append(errs, fmt.Errorf("bus/pg: empty node name: %w", bus.ErrInvalid))
	}
	return errors.Join(errs...)
}

// Bus is a PostgreSQL LISTEN/NOTIFY bus.
type Bus struct {
	hub     *bus.Hub
	log     *slog.Logger
	cfg     *pgx.ConnConfig
	channel string
	wait    time.Duration
	ping    time.Duration
	up      atomic.Bool

	cancel context.CancelFunc // stops the listener
	done   chan struct{}      // closed when the listener has ended

	mu     sync.Mutex // serialises Stamp and NOTIFY; guards pub, closed
	st     *bus.Stamper
	pub    *pgx.Conn
	closed bool
}

// Open starts the listener and returns without waiting for the server
// (Healthy says when it listens). Errors: bus.ErrInvalid.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, _ := pgx.ParseConfig(cfg.URL)
	if pc.ConnectTimeout == 0 {
		pc.ConnectTimeout = 5 * time.Second
	}
	if cfg.Channel == "" {
		cfg.Channel = "bucketmail_bus"
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = 500 * time.Millisecond
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("bus", "pg")
	lctx, cancel := context.WithCancel(context.Background())
	b := &Bus{hub: bus.NewHub(log), log: log, cfg: pc, channel: cfg.Channel, wait: cfg.RetryWait, ping: cfg.PingInterval,
		cancel: cancel, done: make(chan struct{}), st: bus.NewStamper(cfg.Node)}
	go b.listen(lctx)
	return b, nil
}

// listen owns the listening connection until ctx ends.
func (b *Bus) listen(ctx context.Context) {
	defer close(b.done)
	for ctx.Err() == nil {
		err := b.listenOnce(ctx)
		if b.up.Swap(false) {
			b.log.Warn("bus: listener disconnected", "err", err)
		} else if ctx.Err() == nil {
			b.log.Debug("bus: listener connect failed", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(b.wait):
		}
	}
}

func (b *Bus) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, b.cfg)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(cctx)
		cancel()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{b.channel}.Sanitize()); err != nil {
		return err
	}
	// Resync first: a subscription made after Healthy turns true was
	// made while listening and has missed nothing.
	b.hub.ResyncAll()
	b.up.Store(true)
	b.log.Info("bus: listening", "channel", b.channel)
	for {
		wctx, cancel := context.WithTimeout(ctx, b.ping)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			// Quiet for PingInterval (a timeout leaves the connection usable).
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := b.hub.DeliverWire([]byte(n.Payload)); err != nil {
			b.log.Warn("bus: undecodable event", "err", err)
		}
	}
}

// Publish implements bus.Publisher: one pg_notify on the publishing
// connection. Errors: bus.ErrInvalid, bus.ErrClosed, bus.ErrUnavailable.
func (b *Bus) Publish(ctx context.Context, ev bus.Event) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("bus/pg: publish %s: %w", ev.Account, bus.ErrClosed)
	}
	data, err := bus.Marshal(b.st.Stamp(ev))
	if err != nil {
		return err
	}
	// A connection kept from before may have died with a server restart:
	// then try once more on a fresh one. Should the first NOTIFY have been
	// delivered after all, receivers drop the repeated Seq.
	for attempt := 0; ; attempt++ {
		reused := b.pub != nil
		if !reused {
			c, err := pgx.ConnectConfig(ctx, b.cfg)
			if err != nil {
				return fmt.Errorf("bus/pg: publish %s: %v: %w", ev.Account, err, bus.ErrUnavailable)
			}
			b.pub = c
		}
		_, err := b.pub.Exec(ctx, "SELECT pg_notify($1, $2)", b.channel, string(data))
		if err == nil {
			return nil
		}
		b.closePub()
		if !reused || attempt > 0 || ctx.Err() != nil {
			return fmt.Errorf("bus/pg: publish %s: %v: %w", ev.Account, err, bus.ErrUnavailable)
		}
	}
}

func (b *Bus) closePub() {
	if b.pub == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.Background(), time.Second)
	b.pub.Close(cctx)
	cancel()
	b.pub = nil
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

// Healthy reports whether the listening connection is up.
func (b *Bus) Healthy() bool { return b.up.Load() }

// Close stops the listener, waits for it and closes the connections.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.closePub()
	b.mu.Unlock()
	b.cancel()
	<-b.done
	b.hub.Close()
	return nil
}
