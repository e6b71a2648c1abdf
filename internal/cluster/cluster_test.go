package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob/fs"
	"github.com/bucketmail/bucketmail/internal/bus"
	busnats "github.com/bucketmail/bucketmail/internal/bus/nats"
	buspg "github.com/bucketmail/bucketmail/internal/bus/pg"
	"github.com/bucketmail/bucketmail/internal/cache"
	"github.com/bucketmail/bucketmail/internal/cluster"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/metrics"
	"github.com/bucketmail/bucketmail/internal/testutil/dynalite"
	"github.com/bucketmail/bucketmail/internal/testutil/natsd"
	"github.com/bucketmail/bucketmail/internal/testutil/pgsrv"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/authcache"
	"github.com/bucketmail/bucketmail/internal/userdb/dynamodb"
	"github.com/bucketmail/bucketmail/internal/userdb/embedded"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
	"github.com/bucketmail/bucketmail/internal/userdb/sqldb"
)

// transport opens buses for node names on one shared server, and stops
// and restarts that server.
type transport struct {
	name        string
	open        func(t *testing.T, node string) bus.Bus
	stop, start func(t *testing.T)
}

func natsTransport(t *testing.T) transport {
	srv := natsd.Start(t)
	return transport{
		name: "nats",
		open: func(t *testing.T, node string) bus.Bus {
			b, err := busnats.Open(t.Context(), busnats.Config{URL: srv.URL, Node: node, ReconnectWait: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		},
		stop: func(t *testing.T) { srv.Stop() },
		start: func(t *testing.T) {
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func pgTransport(t *testing.T) transport {
	srv := pgsrv.Start(t)
	return transport{
		name: "postgres",
		open: func(t *testing.T, node string) bus.Bus {
			b, err := buspg.Open(t.Context(), buspg.Config{URL: srv.URL("postgres"), Node: node, RetryWait: 50 * time.Millisecond,
				PingInterval: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		},
		stop: func(t *testing.T) { srv.Stop() },
		start: func(t *testing.T) {
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// server is one bucketmail server's parts: its own connection to the
// shared SQLite index, its own read cache over the shared blob dir, its
// bus and Node.
type server struct {
	store *mailstore.Store
	cache *cache.Cache
	reg   *metrics.Registry
	bus   bus.Bus
	node  *cluster.Node
}

// shared is what the servers of one test share.
type shared struct {
	dbPath, blobDir string
}

func newShared(t *testing.T) shared {
	dir := t.TempDir()
	return shared{dbPath: filepath.Join(dir, "index.db"), blobDir: filepath.Join(dir, "blobs")}
}

func startServer(t *testing.T, sh shared, tr transport, node string, poll time.Duration, auth *authcache.Cache, now func() time.Time) *server {
	t.Helper()
	return startServerLog(t, sh, tr, node, poll, auth, now, nil)
}

// startServerLog is startServer with the Node logging to log (nil: discard).
func startServerLog(t *testing.T, sh shared, tr transport, node string, poll time.Duration, auth *authcache.Cache, now func() time.Time, log *slog.Logger) *server {
	t.Helper()
	ctx := t.Context()
	db, err := metadb.OpenSQLite(ctx, sh.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := fs.New(sh.blobDir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(ctx, cache.Config{Dir: filepath.Join(t.TempDir(), "cache")}, blobs, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &server{cache: c, reg: metrics.New(), bus: tr.open(t, node)}
	s.node, err = cluster.New(cluster.Options{Bus: s.bus, Node: node, Auth: auth, Cache: c, Metrics: s.reg,
		PollInterval: poll, ConsistencyWindow: 15 * time.Second, Now: now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s.store, err = mailstore.Open(ctx, mailstore.Options{DB: db, Blobs: c, SpoolDir: filepath.Join(t.TempDir(), "spool"), OnChange: s.node.OnChange})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.node.Start(ctx, s.store); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.node.Close(cctx); err != nil {
			t.Errorf("node %s: Close: %v", node, err)
		}
		s.store.Close()
	})
	return s
}

// metric returns the value of a metric family with no or one label.
func metric(t *testing.T, s *server, name string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	found := false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			found = true
			switch {
			case m.Counter != nil:
				v += m.Counter.GetValue()
			case m.Gauge != nil:
				v += m.Gauge.GetValue()
			}
		}
	}
	if !found {
		t.Fatalf("metric %s not registered", name)
	}
	return v
}

func waitHealthy(t *testing.T, s *server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.bus.Healthy() {
		if time.Now().After(deadline) {
			t.Fatal("bus not healthy after 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func appendMsg(t *testing.T, s *server, account, subject string) mailstore.AppendResult {
	t.Helper()
	a, err := s.store.Account(t.Context(), account)
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: a@example.org\r\nTo: " + account + "\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n"
	in, err := s.store.Spool(t.Context(), strings.NewReader(msg), true, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	r, err := a.Append(t.Context(), "INBOX", in, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// settle waits until b received every event a published (so no wake-up
// from before is still on its way).
func settle(t *testing.T, a, b *server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for metric(t, b, "bucketmail_bus_events_received_total") < metric(t, a, "bucketmail_bus_events_published_total") {
		if time.Now().After(deadline) {
			t.Fatalf("B received %v events, A published %v", metric(t, b, "bucketmail_bus_events_received_total"),
				metric(t, a, "bucketmail_bus_events_published_total"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// watch returns account's watcher on s.
func watch(t *testing.T, s *server, account string) <-chan struct{} {
	t.Helper()
	a, err := s.store.Account(t.Context(), account)
	if err != nil {
		t.Fatal(err)
	}
	c, stop := a.Watch()
	t.Cleanup(stop)
	return c
}

func drain(c <-chan struct{}) {
	select {
	case <-c:
	default:
	}
}

// woken waits up to max after start for a wake-up and returns how long
// after start it came.
func woken(t *testing.T, c <-chan struct{}, start time.Time, max time.Duration, what string) time.Duration {
	t.Helper()
	select {
	case <-c:
		return time.Since(start)
	case <-time.After(time.Until(start.Add(max))):
		t.Fatalf("%s: watcher not woken within %s", what, time.Since(start))
		return 0
	}
}

// TestCrossServer: two servers over one index and one blob store; a
// watcher on B is woken within 1 s of an append, a flag change and an
// expunge on A, and the expunged object leaves B's read cache.
func TestCrossServer(t *testing.T) {
	for _, mk := range []func(*testing.T) transport{natsTransport, pgTransport} {
		tr := mk(t)
		t.Run(tr.name, func(t *testing.T) {
			sh := newShared(t)
			a := startServer(t, sh, tr, "node-a", time.Second, nil, nil)
			b := startServer(t, sh, tr, "node-b", time.Second, nil, nil)
			waitHealthy(t, a)
			waitHealthy(t, b)
			const acct = "alice@example.org"
			appendMsg(t, a, acct, "first") // creates the account on A
			w := watch(t, b, acct)
			settle(t, a, b)
			drain(w)

			start := time.Now()
			res := appendMsg(t, a, acct, "second")
			d := woken(t, w, start, time.Second, "append on A")
			t.Logf("%s: B woken %s after the append on A", tr.name, d)

			// B reads the message body: now in B's read cache.
			ab, err := b.store.Account(t.Context(), acct)
			if err != nil {
				t.Fatal(err)
			}
			var key string
			err = ab.Messages(t.Context(), res.MailboxID, []uint32{res.UID}, func(m *mailstore.Message) error {
				key = m.BlobKey
				r, err := ab.OpenBody(t.Context(), m, 0, -1)
				if err != nil {
					return err
				}
				defer r.Close()
				_, err = io.Copy(io.Discard, r)
				return err
			})
			if err != nil || key == "" {
				t.Fatalf("read on B: key %q, %v", key, err)
			}
			if got := b.cache.Keys(key); len(got) != 1 {
				t.Fatalf("B's cache holds %q after the read, want [%s]", got, key)
			}

			aa, err := a.store.Account(t.Context(), acct)
			if err != nil {
				t.Fatal(err)
			}
			settle(t, a, b)
			drain(w)
			start = time.Now()
			if _, _, err := aa.StoreFlags(t.Context(), res.MailboxID, []uint32{res.UID}, mailstore.Add, []string{`\Deleted`}, 0); err != nil {
				t.Fatal(err)
			}
			d = woken(t, w, start, time.Second, "flags on A")
			t.Logf("%s: B woken %s after STORE on A", tr.name, d)

			settle(t, a, b)
			drain(w)
			start = time.Now()
			if got, err := aa.Expunge(t.Context(), res.MailboxID, []uint32{res.UID}); err != nil || len(got) != 1 {
				t.Fatalf("Expunge = %v, %v", got, err)
			}
			d = woken(t, w, start, time.Second, "expunge on A")
			t.Logf("%s: B woken %s after EXPUNGE on A", tr.name, d)
			deadline := time.Now().Add(5 * time.Second)
			for len(b.cache.Keys(key)) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("B's cache still holds %s 5 s after the expunge on A", key)
				}
				time.Sleep(10 * time.Millisecond)
			}
			// (The counter is added to just after the eviction.)
			for metric(t, b, "bucketmail_cache_remote_evictions_total") < 1 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := metric(t, b, "bucketmail_cache_remote_evictions_total"); got != 1 {
				t.Errorf("B remote evictions = %v, want 1", got)
			}
			if got := metric(t, a, "bucketmail_bus_events_published_total"); got < 4 {
				t.Errorf("A published %v events, want >= 4 (mailboxes/new, new, flags, expunge)", got)
			}
			if got := metric(t, b, "bucketmail_bus_events_received_total"); got < 4 {
				t.Errorf("B received %v events from A, want >= 4", got)
			}
			if got := metric(t, b, "bucketmail_bus_up"); got != 1 {
				t.Errorf("B bus_up = %v, want 1; healthy %v polls %v", got, b.bus.Healthy(), metric(t, b, "bucketmail_store_polls_total"))
			}

			// The account deleted on A: B drops everything cached of it.
			settle(t, a, b)
			drain(w)
			start = time.Now()
			res = appendMsg(t, a, acct, "third")
			woken(t, w, start, time.Second, "append on A")
			err = ab.Messages(t.Context(), res.MailboxID, []uint32{res.UID}, func(m *mailstore.Message) error {
				key = m.BlobKey
				r, err := ab.OpenBody(t.Context(), m, 0, -1)
				if err != nil {
					return err
				}
				defer r.Close()
				_, err = io.Copy(io.Discard, r)
				return err
			})
			if err != nil || len(b.cache.Keys(key)) != 1 {
				t.Fatalf("read on B: %v, cached %q", err, b.cache.Keys(key))
			}
			if err := a.store.DeleteAccount(t.Context(), acct); err != nil {
				t.Fatal(err)
			}
			deadline = time.Now().Add(5 * time.Second)
			for len(b.cache.Keys(key)) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("B's cache still holds %s 5 s after the account was deleted on A", key)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestBusDown: with the bus server stopped, B's watchers are woken by
// polling within the poll interval, bus_up is 0 and polls are counted;
// once it is back, events flow again (and B resynced).
func TestBusDown(t *testing.T) {
	const poll = 300 * time.Millisecond
	for _, mk := range []func(*testing.T) transport{natsTransport, pgTransport} {
		tr := mk(t)
		t.Run(tr.name, func(t *testing.T) {
			sh := newShared(t)
			a := startServer(t, sh, tr, "node-a", poll, nil, nil)
			b := startServer(t, sh, tr, "node-b", poll, nil, nil)
			waitHealthy(t, a)
			waitHealthy(t, b)
			const acct = "bob@example.org"
			appendMsg(t, a, acct, "before")
			w := watch(t, b, acct)

			tr.stop(t)
			deadline := time.Now().Add(10 * time.Second)
			for metric(t, b, "bucketmail_bus_up") != 0 {
				if time.Now().After(deadline) {
					t.Fatal("bus_up still 1 10 s after the bus server stopped")
				}
				time.Sleep(20 * time.Millisecond)
			}
			// B noticed (its first poll comes at once): from now on it
			// polls every poll interval.
			for metric(t, b, "bucketmail_store_polls_total") < 1 {
				if time.Now().After(deadline) {
					t.Fatal("B did not poll within 10 s of the bus going down")
				}
				time.Sleep(10 * time.Millisecond)
			}
			drain(w)
			appendMsg(t, a, acct, "while down")
			committed := time.Now()
			d := woken(t, w, committed, poll+time.Second, "append on A, bus down")
			// Within the poll interval; the margin is for a loaded machine.
			if d > 2*poll {
				t.Errorf("bus down: B woken %s after the commit, want within the poll interval %s", d, poll)
			}
			t.Logf("%s: bus down: B woken by polling %s after the append on A committed (poll interval %s)", tr.name, d, poll)

			resyncs := metric(t, b, "bucketmail_bus_resyncs_total")
			tr.start(t)
			waitHealthy(t, a)
			waitHealthy(t, b)
			deadline = time.Now().Add(10 * time.Second)
			for metric(t, b, "bucketmail_bus_up") != 1 || metric(t, b, "bucketmail_bus_resyncs_total") <= resyncs {
				if time.Now().After(deadline) {
					t.Fatalf("10 s after restart: bus_up %v, resyncs %v (before %v)", metric(t, b, "bucketmail_bus_up"),
						metric(t, b, "bucketmail_bus_resyncs_total"), resyncs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			polls := metric(t, b, "bucketmail_store_polls_total")
			received := metric(t, b, "bucketmail_bus_events_received_total")
			// The PostgreSQL publisher's connection may have died with the
			// restart: its first publish reconnects. Deliver until B hears.
			deadline = time.Now().Add(10 * time.Second)
			for i := 0; metric(t, b, "bucketmail_bus_events_received_total") == received; i++ {
				if time.Now().After(deadline) {
					t.Fatal("no event received by B 10 s after the bus came back")
				}
				drain(w)
				start := time.Now()
				appendMsg(t, a, acct, fmt.Sprint("after ", i))
				woken(t, w, start, 2*time.Second, "append on A after restart")
			}
			if got := metric(t, b, "bucketmail_store_polls_total"); got != polls {
				t.Errorf("B still polling after the bus came back: polls %v → %v", polls, got)
			}
		})
	}
}

// gatedBus holds every Publish while gate is locked (a slow transport);
// everything else is the real bus.
type gatedBus struct {
	bus.Bus
	gate *sync.Mutex
}

func (g gatedBus) Publish(ctx context.Context, ev bus.Event) error {
	g.gate.Lock()
	g.gate.Unlock()
	return g.Bus.Publish(ctx, ev)
}

func (g gatedBus) Skip() { g.Bus.(bus.Skipper).Skip() }

// TestQueueOverflow: OnChange never blocks, even while the transport
// does; events beyond the queue are dropped and counted, and the
// receivers see a gap and resync.
func TestQueueOverflow(t *testing.T) {
	tr := natsTransport(t)
	sub := tr.open(t, "node-b")
	s, err := sub.Subscribe(t.Context(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var gate sync.Mutex
	a := gatedBus{Bus: tr.open(t, "node-a"), gate: &gate}
	reg := metrics.New()
	n, err := cluster.New(cluster.Options{Bus: a, Node: "node-a", Metrics: reg, Queue: 2})
	if err != nil {
		t.Fatal(err)
	}
	for !a.Healthy() || !sub.Healthy() {
		time.Sleep(10 * time.Millisecond)
	}
	next := func() (bus.Event, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return s.Next(ctx)
	}
	// A first event, so that B knows node-a's sequence.
	n.OnChange(mailstore.Change{Account: "carol", Kind: mailstore.ChangeNewMail, ModSeq: 1})
	if ev, err := next(); err != nil || ev.ModSeq != 1 {
		t.Fatalf("first event: %+v, %v", ev, err)
	}

	gate.Lock()
	start := time.Now()
	for i := range 200 {
		n.OnChange(mailstore.Change{Account: "carol", Kind: mailstore.ChangeFlags, ModSeq: uint64(i + 2)})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("200 OnChange calls against a stalled bus took %s", d)
	}
	gate.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	dropped := counter(t, reg, "bucketmail_bus_events_dropped_total")
	published := counter(t, reg, "bucketmail_bus_events_published_total") - 1
	// The queue holds 2, the publisher at most 1 more.
	if dropped < 197 || dropped+published != 200 {
		t.Fatalf("dropped %v + published %v, want 200 with at least 197 dropped", dropped, published)
	}
	ev, err := next()
	if err != bus.ErrResync {
		t.Fatalf("after the drops: Next = %+v, %v; want ErrResync", ev, err)
	}
}

// counter sums a counter family's values.
func counter(t *testing.T, reg *metrics.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var v float64
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// clock is a settable time for the auth cache and the Node.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestConsistencyWindow: a password changed by a writer that announces
// updating / write / updated on the bus works at once on server B (whose
// auth cache held the old one), the old password stops working at once,
// B's reads inside the window bypass its cache with consistent reads
// (DynamoDB ConsistentRead), and after the window B caches again. An
// account deleted elsewhere empties B's auth cache. On
// DynamoDB (dynalite) with the NATS bus and on PostgreSQL with the
// PostgreSQL bus.
func TestConsistencyWindow(t *testing.T) {
	type backend struct {
		name       string
		users      authcache.Backend
		manager    userdb.Manager
		consistent func(context.Context) context.Context
		// reads, if set, counts the backend's own reads: consistent and
		// eventually consistent (DynamoDB GetItem).
		reads func() (consistent, eventual int64)
		tr    transport
	}
	backends := []func(t *testing.T) backend{
		func(t *testing.T) backend {
			srv := dynalite.Start(t)
			srv.Setenv(t)
			d, err := dynamodb.Open(t.Context(), "dynamodb://cluster-window", nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.CreateTable(t.Context()); err != nil {
				t.Fatal(err)
			}
			reads := func() (int64, int64) { st := d.Stats(); return st.ConsistentReads, st.EventualReads }
			return backend{"dynamodb", d, d, dynamodb.WithConsistentRead, reads, natsTransport(t)}
		},
		func(t *testing.T) backend {
			tr := pgTransport(t)
			srv := pgsrv.Start(t)
			d, err := sqldb.OpenWith(t.Context(), srv.URL("postgres"), sqldb.Options{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			return backend{"postgres", d, d, nil, nil, tr}
		},
	}
	for _, mk := range backends {
		be := mk(t)
		t.Run(be.name, func(t *testing.T) {
			ctx := t.Context()
			const addr, oldPW, newPW = "dora@example.org", "old password", "new password"
			if err := be.manager.AddUser(ctx, addr, oldPW); err != nil {
				t.Fatal(err)
			}
			clk := &clock{t: time.Now()}
			var bypassReads atomic.Int64
			auth := authcache.New(be.users, authcache.Options{PositiveTTL: time.Hour, Now: clk.Now,
				BypassContext: func(ctx context.Context) context.Context {
					bypassReads.Add(1)
					if be.consistent != nil {
						return be.consistent(ctx)
					}
					return ctx
				}})
			sh := newShared(t)
			b := startServer(t, sh, be.tr, "node-b", time.Second, auth, clk.Now)
			writer := be.tr.open(t, "node-a")
			a, err := cluster.New(cluster.Options{Bus: writer, Node: "node-a"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.Close(context.Background()) })
			waitHealthy(t, b)
			for !writer.Healthy() {
				time.Sleep(10 * time.Millisecond)
			}

			login := func(pw string) error {
				_, err := auth.Authenticate(ctx, addr, pw)
				return err
			}
			for range 2 {
				if err := login(oldPW); err != nil {
					t.Fatalf("B: old password before the change: %v", err)
				}
			}
			if st := auth.Stats(); st.Hits != 1 || st.Misses != 1 {
				t.Fatalf("B before the change: %+v, want 1 hit 1 miss (the old password is cached)", st)
			}

			// The writer: updating, write, updated.
			if err := a.Announce(ctx, bus.KindAccountUpdating, addr, addr); err != nil {
				t.Fatal(err)
			}
			if err := be.manager.SetPassword(ctx, addr, newPW); err != nil {
				t.Fatal(err)
			}
			if err := a.Announce(ctx, bus.KindAccountUpdated, addr, addr); err != nil {
				t.Fatal(err)
			}
			written := time.Now()
			for login(oldPW) == nil {
				if time.Since(written) > time.Second {
					t.Fatal("B: the old password still works 1 s after the change")
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Logf("%s: the old password failed on B %s after the write", be.name, time.Since(written))
			if err := login(oldPW); !errors.Is(err, userdb.ErrAuthFailed) {
				t.Fatalf("B: old password after the change: %v, want ErrAuthFailed", err)
			}
			if err := login(newPW); err != nil {
				t.Fatalf("B: new password after the change: %v", err)
			}

			backendReads := func() (int64, int64) {
				if be.reads == nil {
					return 0, 0
				}
				return be.reads()
			}
			// Inside the window: every read goes to the backend, consistently.
			st0, br0 := auth.Stats(), bypassReads.Load()
			c0, e0 := backendReads()
			for range 2 {
				if err := login(newPW); err != nil {
					t.Fatal(err)
				}
				if u, err := auth.Lookup(ctx, addr); err != nil || u.Address != addr {
					t.Fatalf("Lookup = %+v, %v", u, err)
				}
			}
			st1, br1 := auth.Stats(), bypassReads.Load()
			if st1.Hits != st0.Hits || st1.Misses != st0.Misses+4 || br1 != br0+4 {
				t.Fatalf("inside the window: hits %d→%d, misses %d→%d, consistent reads %d→%d; want 4 uncached consistent reads",
					st0.Hits, st1.Hits, st0.Misses, st1.Misses, br0, br1)
			}
			c1, e1 := backendReads()
			if be.reads != nil && (c1 != c0+4 || e1 != e0) {
				t.Fatalf("inside the window: backend ConsistentRead reads %d→%d, eventual %d→%d; want 4 consistent, 0 eventual", c0, c1, e0, e1)
			}

			// After the window: cached again.
			clk.Add(15*time.Second + time.Millisecond)
			for range 2 {
				if err := login(newPW); err != nil {
					t.Fatal(err)
				}
			}
			st2, br2 := auth.Stats(), bypassReads.Load()
			if st2.Misses != st1.Misses+1 || st2.Hits != st1.Hits+1 || br2 != br1 {
				t.Fatalf("after the window: misses %d→%d, hits %d→%d, consistent reads %d→%d; want 1 miss, 1 hit, no consistent read",
					st1.Misses, st2.Misses, st1.Hits, st2.Hits, br1, br2)
			}
			if c2, e2 := backendReads(); be.reads != nil && (c2 != c1 || e2 != e1+1) {
				t.Fatalf("after the window: backend ConsistentRead reads %d→%d, eventual %d→%d; want 0 consistent, 1 eventual (the miss)", c1, c2, e1, e2)
			}

			// An account deleted elsewhere: B's auth cache keeps nothing.
			if st := auth.Stats(); st.Entries == 0 {
				t.Fatal("auth cache empty before the deletion; the check below would prove nothing")
			}
			if err := writer.Publish(ctx, bus.Event{Kind: bus.KindAccountDeleted, Account: "someone@example.org"}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for auth.Stats().Entries != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("B's auth cache holds %d entries 5 s after an account deletion", auth.Stats().Entries)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSameNodeName: two servers given the same node name still see each
// other's changes as events (not only through resyncs), count them as
// received, and each logs the duplicate-name warning once.
func TestSameNodeName(t *testing.T) {
	tr := natsTransport(t)
	sh := newShared(t)
	var logA, logB logBuf
	a := startServerLog(t, sh, tr, "node-x", time.Second, nil, nil, slog.New(slog.NewTextHandler(&logA, nil)))
	b := startServerLog(t, sh, tr, "node-x", time.Second, nil, nil, slog.New(slog.NewTextHandler(&logB, nil)))
	waitHealthy(t, a)
	waitHealthy(t, b)
	const acct = "dup@example.org"
	appendMsg(t, a, acct, "first")
	wb, wa := watch(t, b, acct), watch(t, a, acct)
	settle(t, a, b)

	for i, dir := range []struct {
		name     string
		from, to *server
		w        <-chan struct{}
	}{{"A→B", a, b, wb}, {"B→A", b, a, wa}, {"A→B again", a, b, wb}} {
		settle(t, dir.from, dir.to)
		drain(dir.w)
		resyncs := metric(t, dir.to, "bucketmail_bus_resyncs_total")
		received := metric(t, dir.to, "bucketmail_bus_events_received_total")
		start := time.Now()
		appendMsg(t, dir.from, acct, fmt.Sprint("msg ", i))
		d := woken(t, dir.w, start, 2*time.Second, dir.name)
		settle(t, dir.from, dir.to)
		if got := metric(t, dir.to, "bucketmail_bus_events_received_total"); got != received+1 {
			t.Errorf("%s: received %v → %v, want one more (the new-mail event)", dir.name, received, got)
		}
		if got := metric(t, dir.to, "bucketmail_bus_resyncs_total"); got != resyncs {
			t.Errorf("%s: resyncs %v → %v: woken by a resync, not by the event", dir.name, resyncs, got)
		}
		t.Logf("%s: woken %s after the append", dir.name, d)
	}
	// Own events are not counted as received: each received exactly
	// what the other published.
	settle(t, a, b)
	settle(t, b, a)
	if ra, pb := metric(t, a, "bucketmail_bus_events_received_total"), metric(t, b, "bucketmail_bus_events_published_total"); ra != pb {
		t.Errorf("A received %v, B published %v", ra, pb)
	}
	if rb, pa := metric(t, b, "bucketmail_bus_events_received_total"), metric(t, a, "bucketmail_bus_events_published_total"); rb != pa {
		t.Errorf("B received %v, A published %v", rb, pa)
	}
	const warning = "two servers use node name node-x; give each its own --node-name"
	for name, l := range map[string]*logBuf{"A": &logA, "B": &logB} {
		if n := strings.Count(l.String(), warning); n != 1 {
			t.Errorf("%s logged the duplicate-name warning %d times, want 1:\n%s", name, n, l.String())
		}
	}
}

// TestResyncFlushesAuthCache: account changes made while the bus was
// down (a user added, a password changed) are not served from B's auth
// cache once the bus is back: the resync empties it, negative answers
// included.
func TestResyncFlushesAuthCache(t *testing.T) {
	tr := natsTransport(t)
	sh := newShared(t)
	udb, err := metadb.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udb.Close() })
	users, err := embedded.New(t.Context(), udb, embedded.WithHasher(func(pw string) (string, error) {
		return password.HashArgon2ID(pw, password.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1})
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := users.AddUser(ctx, "alice@example.org", "old-pw"); err != nil {
		t.Fatal(err)
	}
	auth := authcache.New(users, authcache.Options{PositiveTTL: time.Hour, NegativeTTL: time.Hour})
	b := startServer(t, sh, tr, "node-b", 200*time.Millisecond, auth, nil)
	waitHealthy(t, b)

	// Cached on B: alice's old password, and "no such user" for newbie.
	for range 2 {
		if _, err := auth.Authenticate(ctx, "alice@example.org", "old-pw"); err != nil {
			t.Fatalf("alice, old password: %v", err)
		}
		if _, err := auth.Lookup(ctx, "newbie@example.org"); !errors.Is(err, userdb.ErrNotFound) {
			t.Fatalf("newbie before: %v, want ErrNotFound", err)
		}
	}
	if st := auth.Stats(); st.Entries != 2 || st.Hits != 2 {
		t.Fatalf("auth cache %+v, want 2 entries, 2 hits", st)
	}

	tr.stop(t)
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, b, "bucketmail_bus_up") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("bus_up still 1 10 s after the bus server stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Changes made elsewhere while the bus is down: no event reaches B.
	if err := users.AddUser(ctx, "newbie@example.org", "new-user-pw"); err != nil {
		t.Fatal(err)
	}
	if err := users.SetPassword(ctx, "alice@example.org", "new-pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Lookup(ctx, "newbie@example.org"); !errors.Is(err, userdb.ErrNotFound) {
		t.Fatalf("newbie while the bus is down: %v, want the cached ErrNotFound", err)
	}

	resyncs := metric(t, b, "bucketmail_bus_resyncs_total")
	tr.start(t)
	deadline = time.Now().Add(10 * time.Second)
	for metric(t, b, "bucketmail_bus_resyncs_total") <= resyncs {
		if time.Now().After(deadline) {
			t.Fatal("no resync 10 s after the bus came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := auth.Stats(); st.Entries != 0 {
		t.Fatalf("auth cache after the resync: %d entries, want 0", st.Entries)
	}
	if u, err := auth.Lookup(ctx, "newbie@example.org"); err != nil || u.Address != "newbie@example.org" {
		t.Fatalf("newbie after the resync: %v, %v; want found", u, err)
	}
	if _, err := auth.Authenticate(ctx, "alice@example.org", "old-pw"); !errors.Is(err, userdb.ErrAuthFailed) {
		t.Fatalf("alice, old password after the resync: %v, want ErrAuthFailed", err)
	}
	if _, err := auth.Authenticate(ctx, "alice@example.org", "new-pw"); err != nil {
		t.Fatalf("alice, new password after the resync: %v", err)
	}
}
