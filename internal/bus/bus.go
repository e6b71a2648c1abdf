// Package bus is the notification bus between bucketmail servers sharing
// one bucket and one metadata database (DESIGN §1, issue 6).
//
// Events are small hints, never the data: "account A, mailbox M (GUID) is
// at MODSEQ N because of new mail". A subscriber that receives one re-reads
// the store by MODSEQ (RFC 7162 §3). Delivery is best effort: events may be
// lost (bus down, slow subscriber, a server crash between commit and
// publish). Loss is made explicit: Subscription.Next returns ErrResync
// whenever the subscriber must assume it missed something, and the
// subscriber then re-reads everything it watches from the store.
//
// Resync is signalled when
//   - a per-origin sequence number jumps (a gap: an event was lost),
//   - the subscription's bounded queue overflows (the publisher never
//     waits for a slow subscriber; the queue is dropped instead),
//   - the bus connection comes (back) up after being down, and
//   - an event in an unknown wire version arrives.
//
// Every implementation (local, nats, pg) feeds received events into a Hub,
// which does the per-account fan-out, gap detection and overflow handling,
// so all of them behave the same; bustest.Run checks that.
//
// Wire format: JSON, versioned, see Marshal. At most MaxPayload bytes, the
// PostgreSQL NOTIFY limit.
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Errors.
var (
	// ErrResync: events may have been missed; re-read the store.
	ErrResync = errors.New("bus: resync")
	// ErrClosed: the bus or the subscription is closed.
	ErrClosed = errors.New("bus: closed")
	// ErrInvalid: a malformed event or configuration.
	ErrInvalid = errors.New("bus: invalid")
	// ErrUnavailable: the bus transport cannot be reached (temporary).
	ErrUnavailable = errors.New("bus: unavailable")
)

// Kind is what changed.
type Kind uint8

// Kinds. The zero Kind is invalid.
const (
	KindNewMail         Kind = iota + 1 // messages appended to Mailbox (EXISTS)
	KindFlags                           // flags changed in Mailbox (FETCH FLAGS)
	KindExpunge                         // messages expunged from Mailbox (EXPUNGE)
	KindMailboxList                     // mailboxes created, deleted or renamed in Account; Mailbox empty
	KindAccountUpdating                 // Account is about to change (password, quota, …): bypass caches
	KindAccountUpdated                  // Account has changed: caches may be refilled
	// KindAccountDeleted: Account and all its mail are gone; drop
	// everything cached of it. Added after wire version 1 shipped: a
	// server that does not know it resyncs (ErrInvalid from Unmarshal).
	KindAccountDeleted
)

var kindNames = [...]string{"", "new", "flags", "expunge", "mailboxes", "updating", "updated", "deleted"}

// String returns the wire name ("new", "flags", …).
func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

func parseKind(s string) (Kind, bool) {
	for i := 1; i < len(kindNames); i++ {
		if kindNames[i] == s {
			return Kind(i), true
		}
	}
	return 0, false
}

// Event is one hint. Publishers fill Kind, Account, Mailbox and ModSeq;
// the bus fills Origin, Boot and Seq.
type Event struct {
	Kind    Kind
	Account string // account name, never empty
	Mailbox string // mailbox GUID; empty for account-level kinds
	ModSeq  uint64 // the mailbox's HIGHESTMODSEQ after the change; 0 if none
	// Address is the user database address (userdb.User.Address) of an
	// account-level event (updating, updated, deleted) when the
	// publisher knows it: auth caches are keyed by address, and an
	// address may differ from its account name (userdb.User.Account).
	// Empty: receivers use Account as the address. Servers that predate
	// the field ignore it.
	Address string

	Origin string // node name of the publishing server
	Boot   uint64 // identifies one run of the publishing bus (random, nonzero)
	Seq    uint64 // per (Origin, Boot) sequence number, from 1, no gaps as published
}

// Validate checks the publisher's fields.
func (e Event) Validate() error {
	if e.Kind == 0 || int(e.Kind) >= len(kindNames) {
		return fmt.Errorf("bus: event: kind %d: %w", e.Kind, ErrInvalid)
	}
	if e.Account == "" {
		return fmt.Errorf("bus: event: empty account: %w", ErrInvalid)
	}
	if n := len(e.Account) + len(e.Mailbox) + len(e.Origin) + len(e.Address); n > MaxNames {
		return fmt.Errorf("bus: event: names %d bytes > %d: %w", n, MaxNames, ErrInvalid)
	}
	return nil
}

// Publisher sends events. Publish never waits for subscribers; it may
// wait for the transport (bounded by ctx). A nil error means the event was
// handed to the transport, not that anyone received it.
type Publisher interface {
	// Publish sends ev with the bus's Origin, Boot and the next Seq.
	// Errors: ErrInvalid (ev.Validate or too large), ErrClosed,
	// ErrUnavailable (transport down; the event is lost and receivers will
	// see a gap).
	Publish(ctx context.Context, ev Event) error
}

