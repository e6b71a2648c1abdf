// Package lmtp is the LMTP server (RFC 2033) in front of package delivery,
// built on github.com/emersion/go-smtp in LMTP mode. It listens on TCP or
// on a unix socket, so Postfix or Exim hand mail over as they do to
// Dovecot.
//
// Replies:
//
//	RCPT TO, unknown address        550 5.1.1
//	RCPT TO, disabled account       550 5.2.1
//	RCPT TO, user database down     451 4.3.0
//	MAIL FROM SIZE= over the limit  552 5.3.4
//	after DATA, one line per RCPT (RFC 2033 §4.2):
//	  stored (blob and index row durable)        250 2.0.0
//	  message over lmtp.max_message_size         552 5.3.4
//	  over quota                                 552 5.2.2
//	  storage unavailable or any other failure   451 4.3.0
//	  delivery cut off by shutdown               421 4.3.2
//
// A 250 is written only after delivery.Deliverer reports that the blob and
// the index row are durable.
//
// Shutdown stops accepting, tells every connection not inside DATA
// "421 4.3.2" and closes it (a transaction still collecting RCPTs is
// abandoned; the client retries it), lets DATA in progress finish until
// its context ends, then cancels the deliveries still running and fails
// reads from clients stalled mid-DATA, so every recipient is answered
// "421 4.3.2", then closes everything, at most a second after its context
// ended.
package lmtp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bucketmail/bucketmail/internal/delivery"
)

// Options configure a Server.
type Options struct {
	Deliverer *delivery.Deliverer
	// Hostname is sent in the greeting.
	Hostname string
	// MaxMessageSize is advertised as SIZE and enforced on the DATA stream
	// (bytes; <= 0: no limit).
	MaxMessageSize int64
	// TLS, when set, enables STARTTLS.
	TLS *tls.Config
	// ReadTimeout bounds each read from a client (default 5 minutes).
	ReadTimeout time.Duration
	// DeliveryTimeout bounds one DATA: reading, spooling and storing the
	// message for every recipient (default 10 minutes). Past it the
	// recipients not yet stored get 451 4.3.0.
	DeliveryTimeout time.Duration
	// MaxLineLength is the longest line accepted, command or message,
	// in bytes without its CRLF (default DefaultMaxLineLength). A longer
	// command line gets "500 5.4.0" and the connection is closed; a
	// longer message line fails the transaction with "554 5.6.0" for
	// every recipient, then the connection is closed (go-smtp).
	MaxLineLength int
	// MaxConnections caps concurrent connections over every listener
	// (default DefaultMaxConnections). Further clients wait, unanswered,
	// in the listen backlog until a connection ends.
	MaxConnections int
	Logger         *slog.Logger
}

// Defaults for Options. Memory bound: go-smtp buffers a whole command
// line (message lines are streamed), in a slice that grows by append and
// then a string copy, so one connection holds at most about
// 2.5 × MaxLineLength + 8 KiB; with the defaults, 128 × 2.5 MiB ≈ 320 MiB
// in the worst case, against a client that sends maximal command lines on
// every connection (measured: 32 connections each holding an unfinished
// 1 MiB line grew the heap by 43 MiB, 1.3 MiB each). Real mail needs far less: the longest line in the test
// corpus is 24,340 bytes, and Postfix splits lines at 2048 by default.
const (
	DefaultMaxLineLength  = 1 << 20
	DefaultMaxConnections = 128
)

// Server is an LMTP server. Create it with New; it may Serve several
// listeners; stop it with Shutdown.
type Server struct {
	opts Options
	srv  *smtp.Server
	log  *slog.Logger

	// ctx is the root of every delivery; cancel ends them at the hard stop.
	ctx    context.Context
	cancel context.CancelFunc

	// sizeFrom is go-smtp's SIZE line in the LHLO reply, sizeTo the one
	// sent instead (see New); nil without a size limit.
	sizeFrom, sizeTo []byte

	// slots holds one token per open connection (MaxConnections);
	// done is closed by Shutdown.
	slots chan struct{}
	done  chan struct{}

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[*trackedConn]struct{}
	shutting  bool
}

