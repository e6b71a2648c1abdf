// Package cluster joins one bucketmail server to the others that share its
// bucket and metadata database (DESIGN §1 and §5, issue 6). A Node is the
// glue between the server's mail store, read cache and auth cache on one
// side and the notification bus (package bus) on the other.
//
// Out: every committed store change (mailstore.Options.OnChange = Node.OnChange)
// becomes a bus event:
//
//	mailstore.ChangeNewMail        → bus.KindNewMail
//	mailstore.ChangeFlags          → bus.KindFlags
//	mailstore.ChangeExpunge        → bus.KindExpunge
//	mailstore.ChangeMailboxes      → bus.KindMailboxList
//	mailstore.ChangeAccountDeleted → bus.KindAccountDeleted
//
// OnChange never blocks the committing goroutine: it puts the event in a
// bounded queue (Options.Queue) that one publisher goroutine empties. When
// the queue is full the event is dropped, counted, and the next event
// published leaves a gap in this node's sequence (bus.Skipper), so every
// receiver resyncs from the store.
//
// In: the Node subscribes to every account. An event from another origin:
//
//	new, flags, mailboxes  store.Notify(account): IDLE sessions re-read the
//	                       store and send EXISTS / FETCH / EXPUNGE where
//	                       RFC 3501 §7.4.1 allows
//	expunge                Notify, and the read cache drops the account's
//	                       cached message objects the index no longer
//	                       refers to (store.MissingBlobs)
//	deleted                Notify, every cached object of the account is
//	                       dropped and the auth cache is emptied
//	bus.ErrResync          store.NotifyAll(), the auth cache is emptied
//	                       (FlushAll: account changes made while events
//	                       were missed, such as a user added, deleted or
//	                       given a new password while the bus was down,
//	                       must not stay cached, negative answers
//	                       included), and the read cache drops every
//	                       cached message object the index no longer
//	                       refers to
//
// An event is from "another origin" unless both its Origin is this
// node's name and its Boot this bus run's (bus.Booter): two servers
// given the same node name still see each other's changes, and the
// first such event logs a warning ("two servers use node name X").
//
// The read-cache checks run in one goroutine of their own, requests
// coalescing, so a long check never holds up the handling of events.
//
// Account changes (any origin, this node's included): "updating" starts a
// consistency window for the event's address (Event.Address, or Account
// when empty): authcache.Bypass(address, now+ConsistencyWindow) sends its
// logins and lookups to the user database, uncached and with
// authcache.Options.BypassContext (consistent reads). "updated" flushes
// the address and starts the window again from now, so that reads right
// after the write are consistent too (an eventually consistent replica may
// still hold the old value) and nothing read before the write stays cached.
//
// Bus down (Bus.Healthy false, checked every PollInterval or 250 ms,
// whichever is shorter): a warning is
// logged once per outage and every PollInterval the Node calls
// store.NotifyAll(), so sessions poll the store, until the bus is back
// (logged; the bus then resyncs every subscription). The first poll is
// made as soon as the outage is noticed (within 250 ms; a bus that has
// not connected yet after Start gets one PollInterval first), so a
// change another server commits during an outage is seen within
// PollInterval plus that.
//
// Metrics (Options.Metrics): bucketmail_bus_up (gauge, 0/1),
// bucketmail_bus_events_published_total,
// bucketmail_bus_events_received_total (events from other origins),
// bucketmail_bus_events_dropped_total{reason="queue_full"|"publish_error"},
// bucketmail_bus_resyncs_total, bucketmail_store_polls_total,
// bucketmail_cache_remote_evictions_total (cached objects dropped because
// of another server's expunge or account deletion).
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucketmail/bucketmail/internal/bus"
	"github.com/bucketmail/bucketmail/internal/cache"
	"github.com/bucketmail/bucketmail/internal/journal"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/metrics"
	"github.com/bucketmail/bucketmail/internal/userdb/authcache"
)