// Subscriber hands out subscriptions.
type Subscriber interface {
	// Subscribe returns a subscription to the events of account, or of all
	// accounts when account is "". queue bounds the events held for a
	// slow reader (0: the bus default, 1024); on overflow the queue is
	// dropped and Next returns ErrResync. The caller reads the store
	// after Subscribe returns: events from before that are not delivered.
	// Events this server published itself are delivered too (Origin is
	// its node name). Errors: ErrClosed.
	Subscribe(ctx context.Context, account string, queue int) (*Subscription, error)
}

// Skipper is implemented by buses whose events carry a per-origin
// sequence (all three here). Skip consumes the next sequence number
// without sending anything, so receivers see a gap at this origin's next
// event and resync: a publisher that had to drop an event before handing
// it to the bus (its own queue overflowed) calls it.
type Skipper interface {
	Skip()
}

// Booter is implemented by buses that stamp their own events (local,
// nats, pg): Boot returns the Boot of this run's events (random, nonzero,
// constant for the bus's life). An event is this server's own only if
// both its Origin and its Boot are this bus's: another server given the
// same node name publishes under another Boot (issue: duplicate node
// names).
type Booter interface {
	Boot() uint64
}

// Bus is a Publisher and Subscriber with a lifetime.
type Bus interface {
	Publisher
	Subscriber
	// Healthy reports whether the transport is connected now. While it is
	// false, servers poll the store; when it becomes true again every
	// subscription gets ErrResync.
	Healthy() bool
	// Close stops the bus: its goroutines end, Publish returns ErrClosed,
	// every Subscription's Next returns ErrClosed. Close is idempotent.
	Close() error
}

// MaxPayload is the largest encoded event, in bytes (PostgreSQL NOTIFY
// payloads must be shorter than 8000 bytes).
const MaxPayload = 7999

// MaxNames bounds len(Account)+len(Mailbox)+len(Origin)+len(Address) in bytes, so that
// every valid event of ordinary names fits MaxPayload (Marshal checks the
// encoding too: JSON escapes can grow a name up to six times).
const MaxNames = 4096

// WireVersion is the version Marshal writes.
const WireVersion = 1

type wire struct {
	V  int    `json:"v"`
	K  string `json:"k"`
	A  string `json:"a"`
	M  string `json:"m,omitempty"`
	MS uint64 `json:"ms,omitempty"`
	O  string `json:"o,omitempty"`
	B  uint64 `json:"b,omitempty"`
	S  uint64 `json:"s,omitempty"`
	AD string `json:"ad,omitempty"`
}

// Marshal encodes ev as JSON version 1:
//
//	{"v":1,"k":"new","a":"alice","m":"GUID","ms":42,"o":"node1","b":123,"s":7}
//	{"v":1,"k":"updating","a":"alice","o":"node1","b":123,"s":8,"ad":"alice@example.org"}
//
// Decoders ignore fields they do not know ("ad" was added within
// version 1), so a field may be added without a new version when
// ignoring it is safe; a new kind makes older decoders fail with
// ErrInvalid, and their buses resync.
//
// Errors: ErrInvalid when ev is invalid or the encoding exceeds MaxPayload.
func Marshal(ev Event) ([]byte, error) {
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(wire{V: WireVersion, K: ev.Kind.String(), A: ev.Account, M: ev.Mailbox, MS: ev.ModSeq, O: ev.Origin, B: ev.Boot, S: ev.Seq, AD: ev.Address})
	if err != nil {
		return nil, fmt.Errorf("bus: marshal: %w", err)
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("bus: marshal: %d bytes > %d: %w", len(b), MaxPayload, ErrInvalid)
	}
	return b, nil
}

// ErrVersion: an event in a wire version this server does not know
// (a newer server in the cluster). Receivers resync.
var ErrVersion = errors.New("bus: unknown wire version")

// Unmarshal decodes what Marshal wrote. Errors: ErrVersion, ErrInvalid.
func Unmarshal(b []byte) (Event, error) {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return Event{}, fmt.Errorf("bus: unmarshal: %v: %w", err, ErrInvalid)
	}
	if w.V != WireVersion {
		return Event{}, fmt.Errorf("bus: unmarshal: version %d: %w", w.V, ErrVersion)
	}
	k, ok := parseKind(w.K)
	if !ok {
		return Event{}, fmt.Errorf("bus: unmarshal: kind %q: %w", w.K, ErrInvalid)
	}
	ev := Event{Kind: k, Account: w.A, Mailbox: w.M, ModSeq: w.MS, Origin: w.O, Boot: w.B, Seq: w.S, Address: w.AD}
	if err := ev.Validate(); err != nil {
		return Event{}, err
	}
	return ev, nil
}
