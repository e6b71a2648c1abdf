package imapserver

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// dbUnreachable reports whether err says the metadata database could
// not be reached or lost the connection (the statement did not run):
// a network error (connection refused, reset, timeout), a broken or
// closed driver connection, or a server error of SQLSTATE class 08
// (connection exception) or 57P01..57P03 (server shutting down,
// backend terminated). The mail store passes such errors on unwrapped;
// a command that fails with one is answered NO [UNAVAILABLE] (RFC 5530),
// as a user database outage is, not NO [SERVERBUG].
func dbUnreachable(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var se interface{ SQLState() string } // *pgconn.PgError
	if errors.As(err, &se) {
		code := se.SQLState()
		return strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02" || code == "57P03"
	}
	return false
}

// syncFailLogEvery: while sessions keep failing to read mailbox changes,
// at most one line per this interval per server.
const syncFailLogEvery = time.Minute

// syncFailLog rate-limits the log of failed mailbox-change reads (sync):
// during a database outage every selected session fails at every poll
// (every 2 s with the bus down), and each used to log an ERROR. Now the
// first failure is logged at WARN, then at most one WARN per
// syncFailLogEvery for the whole server (with the number of failures
// since the last line), the others at DEBUG; the first success after
// failures is logged at INFO. The zero value is ready; safe for
// concurrent use.
type syncFailLog struct {
	failing atomic.Bool // fast path for ok

	mu       sync.Mutex
	since    time.Time // first failure of this run
	last     time.Time // last WARN line
	failures int       // failures since since
	unlogged int       // failures since last
}

// failed records a failure seen by a session logging to log.
func (f *syncFailLog) failed(log *slog.Logger, err error, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures++
	switch {
	case !f.failing.Load():
		f.failing.Store(true)
		f.since, f.last, f.failures, f.unlogged = now, now, 1, 0
		log.Warn("imap: reading mailbox changes failed; sessions try again at their next poll or command (logged at most once a minute until it works again)",
			slog.Any("err", err))
	case now.Sub(f.last) >= syncFailLogEvery:
		log.Warn("imap: reading mailbox changes still failing", slog.Int("failures", f.unlogged+1),
			slog.Duration("for", now.Sub(f.since).Round(time.Second)), slog.Any("err", err))
		f.last, f.unlogged = now, 0
	default:
		f.unlogged++
		log.Debug("imap: reading mailbox changes failed", slog.Any("err", err))
	}
}

// ok records a successful read; the first after failures is logged.
func (f *syncFailLog) ok(log *slog.Logger, now time.Time) {
	if !f.failing.Load() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.failing.Load() {
		return
	}
	f.failing.Store(false)
	log.Info("imap: reading mailbox changes works again", slog.Duration("failed_for", now.Sub(f.since).Round(time.Millisecond)),
		slog.Int("failures", f.failures))
}