// Defaults for the zero Options.
const (
	DefaultPollInterval      = 2 * time.Second
	DefaultConsistencyWindow = 15 * time.Second
	DefaultQueue             = 4096
	// publishTimeout bounds one Publish by the publisher goroutine.
	publishTimeout = 5 * time.Second
)

// Errors.
var (
	// ErrConfig: New was given unusable Options.
	ErrConfig = errors.New("cluster: bad options")
	// ErrStarted: Start was called twice.
	ErrStarted = errors.New("cluster: already started")
)

// Options configure a Node. Bus and Node are required.
type Options struct {
	Bus  bus.Bus
	Node string // this server's name: the Origin of its events
	// Auth is the server's auth cache; nil: none (windows are no-ops).
	Auth *authcache.Cache
	// Cache is the server's read cache; nil: none.
	Cache *cache.Cache
	// Metrics receives the Node's collectors; nil: not exported.
	Metrics *metrics.Registry
	// PollInterval: how often bus health is checked, and the store
	// polled while the bus is down. 0: DefaultPollInterval.
	PollInterval time.Duration
	// ConsistencyWindow: how long an address's reads bypass the auth
	// cache after "updating" / "updated". 0: DefaultConsistencyWindow.
	ConsistencyWindow time.Duration
	// Queue bounds the events waiting to be published. 0: DefaultQueue.
	Queue  int
	Logger *slog.Logger
	// Now is the clock for consistency windows (default time.Now).
	Now func() time.Time
}

// Node is one server's membership in the cluster. Create it with New
// before opening the store (its OnChange goes into mailstore.Options),
// Start it with the store, Close it before closing the bus.
type Node struct {
	o   Options
	log *slog.Logger

	q           chan bus.Event
	skipPending atomic.Int64         // events dropped since the last publish
	stopPub     chan context.Context // Close sends its ctx: drain until it ends
	pubDone     chan struct{}

	started   atomic.Bool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	store *mailstore.Store // set by Start

	// boot is the Boot of this node's own events (bus.Booter); 0 when
	// the bus does not tell (then Origin alone says what is own).
	boot uint64
	// dupWarned: the warning about another server with this node's
	// name was logged.
	dupWarned atomic.Bool

	// Cache checks run in their own goroutine (checker), so that a
	// long check never holds up the receiving loop; requests coalesce.
	checkMu     sync.Mutex
	checkAll    bool
	checkAccts  map[string]bool
	checkSignal chan struct{} // capacity 1

	m nodeMetrics
}

type nodeMetrics struct {
	up            prometheus.GaugeFunc
	published     prometheus.Counter
	received      prometheus.Counter
	droppedFull   prometheus.Counter
	droppedErr    prometheus.Counter
	resyncs       prometheus.Counter
	polls         prometheus.Counter
	remoteEvicted prometheus.Counter
}

func newMetrics(reg *metrics.Registry, b bus.Bus) (nodeMetrics, error) {
	ns := metrics.Namespace
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "bus_events_dropped_total",
		Help: "Events not handed to the bus: the publish queue was full, or the bus refused them."}, []string{"reason"})
	m := nodeMetrics{
		up: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "bus_up",
			Help: "1 while the notification bus is connected, 0 while the server polls the store instead."}, func() float64 {
			if b.Healthy() {
				return 1
			}
			return 0
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "bus_events_published_total",
			Help: "Events this server handed to the bus."}),
		received: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "bus_events_received_total",
			Help: "Events received from other servers."}),
		droppedFull: dropped.WithLabelValues("queue_full"),
		droppedErr:  dropped.WithLabelValues("publish_error"),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "bus_resyncs_total",
			Help: "Times events may have been missed (gap, overflow, reconnect) and every session re-read the store."}),
		polls: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "store_polls_total",
			Help: "Store polls (every session re-reads) made while the bus was down."}),
		remoteEvicted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "cache_remote_evictions_total",
			Help: "Cached objects dropped because another server expunged them or deleted their account."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.up, m.published, m.received, dropped, m.resyncs, m.polls, m.remoteEvicted} {
			if err := reg.Register(c); err != nil {
				return nodeMetrics{}, fmt.Errorf("cluster: metrics: %w", err)
			}
		}
	}
	return m, nil
}

