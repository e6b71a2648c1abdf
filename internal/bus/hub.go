package bus

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"sync"
	"time"
)

// DefaultQueue is the per-subscription queue bound when Subscribe gets 0.
const DefaultQueue = 1024

// Hub is the receiving half shared by the implementations: it fans events
// out to subscriptions by account, detects per-origin gaps and signals
// resync. Deliver never blocks on a subscriber. The zero Hub is not
// usable; use NewHub.
type Hub struct {
	log *slog.Logger

	mu      sync.Mutex
	closed  bool
	subs    map[string]map[*Subscription]struct{} // by account; "" for all accounts
	origins map[originKey]originState             // by Origin and Boot
	boots   map[string]int                        // Origin → its keys in origins
	now     func() time.Time
}

// originKey is one run of one publisher. Two servers that were given
// the same node name publish under different Boots: keeping their
// sequences apart lets each be checked for gaps on its own instead of
// every event of one looking like a restart of the other.
type originKey struct {
	origin string
	boot   uint64
}

type originState struct {
	seq  uint64
	seen time.Time // last event
}

// Origins are forgotten when there are more than maxOrigins and they
// were silent for originIdle (short-lived publishers such as CLI runs,
// whose origin names carry a process id, would otherwise accumulate).
// A forgotten origin's next event is taken as its first (no gap check).
const (
	maxOrigins = 1024
	originIdle = 10 * time.Minute
)

// NewHub returns an empty hub logging to log (nil: discard).
func NewHub(log *slog.Logger) *Hub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{log: log, subs: map[string]map[*Subscription]struct{}{}, origins: map[originKey]originState{}, boots: map[string]int{}, now: time.Now}
}

// Subscribe adds a subscription; see Subscriber. Errors: ErrClosed.
func (h *Hub) Subscribe(account string, queue int) (*Subscription, error) {
	if queue <= 0 {
		queue = DefaultQueue
	}
	s := &Subscription{hub: h, account: account, max: queue, ready: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	set := h.subs[account]
	if set == nil {
		set = map[*Subscription]struct{}{}
		h.subs[account] = set
	}
	set[s] = struct{}{}
	return s, nil
}

// DeliverWire decodes a received payload (Unmarshal) and delivers it. A
// payload it cannot decode (garbage, or a newer wire version) makes
// every subscription resync, and its error is returned for the log.
func (h *Hub) DeliverWire(data []byte) error {
	ev, err := Unmarshal(data)
	if err != nil {
		h.ResyncAll()
		return err
	}
	h.Deliver(ev)
	return nil
}

// Deliver hands a received event to the matching subscriptions.
// Sequences are kept per (Origin, Boot). An event whose Seq jumps ahead
// of the last one seen from the same Origin and Boot makes every
// subscription resync first (the lost event's account is unknown); a
// repeated or older Seq is dropped. The first event of a new Boot of a
// known Origin (a restart) must have Seq 1, else its first events were
// missed: resync. Seq 0 is not checked.
func (h *Hub) Deliver(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if ev.Seq != 0 {
		k := originKey{ev.Origin, ev.Boot}
		st, seen := h.origins[k]
		switch {
		case !seen && h.boots[ev.Origin] == 0:
			// First event from this origin since we started: anything
			// before is covered by the subscriber's initial store read.
		case !seen:
			if ev.Seq != 1 {
				h.log.Warn("bus: gap: origin restarted (or another server uses its node name), first events missed", "origin", ev.Origin, "seq", ev.Seq)
				h.resyncLocked()
			}
		case ev.Seq <= st.seq:
			h.log.Debug("bus: duplicate event dropped", "origin", ev.Origin, "seq", ev.Seq, "last", st.seq)
			return
		case ev.Seq != st.seq+1:
			h.log.Warn("bus: gap", "origin", ev.Origin, "missed", ev.Seq-st.seq-1)
			h.resyncLocked()
		}
		now := h.now()
		if !seen && len(h.origins) >= maxOrigins {
			for o, st := range h.origins {
				if now.Sub(st.seen) > originIdle {
					h.forgetLocked(o)
				}
			}
		}
		if !seen {
			h.boots[ev.Origin]++
		}
		h.origins[k] = originState{seq: ev.Seq, seen: now}
	}
	for s := range h.subs[ev.Account] {
		s.push(ev)
	}
	for s := range h.subs[""] {
		s.push(ev)
	}
}

// forgetLocked drops one origin run; h.mu held.
func (h *Hub) forgetLocked(k originKey) {
	delete(h.origins, k)
	if h.boots[k.origin]--; h.boots[k.origin] <= 0 {
		delete(h.boots, k.origin)
	}
}

// ResyncAll makes every subscription's next Next return ErrResync
// (transport reconnected, undecodable event, transport-side overflow).
func (h *Hub) ResyncAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resyncLocked()
}

