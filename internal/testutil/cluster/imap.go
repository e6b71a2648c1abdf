package cluster

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Event is one untagged response a Watcher received outside of a
// command's own data (RFC 3501 §7.4.1: EXISTS, EXPUNGE, FETCH FLAGS),
// with the time it arrived.
type Event struct {
	Kind  string   // "EXISTS", "EXPUNGE" or "FETCH"
	Num   uint32   // EXISTS: the message count; EXPUNGE, FETCH: the sequence number
	UID   imap.UID // FETCH: the UID when the server sent one
	Flags []string // FETCH: the flags without \Recent, sorted
	At    time.Time
}

// Watcher is a go-imap v2 client that records unilateral responses, for
// tests that wait for a change made through another server.
type Watcher struct {
	*imapclient.Client
	Name string // for messages: the node it is connected to

	mu     sync.Mutex
	events []Event
	signal chan struct{} // one token after each new event
	idle   *imapclient.IdleCommand
}

// Login connects to addr, logs in and returns the watcher; it is closed
// at t.Cleanup.
func Login(t testing.TB, name, addr, user, password string) *Watcher {
	t.Helper()
	w := &Watcher{Name: name, signal: make(chan struct{}, 1)}
	c, err := imapclient.DialInsecure(addr, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					w.add(Event{Kind: "EXISTS", Num: *d.NumMessages})
				}
			},
			Expunge: func(seq uint32) { w.add(Event{Kind: "EXPUNGE", Num: seq}) },
			Fetch: func(m *imapclient.FetchMessageData) {
				b, err := m.Collect()
				if err != nil {
					return
				}
				w.add(Event{Kind: "FETCH", Num: b.SeqNum, UID: b.UID, Flags: FlagStrings(b.Flags)})
			},
		},
	})
	if err != nil {
		t.Fatalf("%s: IMAP dial %s: %v", name, addr, err)
	}
	w.Client = c
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("%s: LOGIN %s: %v", name, user, err)
	}
	return w
}

func (w *Watcher) add(e Event) {
	e.At = time.Now()
	w.mu.Lock()
	w.events = append(w.events, e)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// Idle starts IDLE (RFC 2177).
func (w *Watcher) Idle(t testing.TB) {
	t.Helper()
	cmd, err := w.Client.Idle()
	if err != nil {
		t.Fatalf("%s: IDLE: %v", w.Name, err)
	}
	w.idle = cmd
}

// Done ends IDLE and waits for its tagged OK.
func (w *Watcher) Done(t testing.TB) {
	t.Helper()
	if w.idle == nil {
		return
	}
	if err := w.idle.Close(); err != nil {
		t.Fatalf("%s: IDLE DONE: %v", w.Name, err)
	}
	if err := w.idle.Wait(); err != nil {
		t.Fatalf("%s: IDLE: %v", w.Name, err)
	}
	w.idle = nil
}

// Events returns the events recorded so far and forgets them.
func (w *Watcher) Events() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	ev := w.events
	w.events = nil
	return ev
}

// Wait waits up to d for an event matching match. It returns the
// matching event and forgets it and every event before it; ok is false
// when d passed first (nothing is forgotten then).
func (w *Watcher) Wait(d time.Duration, match func(Event) bool) (ev Event, ok bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		for i, e := range w.events {
			if match(e) {
				w.events = slices.Clone(w.events[i+1:])
				w.mu.Unlock()
				return e, true
			}
		}
		w.mu.Unlock()
		select {
		case <-w.signal:
		case <-deadline.C:
			return Event{}, false
		}
	}
}

// Pending returns the events recorded so far without forgetting them.
func (w *Watcher) Pending() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}

// FlagStrings returns the flags as strings without \Recent, sorted.
func FlagStrings(fl []imap.Flag) []string {
	out := []string{}
	for _, f := range fl {
		if !strings.EqualFold(string(f), `\Recent`) {
			out = append(out, string(f))
		}
	}
	slices.Sort(out)
	return out
}
