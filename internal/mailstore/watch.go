package mailstore

import "sync"

// hub fans change notifications out to the watchers of an account, in
// process. It is the seam where a bus (DESIGN §1) plugs in later: publish
// will also send a hint to other nodes, and hints from them will call
// publish locally.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{} // account name → watchers
	// onPublish, if set (before use), is called with the account of every
	// publish: the journal writer marks the account dirty (journal.go).
	onPublish func(account string)
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

// publish wakes every watcher of account without blocking.
func (h *hub) publish(account string) {
	if h.onPublish != nil {
		h.onPublish(account)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs[account] {
		select {
		case c <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}
