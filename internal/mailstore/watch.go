package mailstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// ChangeKind says what a committed write changed (Change.Kind).
type ChangeKind uint8

// Change kinds. They map one to one onto the bus kinds (package bus).
const (
	ChangeNewMail        ChangeKind = iota + 1 // messages appended or copied in (EXISTS)
	ChangeFlags                                // flags or keywords changed (FETCH FLAGS)
	ChangeExpunge                              // messages expunged or moved out (EXPUNGE)
	ChangeMailboxes                            // mailboxes created, deleted or renamed; account created
	ChangeAccountDeleted                       // the account and all its mail are gone
)

// Change describes one committed write, for Options.OnChange. It is a
// hint: a receiver re-reads the store (by MODSEQ) rather than trusting it.
type Change struct {
	Account string
	Kind    ChangeKind
	// MailboxGUID is the mailbox changed, when one mailbox was (may be
	// empty even then).
	MailboxGUID string
	// ModSeq is the mailbox's HIGHESTMODSEQ after the change, when known
	// (0 otherwise).
	ModSeq uint64
	// SelfDescribed: a new message (ChangeNewMail from Append) whose
	// object metadata already holds everything a rebuild needs — its
	// mailbox GUID, UIDVALIDITY, final UID, flags and INTERNALDATE — so
	// the journal need not hurry to record it (journal.go).
	SelfDescribed bool
	// Gone lists the blob keys whose last reference the change dropped
	// (ChangeExpunge): the objects are being deleted, so read caches
	// must drop them. Not sent on the bus; other servers find them with
	// Store.MissingBlobs.
	Gone []string
}

// hub fans change notifications out to the watchers of an account, in
// process, and hands every change to Options.OnChange (the bus side,
// package cluster). Changes made by other servers arrive through Notify.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{} // account name → watchers
	// onPublish, if set (before use), is called with every local
	// change: the journal writer marks the account dirty (journal.go).
	onPublish func(Change)
	// onChange is Options.OnChange.
	onChange func(Change)
}

func newHub() *hub { return &hub{subs: make(map[string]map[chan struct{}]struct{})} }

// subscribe registers a watcher of account. The channel has room for one
// value: wake-ups coalesce.
func (h *hub) subscribe(account string) (chan struct{}, func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	m := h.subs[account]
	if m == nil {
		m = make(map[chan struct{}]struct{})
		h.subs[account] = m
	}
	m[c] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return c, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs[account], c)
			if len(h.subs[account]) == 0 {
				delete(h.subs, account)
			}
			h.mu.Unlock()
		})
	}
}

// publish records a local, committed change: the journal hook, then
// OnChange, then the account's watchers.
func (h *hub) publish(ch Change) {
	if h.onPublish != nil {
		h.onPublish(ch)
	}
	if h.onChange != nil {
		h.onChange(ch)
	}
	h.wake(ch.Account)
}

// wake wakes every watcher of account without blocking.
func (h *hub) wake(account string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs[account] {
		select {
		case c <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// wakeAll wakes every watcher of every account.
func (h *hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.subs {
		for c := range m {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}

// watched returns the accounts that have watchers now.
func (h *hub) watched() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.subs))
	for a := range h.subs {
		out = append(out, a)
	}
	return out
}

// Notify wakes this process's watchers of account, for a change another
// server made (a bus event). Their sessions re-read the store.
func (s *Store) Notify(account string) { s.hub.wake(account) }

// NotifyAll wakes every watcher of every account: after a bus resync
// (events may have been lost) and on every poll while the bus is down.
func (s *Store) NotifyAll() { s.hub.wakeAll() }

// Watched returns the accounts that have sessions watching them now.
func (s *Store) Watched() []string { return s.hub.watched() }

// MissingBlobs returns the keys among keys that no message of any
// account points at any more (their objects are deleted or being
// deleted), in the order given. A server that hears of an expunge on
// another server drops these from its read cache. Errors: the database's.
func (s *Store) MissingBlobs(ctx context.Context, keys []string) ([]string, error) {
	present := make(map[string]bool, len(keys))
	for start := 0; start < len(keys); start += uidChunk {
		c := keys[start:min(start+uidChunk, len(keys))]
		args := make([]any, len(c))
		for i, k := range c {
			args[i] = k
		}
		got, err := queryStrings(ctx, s.db, "SELECT key FROM blobs WHERE key IN (?"+strings.Repeat(",?", len(c)-1)+")", args...)
		if err != nil {
			return nil, fmt.Errorf("mailstore: missing blobs: %w", err)
		}
		for _, k := range got {
			present[k] = true
		}
	}
	var out []string
	for _, k := range keys {
		if !present[k] {
			out = append(out, k)
		}
	}
	return out, nil
}