// New returns a Node and starts its publisher goroutine. Errors:
// ErrConfig (no Bus or Node), or a metrics registration error.
func New(o Options) (*Node, error) {
	if o.Bus == nil || o.Node == "" {
		return nil, fmt.Errorf("%w: Bus and Node are required", ErrConfig)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.ConsistencyWindow <= 0 {
		o.ConsistencyWindow = DefaultConsistencyWindow
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m, err := newMetrics(o.Metrics, o.Bus)
	if err != nil {
		return nil, err
	}
	n := &Node{
		o:           o,
		log:         o.Logger.With("component", "cluster"),
		q:           make(chan bus.Event, o.Queue),
		stopPub:     make(chan context.Context, 1),
		pubDone:     make(chan struct{}),
		checkAccts:  map[string]bool{},
		checkSignal: make(chan struct{}, 1),
		m:           m,
	}
	if b, ok := o.Bus.(bus.Booter); ok {
		n.boot = b.Boot()
	}
	go n.publisher()
	return n, nil
}

// kinds maps store changes onto bus kinds.
var kinds = map[mailstore.ChangeKind]bus.Kind{
	mailstore.ChangeNewMail:        bus.KindNewMail,
	mailstore.ChangeFlags:          bus.KindFlags,
	mailstore.ChangeExpunge:        bus.KindExpunge,
	mailstore.ChangeMailboxes:      bus.KindMailboxList,
	mailstore.ChangeAccountDeleted: bus.KindAccountDeleted,
}

// OnChange queues the bus event for a committed store change; give it to
// mailstore.Options.OnChange. It never blocks: when the queue is full the
// event is dropped, counted, and receivers will see a gap (see the
// package doc).
func (n *Node) OnChange(ch mailstore.Change) {
	k, ok := kinds[ch.Kind]
	if !ok || ch.Account == "" {
		return
	}
	ev := bus.Event{Kind: k, Account: ch.Account, Mailbox: ch.MailboxGUID, ModSeq: ch.ModSeq}
	select {
	case n.q <- ev:
	default:
		n.m.droppedFull.Inc()
		n.skipPending.Add(1)
	}
}

// publisher owns the queue: it publishes events in order until Close,
// then what is left until Close's ctx ends.
func (n *Node) publisher() {
	defer close(n.pubDone)
	for {
		select {
		case ev := <-n.q:
			ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
			n.publish(ctx, ev)
			cancel()
		case ctx := <-n.stopPub:
			for {
				select {
				case ev := <-n.q:
					n.publish(ctx, ev)
				default:
					return
				}
			}
		}
	}
}

// publish hands one queued event to the bus (after a Skip when events
// were dropped since the last one).
func (n *Node) publish(ctx context.Context, ev bus.Event) {
	if n.skipPending.Swap(0) > 0 {
		if sk, ok := n.o.Bus.(bus.Skipper); ok {
			sk.Skip()
		}
	}
	if err := n.o.Bus.Publish(ctx, ev); err != nil {
		n.m.droppedErr.Inc()
		n.log.Debug("bus: publish failed; receivers will resync", "kind", ev.Kind, "account", ev.Account, "err", err)
		return
	}
	n.m.published.Inc()
}

// Announce publishes an account-level event (bus.KindAccountUpdating or
// bus.KindAccountUpdated) at once, bypassing the queue, and returns the
// bus's error. account is the account name, address the user database
// address (may equal account). Writers call it around an account change:
// Announce(updating), write, Announce(updated).
func (n *Node) Announce(ctx context.Context, kind bus.Kind, account, address string) error {
	if account == "" {
		account = address
	}
	ev := bus.Event{Kind: kind, Account: account}
	if address != account {
		ev.Address = address
	}
	if err := n.o.Bus.Publish(ctx, ev); err != nil {
		n.m.droppedErr.Inc()
		return fmt.Errorf("cluster: announce %s %s: %w", kind, address, err)
	}
	n.m.published.Inc()
	return nil
}

// Start subscribes to every account and starts the receiving and health
// goroutines, which run until Close. store is the server's mail store
// (opened with OnChange). Errors: ErrStarted, the bus's Subscribe error.
func (n *Node) Start(ctx context.Context, store *mailstore.Store) error {
	if store == nil {
		return fmt.Errorf("%w: Start needs the store", ErrConfig)
	}
	if !n.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	n.store = store
	sub, err := n.o.Bus.Subscribe(ctx, "", 0)
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel = cancel
	n.wg.Add(3)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		n.receive(rctx, sub)
	}()
	go func() {
		defer n.wg.Done()
		n.checker(rctx)
	}()
	go func() {
		defer n.wg.Done()
		n.watchHealth(rctx)
	}()
	return nil
}

// receive handles events until ctx ends or the bus closes.
func (n *Node) receive(ctx context.Context, sub *bus.Subscription) {
	for {
		ev, err := sub.Next(ctx)
		switch {
		case err == nil:
			if !n.own(ev) {
				n.m.received.Inc()
			}
			n.Handle(ctx, ev)
		case errors.Is(err, bus.ErrResync):
			n.log.Info("bus: resync: every session re-reads the store and the auth cache is emptied")
			n.resync()
			n.m.resyncs.Inc() // after: a reader of the counter sees the cache emptied
		default: // ErrClosed or ctx done
			return
		}
	}
}

// resync handles bus.ErrResync: events may have been missed, account
// changes among them (a password changed, a user added or deleted while
// the bus was down), so besides waking every session the whole auth
// cache is emptied, negative answers ("no such user") included.
func (n *Node) resync() {
	if n.o.Auth != nil {
		n.o.Auth.FlushAll()
	}
	n.store.NotifyAll()
	n.requestCheck("")
}

// own reports whether ev was published by this node: its Origin is this
// node's name and its Boot this bus run's (when the bus tells its Boot
// and the event carries one). An event with this node's name and
// another Boot comes from another server given the same node name: it
// is not own (its changes must wake this server's sessions), and a
// warning is logged once.
func (n *Node) own(ev bus.Event) bool {
	if ev.Origin != n.o.Node {
		return false
	}
	if n.boot == 0 || ev.Boot == 0 || ev.Boot == n.boot {
		return true
	}
	if n.dupWarned.CompareAndSwap(false, true) {
		n.log.Warn(fmt.Sprintf("two servers use node name %s; give each its own --node-name", n.o.Node),
			"node", n.o.Node, "boot", n.boot, "other_boot", ev.Boot)
	}
	return false
}

// Handle applies one event as described in the package doc. Events this
// node published (own: Origin and Boot) change only the consistency
// windows (the store woke this server's sessions itself). The control
// socket of serve hands events from `bucketmail user` here too.
func (n *Node) Handle(ctx context.Context, ev bus.Event) {
	switch ev.Kind {
	case bus.KindAccountUpdating, bus.KindAccountUpdated:
		n.window(ev)
		return
	}
	if n.own(ev) || n.store == nil {
		return
	}
	n.store.Notify(ev.Account)
	switch ev.Kind {
	case bus.KindExpunge:
		n.requestCheck(ev.Account)
	case bus.KindAccountDeleted:
		if n.o.Cache != nil {
			if k := n.o.Cache.EvictPrefix(journal.AccountPrefix(ev.Account)); k > 0 {
				n.m.remoteEvicted.Add(float64(k))
			}
		}
		if n.o.Auth != nil {
			// The auth cache is keyed by address and a deleted
			// account's addresses are not known here: empty it all
			// (deletions are rare).
			n.o.Auth.FlushAll()
		}
	}
}

// window starts (or restarts) the consistency window of ev's address.
func (n *Node) window(ev bus.Event) {
	if n.o.Auth == nil {
		return
	}
	addr := ev.Address
	if addr == "" {
		addr = ev.Account
	}
	until := n.o.Now().Add(n.o.ConsistencyWindow)
	n.o.Auth.Bypass(addr, until)
	n.log.Debug("consistency window", "kind", ev.Kind, "address", addr, "origin", ev.Origin, "until", until)
}

// requestCheck asks the checker to drop account's ("" for every
// account's) cached objects that the index no longer refers to.
func (n *Node) requestCheck(account string) {
	if n.o.Cache == nil {
		return
	}
	n.checkMu.Lock()
	if account == "" {
		n.checkAll = true
		clear(n.checkAccts)
	} else if !n.checkAll {
		n.checkAccts[account] = true
	}
	n.checkMu.Unlock()
	select {
	case n.checkSignal <- struct{}{}:
	default:
	}
}

// checker runs the requested cache checks until ctx ends.
func (n *Node) checker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.checkSignal:
		}
		n.checkMu.Lock()
		all, accts := n.checkAll, n.checkAccts
		n.checkAll, n.checkAccts = false, map[string]bool{}
		n.checkMu.Unlock()
		if all {
			n.evictMissing(ctx, "")
			continue
		}
		for a := range accts {
			n.evictMissing(ctx, a)
		}
	}
}