// New returns a server.
func New(opts Options) *Server {
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 5 * time.Minute
	}
	if opts.DeliveryTimeout == 0 {
		opts.DeliveryTimeout = 10 * time.Minute
	}
	if opts.MaxLineLength <= 0 {
		opts.MaxLineLength = DefaultMaxLineLength
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log, conns: make(map[*trackedConn]struct{}),
		slots: make(chan struct{}, opts.MaxConnections), done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.LMTP = true
	srv.Domain = opts.Hostname
	if opts.MaxMessageSize > 0 {
		// go-smtp's DATA reader fails once it has handed out
		// MaxMessageBytes bytes, before it sees the end-of-data line, so
		// a message of exactly the limit needs one more. go-smtp would
		// advertise that figure as SIZE: trackedConn.Write puts the real
		// limit in the LHLO reply instead (not after STARTTLS, where
		// go-smtp writes through its own TLS conn). MAIL FROM SIZE= is
		// checked against the real limit in session.Mail, and the
		// Deliverer's MaxSize enforces it on the message.
		srv.MaxMessageBytes = opts.MaxMessageSize + 1
		s.sizeFrom = []byte(fmt.Sprintf("250-SIZE %d\r\n", opts.MaxMessageSize+1))
		s.sizeTo = []byte(fmt.Sprintf("250-SIZE %d\r\n", opts.MaxMessageSize))
	}
	// RFC 5321 §4.5.3.1.6 caps lines at 1000 octets, but real mail breaks
	// that and Dovecot stores it. go-smtp applies one limit to command and
	// DATA lines alike, and buffers a whole command line, so the limit
	// bounds memory (see DefaultMaxLineLength). Its count includes the
	// CR and the previous line's LF: +2 lets a line of exactly
	// MaxLineLength bytes through.
	srv.MaxLineLength = opts.MaxLineLength + 2
	srv.MaxRecipients = 1000
	srv.TLSConfig = opts.TLS
	srv.ReadTimeout = opts.ReadTimeout
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = errorLog{log}
	s.srv = srv
	return s
}

// errorLog adapts go-smtp's logger to slog.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) {
	e.l.Warn("lmtp: " + strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (e errorLog) Println(v ...any) { e.l.Warn("lmtp: " + strings.TrimSpace(fmt.Sprintln(v...))) }

// Listen opens an LMTP listener: a unix socket when addr contains a "/"
// (a stale socket file left by a previous run is removed; the socket is
// made mode 0666, so access is controlled by its directory), else TCP
// host:port.
func Listen(addr string) (net.Listener, error) {
	if !strings.Contains(addr, "/") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("lmtp: listen %s: %w", addr, err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
		// Remove the socket only if nobody answers on it.
		if c, err := net.DialTimeout("unix", addr, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("lmtp: listen %s: a server is already listening there", addr)
		}
		if err := os.Remove(addr); err != nil {
			return nil, fmt.Errorf("lmtp: listen %s: remove stale socket: %w", addr, err)
		}
	}
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("lmtp: listen %s: %w", addr, err)
	}
	if err := os.Chmod(addr, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("lmtp: listen %s: %w", addr, err)
	}
	return ln, nil
}

// Serve accepts connections on ln until Shutdown, then returns nil. It
// returns the listener's error if it fails otherwise.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	err := s.srv.Serve(&listener{Listener: ln, s: s})
	if s.isShutting() {
		return nil
	}
	return err
}

func (s *Server) isShutting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutting
}

// Shutdown stops the server; see the package doc. It returns nil when
// every connection ended before ctx did, else ctx.Err(). It returns at
// most shutdownGrace after ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.shutting {
		close(s.done)
	}
	s.shutting = true
	lns := s.listeners
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() == 0 {
			s.srv.Close()
			s.cancel()
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			// Hard stop: deliveries still running see their context
			// cancelled, and reads from clients stalled mid-DATA fail
			// at once; each recipient is answered 421, then the
			// connection is told 421 and closed by closeIdle.
			s.cancel()
			s.mu.Lock()
			for c := range s.conns {
				if c.inData {
					c.Conn.SetReadDeadline(time.Now())
				}
			}
			s.mu.Unlock()
			deadline := time.Now().Add(shutdownGrace)
			for s.closeIdle() > 0 && time.Now().Before(deadline) {
				<-tick.C
			}
			s.srv.Close()
			return ctx.Err()
		}
	}
}

// shutdownGrace is how long Shutdown waits, after its context ends, for
// cancelled deliveries to answer 421.
const shutdownGrace = time.Second