func (h *Hub) resyncLocked() {
	for _, set := range h.subs {
		for s := range set {
			s.setResync()
		}
	}
}

// Close closes every subscription; later Subscribe calls fail with
// ErrClosed and Deliver does nothing. Idempotent.
func (h *Hub) Close() {
	h.mu.Lock()
	subs := h.subs
	h.subs = map[string]map[*Subscription]struct{}{}
	h.closed = true
	h.mu.Unlock()
	for _, set := range subs {
		for s := range set {
			s.markClosed()
		}
	}
}

func (h *Hub) remove(s *Subscription) {
	h.mu.Lock()
	if set := h.subs[s.account]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(h.subs, s.account)
		}
	}
	h.mu.Unlock()
}

// Subscription is one subscriber's bounded queue of events. It is safe
// for one reader and any number of Close callers.
type Subscription struct {
	hub     *Hub
	account string
	max     int
	ready   chan struct{} // capacity 1: "something changed"

	mu      sync.Mutex
	q       []Event
	resync  bool
	closed  bool
	dropped uint64
}

// Account returns the subscribed account ("" for all).
func (s *Subscription) Account() string { return s.account }

// Next returns the next event, or ErrResync when events may have been
// missed since the last call (the queue is then empty: re-read the store,
// then keep calling Next), or ErrClosed, or ctx's error. It blocks until
// one of those.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			return Event{}, ErrClosed
		case s.resync:
			s.resync = false
			s.mu.Unlock()
			return Event{}, ErrResync
		case len(s.q) > 0:
			ev := s.q[0]
			s.q[0] = Event{}
			s.q = s.q[1:]
			s.mu.Unlock()
			return ev, nil
		}
		s.mu.Unlock()
		select {
		case <-s.ready:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// Ready receives a value when Next may have something to return (for a
// select loop, e.g. IMAP IDLE); it may be spurious.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Dropped returns how many events were dropped by queue overflow.
func (s *Subscription) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Close ends the subscription: Next returns ErrClosed. Idempotent.
func (s *Subscription) Close() error {
	s.hub.remove(s)
	s.markClosed()
	return nil
}

func (s *Subscription) push(ev Event) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.q) >= s.max {
		// Overflow: a resync re-reads everything queued, so drop it all.
		s.dropped += uint64(len(s.q)) + 1
		clear(s.q)
		s.q = s.q[:0]
		s.resync = true
	} else {
		s.q = append(s.q, ev)
	}
	s.mu.Unlock()
	s.signal()
}

func (s *Subscription) setResync() {
	s.mu.Lock()
	s.resync = true
	s.q = s.q[:0]
	s.mu.Unlock()
	s.signal()
}

func (s *Subscription) markClosed() {
	s.mu.Lock()
	s.closed = true
	s.q = nil
	s.mu.Unlock()
	s.signal()
}

func (s *Subscription) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Stamper numbers a publisher's events: Origin, a random Boot per Stamper
// and Seq from 1. Callers serialise Stamp with sending so that Seq order
// is wire order.
type Stamper struct {
	origin string
	boot   uint64
	seq    uint64
}

// NewStamper returns a Stamper for node name origin.
func NewStamper(origin string) *Stamper {
	var b [8]byte
	rand.Read(b[:])
	boot := binary.BigEndian.Uint64(b[:]) | 1
	return &Stamper{origin: origin, boot: boot}
}

// Skip consumes one sequence number without an event (Skipper): the
// next Stamp leaves a gap that receivers detect.
func (st *Stamper) Skip() { st.seq++ }

// Boot returns the Boot this Stamper puts on every event (bus.Booter).
func (st *Stamper) Boot() uint64 { return st.boot }

// Stamp fills ev's Origin, Boot and next Seq.
func (st *Stamper) Stamp(ev Event) Event {
	st.seq++
	ev.Origin, ev.Boot, ev.Seq = st.origin, st.boot, st.seq
	return ev
}