// evictMissing drops from the read cache the message objects of account
// ("" for every account) that the index no longer refers to.
func (n *Node) evictMissing(ctx context.Context, account string) {
	if n.o.Cache == nil {
		return
	}
	var keys []string
	if account != "" {
		keys = n.o.Cache.Keys(journal.AccountPrefix(account) + "msg/")
	} else {
		for _, k := range n.o.Cache.Keys("") {
			if strings.Contains(k, "/msg/") {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) == 0 {
		return
	}
	gone, err := n.store.MissingBlobs(ctx, keys)
	if err != nil {
		n.log.Warn("cache: cannot check cached objects against the index; they stay cached", "account", account, "err", err)
		return
	}
	if k := n.o.Cache.Evict(gone...); k > 0 {
		n.m.remoteEvicted.Add(float64(k))
		n.log.Debug("cache: dropped objects expunged elsewhere", "account", account, "objects", k)
	}
}

// healthCheckEvery is the longest time between two bus health checks.
const healthCheckEvery = 250 * time.Millisecond

// watchHealth checks the bus every min(PollInterval, healthCheckEvery)
// and, while it is down, polls the store every PollInterval.
func (n *Node) watchHealth(ctx context.Context) {
	every := min(n.o.PollInterval, healthCheckEvery)
	t := time.NewTicker(every)
	defer t.Stop()
	down := false
	started := time.Now()
	var since, lastPoll time.Time
	for {
		if n.o.Bus.Healthy() {
			if down {
				down = false
				n.log.Info("bus: back up; stopped polling the store", "down_for", time.Since(since).Round(time.Millisecond))
			}
		} else if now := time.Now(); down || now.Sub(started) >= n.o.PollInterval {
			// (A bus still connecting after Start gets one PollInterval
			// before it counts as down.)
			if !down {
				// Poll at once (events may have been lost while the
				// outage went unnoticed), then every PollInterval.
				down, since, lastPoll = true, now, time.Time{}
				n.log.Warn("bus: down; polling the store for changes made by other servers", "every", n.o.PollInterval)
			}
			if now.Sub(lastPoll) >= n.o.PollInterval-every/2 {
				lastPoll = now
				n.m.polls.Inc()
				n.store.NotifyAll()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close stops receiving and polling, then publishes the events still
// queued until ctx ends (those left are dropped and counted). It does
// not close the bus (the caller does, after Close). Idempotent; later
// OnChange calls are dropped.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		if n.cancel != nil {
			n.cancel()
		}
		n.stopPub <- ctx
	})
	n.wg.Wait()
	select {
	case <-n.pubDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: close: events still queued: %w", ctx.Err())
	}
}