const shutdownReply = "421 4.3.2 Service shutting down\r\n"

// closeIdle says 421 to and closes every connection not inside DATA
// (waiting for a command, in a transaction or not: the client retries the
// whole transaction later, and nothing was stored), and returns how many
// connections remain.
func (s *Server) closeIdle() int {
	type idleConn struct{ raw, w net.Conn }
	var idle []idleConn
	s.mu.Lock()
	for c := range s.conns {
		if !c.inData && !c.closing {
			c.closing = true
			idle = append(idle, idleConn{c.Conn, c.w})
		}
	}
	n := len(s.conns)
	s.mu.Unlock()
	for _, c := range idle {
		c.w.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(c.w, shutdownReply)
		c.raw.Close()
	}
	return n
}

// listener tracks accepted connections.
type listener struct {
	net.Listener
	s *Server
}

// Accept takes a connection slot before it accepts, so at most
// MaxConnections are open; the slot is given back when the connection is
// closed.
func (l *listener) Accept() (net.Conn, error) {
	for {
		select {
		case l.s.slots <- struct{}{}:
		case <-l.s.done:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.s.slots
			return nil, err
		}
		tc := &trackedConn{Conn: c, w: c, s: l.s}
		l.s.mu.Lock()
		ok := !l.s.shutting
		if ok {
			l.s.conns[tc] = struct{}{}
		}
		l.s.mu.Unlock()
		if ok {
			return tc, nil
		}
		io.WriteString(c, shutdownReply)
		c.Close()
		<-l.s.slots
	}
}

// trackedConn is a client connection. inData, closing and w are guarded
// by s.mu.
type trackedConn struct {
	net.Conn
	s       *Server
	w       net.Conn // where to write the shutdown reply (the TLS conn after STARTTLS)
	inData  bool     // inside DATA: reading, spooling or storing a message
	closing bool
}

// Write rewrites go-smtp's SIZE line of the LHLO reply to advertise the
// real limit (see New). go-smtp writes each reply line with one Write
// (textproto.Writer.PrintfLine flushes per line).
func (c *trackedConn) Write(p []byte) (int, error) {
	if c.s.sizeFrom != nil && bytes.Equal(p, c.s.sizeFrom) {
		if _, err := c.Conn.Write(c.s.sizeTo); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Close closes the connection and gives its slot back (once: go-smtp
// may close twice).
func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	_, open := c.s.conns[c]
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	if open {
		<-c.s.slots
	}
	return c.Conn.Close()
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	nc := c.Conn()
	_, isTLS := nc.(*tls.Conn)
	var tc *trackedConn
	switch x := nc.(type) {
	case *trackedConn:
		tc = x
	case *tls.Conn:
		tc, _ = x.NetConn().(*trackedConn)
	}
	if tc != nil {
		s.mu.Lock()
		tc.w = nc
		s.mu.Unlock()
	}
	remote := ""
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		remote = a.IP.String()
	}
	sess := &session{s: s, conn: tc, helo: c.Hostname(), remote: remote, tls: isTLS}
	sess.log = s.log.With("remote", nc.RemoteAddr().String(), "helo", sess.helo, "tls", isTLS)
	sess.log.Debug("lmtp: session started")
	return sess, nil
}

// session is one LMTP session (from LHLO to QUIT or STARTTLS).
type session struct {
	s      *Server
	conn   *trackedConn // nil if not accepted through Serve
	helo   string
	remote string
	tls    bool
	log    *slog.Logger

	id    string
	from  string
	rcpts []delivery.Recipient
}

var _ smtp.LMTPSession = (*session)(nil)

// setInData marks the connection inside DATA or not; it reports false,
// and marks nothing, when the server is shutting down and b is true.
func (ss *session) setInData(b bool) bool {
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if b && s.shutting {
		return false
	}
	if ss.conn != nil {
		ss.conn.inData = b
	}
	return true
}

func (ss *session) shutting() bool { return ss.s.isShutting() }

var (
	errShutdown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down"}
	errTemp     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	errTooBig   = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too big"}
)

// Mail implements smtp.Session (MAIL FROM).
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if max := ss.s.opts.MaxMessageSize; max > 0 && opts != nil && opts.Size > max {
		return errTooBig
	}
	if ss.shutting() {
		return errShutdown
	}
	ss.id = newID()
	ss.from = from
	ss.rcpts = ss.rcpts[:0]
	return nil
}

