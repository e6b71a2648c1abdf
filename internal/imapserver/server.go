// Package imapserver is the IMAP engine: connection state machine
// (RFC 3501 §3, RFC 9051 §3), commands and extensions. It parses and
// encodes with imapwire and keeps mail state only through mailstore.
//
// Each connection is served by one goroutine that owns the socket; the only
// other goroutine a connection starts is the reader that waits for "DONE"
// during IDLE, which ends before IDLE returns. Responses are never written
// while a mailstore call is in progress: message data is copied out of
// mailstore callbacks first, then written.
//
// Sequence numbers (RFC 3501 §7.4.1, RFC 9051 §7.5.1): a selected session
// keeps its own sequence-number → UID map. It learns of other sessions'
// changes with Account.Changes and reports them (EXISTS, RECENT, FETCH
// FLAGS, EXPUNGE) only at the end of a command, before its tagged response,
// and during IDLE. EXPUNGE is withheld while answering FETCH, STORE and
// SEARCH (not their UID forms); withheld expunged messages keep their
// sequence numbers until reported.
package imapserver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/throttle"
)

// Options configure a Server. Store and Auth are required; the zero
// value of every other field is the documented default.
type Options struct {
	Store *mailstore.Store
	// Auth checks LOGIN and AUTHENTICATE PLAIN credentials; the
	// authenticated user's Account names the mail store account.
	Auth userdb.PassDB
	// TLS, when set, enables STARTTLS on plain listeners and is used by
	// ServeTLS listeners.
	TLS *tls.Config
	// AllowInsecureAuth allows LOGIN/AUTHENTICATE without TLS from
	// non-loopback addresses. Loopback clients may always authenticate.
	AllowInsecureAuth bool
	// MaxAppendSize bounds APPEND literals in bytes (default 50 MiB).
	MaxAppendSize int64
	// Logger receives connection and command logs (nil: discarded). Each
	// connection logs with conn, remote, user and mailbox attributes.
	Logger *slog.Logger
	// IdleTimeout is the autologout timer (RFC 3501 §5.4): a connection
	// that sends nothing for this long is closed. Default 30 minutes.
	IdleTimeout time.Duration
	// AuthFailureDelay is how long a failed LOGIN or AUTHENTICATE waits
	// before its NO, to slow down password guessing (like Dovecot's
	// auth_failure_delay). Default 1 second; negative disables it.
	AuthFailureDelay time.Duration
	// LiteralMinus advertises LITERAL- instead of LITERAL+ (RFC 7888 §4):
	// non-synchronizing literals are then limited to 4096 bytes.
	LiteralMinus bool
	// Trace logs every client and server line at slog.LevelDebug, with
	// LOGIN and AUTHENTICATE arguments redacted and literal data summarised.
	Trace bool
	// AddressPolicy normalises LOGIN and AUTHENTICATE user names (TOML
	// auth.local_part_case, auth.normalize); it must be Auth's. The zero
	// value (lower-cased, NFC) is the default.
	AddressPolicy userdb.AddressPolicy
	// ThrottleMaxDelay caps the growing wait before a login is checked,
	// per remote IP and per account (TOML auth.throttle_max_delay; see
	// userdb/throttle). 0: 15 s; negative: no throttling. Used when
	// Throttle is nil.
	ThrottleMaxDelay time.Duration
	// Throttle, if set, is the failed-login limiter (e.g. one shared by
	// several servers, or one with a test clock); nil: New makes one from
	// ThrottleMaxDelay.
	Throttle *throttle.Limiter
}

// Server serves IMAP on any number of listeners.
type Server struct {
	opts Options
	log  *slog.Logger

	nextID atomic.Uint64

	mu        sync.Mutex
	closing   bool
	closingCh chan struct{}
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup // one per connection goroutine

	recent recentTracker

	outPool sync.Pool // *outBuf: response buffers lent by waiting connections

	throttle *throttle.Limiter // nil: off

	syncFail syncFailLog // rate-limits "reading mailbox changes" failures
}

// New returns a server.
func New(opts Options) *Server {
	if opts.MaxAppendSize <= 0 {
		opts.MaxAppendSize = 50 << 20
	}
	if opts.AuthFailureDelay == 0 {
		opts.AuthFailureDelay = time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	thr := opts.Throttle
	if thr == nil {
		thr = throttle.New(throttle.Options{MaxDelay: opts.ThrottleMaxDelay})
	}
	return &Server{
		throttle:  thr,
		opts:      opts,
		log:       log,
		closingCh: make(chan struct{}),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		recent:    recentTracker{claimed: map[recentKey]uint32{}},
		outPool:   sync.Pool{New: newOutBuf},
	}
}

// Serve accepts connections on ln until Shutdown, then returns nil. With
// implicitTLS the connection starts with a TLS handshake (port 993 style),
// using Options.TLS, which must then be set. Serve closes ln.
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	if implicitTLS && s.opts.TLS == nil {
		ln.Close()
		return errors.New("imapserver: serve: implicit TLS without a TLS config")
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if implicitTLS {
			nc = tls.Server(nc, s.opts.TLS)
		}
		if !s.startConn(nc, implicitTLS) {
			return nil
		}
	}
}

// startConn registers and starts a connection goroutine. It reports false
// (and closes nc) when the server is shutting down.
func (s *Server) startConn(nc net.Conn, isTLS bool) bool {
	c := newConn(s, nc, isTLS)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		c.serve()
	}()
	return true
}

// isClosing reports whether Shutdown has begun. It takes no lock, so it
// may be called while holding a conn's mu.
func (s *Server) isClosing() bool {
	select {
	case <-s.closingCh:
		return true
	default:
		return false
	}
}

// Shutdown stops accepting, tells idle clients BYE and waits for commands
// in progress until ctx ends; then it fails their reads from the client,
// so a client stalled inside a literal gets "* BYE" too (written with a
// one-second deadline), closes what remains after shutdownGrace and
// returns ctx.Err(). It returns nil when every connection ended in time.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.closingCh)
	}
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// Connections waiting for a command are woken by a read deadline in
	// the past; they say BYE and close. Those in a command finish it first.
	for _, c := range conns {
		c.wakeIfWaiting()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	// Commands still running: those blocked reading from the client (an
	// APPEND literal, say) fail their read at once, and every connection
	// says BYE within a short write deadline (conn.serve); then whatever
	// is left is closed.
	s.mu.Lock()
	for c := range s.conns {
		c.stopReading()
	}
	s.mu.Unlock()
	select {
	case <-done:
		return ctx.Err()
	case <-time.After(shutdownGrace):
	}
	s.mu.Lock()
	for c := range s.conns {
		c.forceClose()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// shutdownGrace is how long Shutdown waits, after its context ends, for
// connections stopped mid-command to say BYE; it is also the write
// deadline of that BYE.
const shutdownGrace = time.Second

// recentKey names a mailbox for \Recent bookkeeping.
type recentKey struct {
	account   string
	mailboxID int64
}

// recentTracker decides which session sees a message as \Recent (RFC 3501
// §2.3.2): the first session to select the mailbox (read-write) after the
// message arrived. It lives in memory: after a restart every message is
// recent to the first session again.
type recentTracker struct {
	mu      sync.Mutex
	claimed map[recentKey]uint32 // highest UID already given to a session
}

// claim returns the highest UID claimed before and, unless peek, records
// maxUID as claimed.
func (r *recentTracker) claim(k recentKey, maxUID uint32, peek bool) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.claimed[k]
	if !peek && maxUID > prev {
		r.claimed[k] = maxUID
	}
	return prev
}