// Rcpt implements smtp.Session (RCPT TO): the recipient is resolved now,
// so unknown addresses get 550 5.1.1 before DATA.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ctx, cancel := context.WithTimeout(ss.s.ctx, 30*time.Second)
	defer cancel()
	rc, err := ss.s.opts.Deliverer.Resolve(ctx, to)
	if err != nil {
		if delivery.Temporary(err) {
			ss.log.Warn("lmtp: recipient lookup failed", "id", ss.id, "rcpt", to, "err", err)
		} else {
			ss.log.Info("lmtp: recipient rejected", "id", ss.id, "rcpt", to, "err", err)
		}
		return ss.s.reply(err)
	}
	ss.rcpts = append(ss.rcpts, rc)
	return nil
}

// Data implements smtp.Session; in LMTP mode go-smtp calls LMTPData.
func (ss *session) Data(r io.Reader) error {
	var first error
	ss.deliver(r, func(_ string, err error) {
		if first == nil {
			first = err
		}
	})
	return first
}

// LMTPData implements smtp.LMTPSession: one status per RCPT, in order.
func (ss *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	ss.deliver(r, status.SetStatus)
	return nil
}

func (ss *session) deliver(r io.Reader, set func(rcpt string, err error)) {
	if !ss.setInData(true) {
		// Shutdown began between the DATA command and here: closeIdle
		// closes the connection; store nothing.
		for _, rc := range ss.rcpts {
			set(rc.Address, errShutdown)
		}
		return
	}
	defer ss.setInData(false)
	env := delivery.Envelope{
		From:       ss.from,
		Recipients: ss.rcpts,
		Helo:       ss.helo,
		RemoteAddr: ss.remote,
		ID:         ss.id,
		TLS:        ss.tls,
	}
	ctx, cancel := context.WithTimeout(ss.s.ctx, ss.s.opts.DeliveryTimeout)
	defer cancel()
	results := ss.s.opts.Deliverer.Deliver(ctx, env, &limitReader{r: r})
	for _, res := range results {
		if res.Err == nil {
			set(res.Recipient.Address, &smtp.SMTPError{
				Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0},
				Message: fmt.Sprintf("%s Saved", ss.id),
			})
			continue
		}
		set(res.Recipient.Address, ss.s.reply(res.Err))
	}
}

// limitReader turns go-smtp's size-limit error into delivery.ErrTooLarge.
type limitReader struct{ r io.Reader }

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if err == smtp.ErrDataTooLarge {
		err = fmt.Errorf("%w: %w", delivery.ErrTooLarge, err)
	}
	return n, err
}

// reply maps a delivery error to an LMTP reply.
func (s *Server) reply(err error) error {
	code := func(c, a, b, d int, msg string) error {
		return &smtp.SMTPError{Code: c, EnhancedCode: smtp.EnhancedCode{a, b, d}, Message: msg}
	}
	switch {
	case errors.Is(err, delivery.ErrUnknownRecipient):
		return code(550, 5, 1, 1, "No such user here")
	case errors.Is(err, delivery.ErrDisabled):
		return code(550, 5, 2, 1, "Mailbox disabled")
	case errors.Is(err, delivery.ErrBadAddress):
		return code(501, 5, 1, 3, "Bad recipient address syntax")
	case errors.Is(err, delivery.ErrTooLarge):
		return errTooBig
	case errors.Is(err, smtp.ErrTooLongLine):
		return code(554, 5, 6, 0, fmt.Sprintf("Line longer than %d bytes", s.opts.MaxLineLength))
	case errors.Is(err, delivery.ErrOverQuota):
		return code(552, 5, 2, 2, "Mailbox over quota")
	case delivery.Temporary(err) && s.ctx.Err() != nil:
		return errShutdown
	case delivery.Temporary(err):
		return errTemp
	}
	return code(554, 5, 3, 0, "Delivery failed")
}

// Reset implements smtp.Session (RSET, and after each DATA).
func (ss *session) Reset() {
	ss.from = ""
	ss.rcpts = ss.rcpts[:0]
	ss.id = ""
}

// Logout implements smtp.Session.
func (ss *session) Logout() error {
	return nil
}
