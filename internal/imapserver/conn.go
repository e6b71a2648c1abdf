package imapserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/imapwire"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/userdb"
)

// state is the connection state (RFC 3501 §3).
type state uint8

const (
	stateNotAuth state = 1 << iota
	stateAuth
	stateSelected
	stateLogout
)

const (
	anyState   = stateNotAuth | stateAuth | stateSelected
	authStates = stateAuth | stateSelected
)

// conn is one client connection. All fields except mu-guarded ones are
// owned by the connection goroutine.
type conn struct {
	srv      *Server
	id       uint64
	nc       net.Conn
	isTLS    bool
	loopback bool
	remote   string
	baseLog  *slog.Logger
	log      *slog.Logger

	ctx    context.Context // the connection's root context
	cancel context.CancelFunc

	br  *bufio.Reader
	w   io.Writer     // the socket as the response buffer writes to it
	out *outBuf       // nil while lent to the pool (releaseOut)
	bw  *bufio.Writer // out.bw, or nil
	dec *imapwire.Decoder
	enc *imapwire.Encoder // out.enc, or nil
	io  *ioState
	tr  *tracer

	mu      sync.Mutex // guards waiting, closed
	waiting bool       // blocked reading the next command's tag
	closed  bool
	// stopping is set by Shutdown after its deadline: writes get a
	// short deadline (trackedWriter) so a stalled client cannot hold
	// shutdown.
	stopping atomic.Bool
	byeSent  bool // a BYE was written (owned by the connection goroutine)

	state     state
	user      *userdb.User
	acct      *mailstore.Account
	watch     <-chan struct{}
	stopWatch func()
	sel       *selected
	utf8      bool // ENABLE UTF8=ACCEPT or IMAP4rev2 (RFC 6855, RFC 9051)
	rev2      bool // ENABLE IMAP4rev2
	saved     []uint32
	authFails int
	acctSeen  time.Time // when accountGone last found the account in the index
	// syncDue: the session itself wrote (or a Changes read failed), so
	// the next sync must ask the store even without a Watch wake-up.
	syncDue  bool
	lastSync time.Time // when sync last asked the store for changes
}

// ioState records the first I/O error on the socket, so that the command
// loop can tell a dead connection from a command error.
type ioState struct {
	mu  sync.Mutex
	err error
}

func (s *ioState) set(err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *ioState) get() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

type trackedReader struct {
	r io.Reader
	s *ioState
}

func (t trackedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil {
		t.s.set(err)
	}
	return n, err
}

// writeTimeout bounds each write to the socket, so that a client that
// stops reading cannot hold its connection goroutine forever.
const writeTimeout = 2 * time.Minute

type trackedWriter struct {
	w        io.Writer
	nc       net.Conn
	s        *ioState
	stopping *atomic.Bool
}

func (t trackedWriter) Write(p []byte) (int, error) {
	d := writeTimeout
	if t.stopping.Load() {
		d = shutdownGrace
	}
	t.nc.SetWriteDeadline(time.Now().Add(d))
	n, err := t.w.Write(p)
	if err != nil {
		t.s.set(err)
	}
	return n, err
}

func newConn(s *Server, nc net.Conn, isTLS bool) *conn {
	c := &conn{srv: s, id: s.nextID.Add(1), nc: nc, isTLS: isTLS, state: stateNotAuth}
	if ra := nc.RemoteAddr(); ra != nil {
		c.remote = ra.String()
		if ta, ok := ra.(*net.TCPAddr); ok {
			c.loopback = ta.IP.IsLoopback()
		} else if ra.Network() == "unix" {
			c.loopback = true
		}
	}
	c.baseLog = s.log.With(slog.Uint64("conn", c.id), slog.String("remote", c.remote))
	c.log = c.baseLog
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.io = &ioState{}
	if s.opts.Trace {
		c.tr = &tracer{log: c.baseLog}
	}
	c.setupIO()
	return c
}

// setupIO (re)creates the buffered reader/writer, decoder and encoder on
// c.nc (again after STARTTLS).
func (c *conn) setupIO() {
	var r io.Reader = trackedReader{c.nc, c.io}
	var w io.Writer = trackedWriter{c.nc, c.nc, c.io, &c.stopping}
	if c.tr != nil {
		r = &traceReader{r: r, t: c.tr}
		w = &traceWriter{w: w, t: c.tr}
	}
	c.br = bufio.NewReaderSize(r, 16<<10)
	c.w = w
	if c.out == nil {
		c.acquireOut()
	} else {
		c.out.bw.Reset(w)
	}
	c.dec = imapwire.NewDecoder(c.br, c.continueLiteral)
	c.dec.MaxLiteral = 64 << 10
	c.dec.MaxStream = c.srv.opts.MaxAppendSize
	if c.srv.opts.LiteralMinus {
		c.dec.MaxLiteralPlus = imapwire.LiteralMinusMax
	}
	c.dec.UTF8 = c.utf8
}

// outBuf is a connection's response buffer and the encoder writing to it.
// A connection lends it to Server.outPool while it waits for a command or
// idles with nothing to write (releaseOut), so that idle connections do
// not each hold 32 KiB.
type outBuf struct {
	bw  *bufio.Writer
	enc *imapwire.Encoder
}

func newOutBuf() any {
	bw := bufio.NewWriterSize(io.Discard, 32<<10)
	return &outBuf{bw: bw, enc: imapwire.NewEncoder(bw)}
}

// acquireOut makes c.bw and c.enc usable (a buffer from the pool, writing
// to the socket). It does nothing if the connection holds one.
func (c *conn) acquireOut() {
	if c.out != nil {
		return
	}
	o := c.srv.outPool.Get().(*outBuf)
	o.bw.Reset(c.w)
	o.enc.UTF8 = c.utf8
	c.out, c.bw, c.enc = o, o.bw, o.enc
}

// releaseOut returns the response buffer to the pool if nothing is
// waiting in it (after a failed flush the connection keeps it and ends).
// c.bw and c.enc are nil until acquireOut.
func (c *conn) releaseOut() {
	if c.out == nil || c.out.bw.Buffered() > 0 {
		return
	}
	c.out.bw.Reset(io.Discard)
	c.srv.outPool.Put(c.out)
	c.out, c.bw, c.enc = nil, nil, nil
}

func (c *conn) continueLiteral() error {
	c.bw.WriteString("+ Ready for literal data\r\n")
	return c.bw.Flush()
}

// wakeIfWaiting is called by Shutdown: a connection blocked reading its
// next command gets a read deadline in the past.
func (c *conn) wakeIfWaiting() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting && !c.closed {
		c.nc.SetReadDeadline(time.Now())
	}
}

// stopReading is called by Shutdown after its deadline: reads from the
// client fail at once, and writes get a short deadline.
func (c *conn) stopReading() {
	c.stopping.Store(true)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.nc.SetReadDeadline(time.Now())
	}
}

// forceClose closes the socket from another goroutine (Shutdown after its
// deadline); the connection goroutine then fails its next I/O and ends.
func (c *conn) forceClose() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		c.nc.Close()
	}
	c.cancel()
}

func (c *conn) close() {
	if c.stopWatch != nil {
		c.stopWatch()
		c.stopWatch = nil
	}
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		c.nc.Close()
	}
	c.mu.Unlock()
	c.cancel()
}

// serve runs the connection until LOGOUT, an I/O error or shutdown.
func (c *conn) serve() {
	defer c.close()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("imap: panic in connection", slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
		}
	}()
	c.log.Debug("imap: connected", slog.Bool("tls", c.isTLS))
	if tc, ok := c.nc.(*tls.Conn); ok {
		c.nc.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.HandshakeContext(c.ctx); err != nil {
			c.log.Debug("imap: TLS handshake failed", slog.Any("err", err))
			return
		}
		c.nc.SetDeadline(time.Time{})
	}
	c.enc.Raw("* OK [CAPABILITY " + c.capabilities() + "] bucketmail ready").CRLF()
	if c.enc.Flush() != nil {
		return
	}
	for c.state != stateLogout {
		if !c.command() {
			break
		}
	}
	// A command cut off by Shutdown (a read failed by stopReading) ends
	// here without a response: say BYE, if the socket still takes it.
	if !c.byeSent && c.stopping.Load() {
		c.writeBye("Server shutting down")
	}
}

// waitTag reads the next command's tag, with the autologout deadline.
func (c *conn) waitTag() (string, error) {
	c.mu.Lock()
	if c.srv.isClosing() {
		c.mu.Unlock()
		return "", errShutdown
	}
	c.waiting = true
	c.nc.SetReadDeadline(time.Now().Add(c.srv.opts.IdleTimeout))
	c.mu.Unlock()
	c.releaseOut()
	err := c.emptyLines()
	var tag string
	if err == nil {
		tag, err = c.dec.Tag()
	}
	c.acquireOut()
	c.mu.Lock()
	c.waiting = false
	c.mu.Unlock()
	if err != nil && c.srv.isClosing() {
		return "", errShutdown
	}
	return tag, err
}

var errShutdown = errors.New("imapserver: shutting down")

// emptyLines answers each empty line before the next command with
// "* BAD Empty command line", as Dovecot answers one with an untagged BAD
// (RFC 3501 §7.1.3 allows an untagged BAD for a line whose tag cannot be
// found). It reads through c.br, which the decoder reads from, only at a
// command boundary.
func (c *conn) emptyLines() error {
	for {
		b, err := c.br.Peek(1)
		if err != nil {
			return err
		}
		switch {
		case b[0] == '\n':
			c.br.Discard(1)
		case b[0] == '\r':
			if b, err = c.br.Peek(2); err != nil {
				return err
			}
			if b[1] != '\n' {
				return nil // the decoder reports the lone CR
			}
			c.br.Discard(2)
		default:
			return nil
		}
		c.acquireOut()
		c.enc.Raw("* BAD Empty command line").CRLF()
		if err := c.enc.Flush(); err != nil {
			return err
		}
		c.releaseOut()
	}
}

// command reads and runs one command. It reports false when the
// connection must end.
func (c *conn) command() bool {
	tag, err := c.waitTag()
	if err != nil {
		var se *imapwire.SyntaxError
		switch {
		case errors.Is(err, errShutdown):
			c.writeBye("Server shutting down")
			return false
		case errors.As(err, &se) && c.io.get() == nil:
			c.enc.Raw("* BAD " + sanitize(se.Msg)).CRLF()
			if c.dec.DiscardLine() != nil {
				return false
			}
			return c.enc.Flush() == nil
		default:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.writeBye("Autologout; idle for too long")
			}
			return false
		}
	}
	name, err := c.commandName()
	if err != nil {
		return c.finishError(tag, "", err)
	}
	h, ok := c.lookup(name)
	if !ok {
		if c.dec.DiscardLine() != nil {
			return false
		}
		c.tagged(tag, &status{kind: "BAD", text: "Unknown command"})
		return c.enc.Flush() == nil
	}
	if c.state&h.states == 0 {
		if c.dec.DiscardLine() != nil {
			return false
		}
		text := "Not allowed in this state"
		switch {
		case c.state == stateNotAuth:
			text = "Log in first"
		case h.states == stateSelected:
			text = "No mailbox selected"
		case h.states == stateNotAuth:
			text = "Already authenticated"
		case h.states == stateAuth:
			text = "Not allowed while a mailbox is selected"
		}
		c.tagged(tag, &status{kind: "NO", text: text})
		return c.enc.Flush() == nil
	}
	c.log.Debug("imap: command", slog.String("tag", tag), slog.String("cmd", name))
	err = h.fn(c, tag)
	return c.finishError(tag, name, err) && c.finish(tag, name, h, err)
}

// finishError handles a syntax or connection error; it reports false when
// the connection must end. For other errors it does nothing.
func (c *conn) finishError(tag, name string, err error) bool {
	if err == nil {
		return true
	}
	if c.io.get() != nil || errors.Is(err, errConnDone) {
		return false
	}
	var se *imapwire.SyntaxError
	if errors.As(err, &se) {
		// Answer first: a refused synchronizing literal is never sent, so
		// the client must see the answer before DiscardLine can finish.
		st := bad(se.Msg)
		if name != "" {
			st.text = name + ": " + se.Msg
		}
		switch {
		case errors.Is(err, imapwire.ErrLiteralTooLarge):
			st = no("TOOBIG", "Literal too large")
		case errors.Is(err, imapwire.ErrBadCharset):
			st = no("BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset")
		}
		c.tagged(tag, st)
		c.tr.endCommand(tag)
		if c.enc.Flush() != nil {
			return false
		}
		return c.dec.DiscardLine() == nil
	}
	return true
}

// errConnDone: the handler already ended the connection (BYE sent).
var errConnDone = errors.New("imapserver: connection done")

// finish reports pending mailbox changes and writes the tagged response.
func (c *conn) finish(tag, name string, h cmdHandler, err error) bool {
	var se *imapwire.SyntaxError
	if err != nil && errors.As(err, &se) {
		return true // already answered by finishError
	}
	if errors.Is(err, errAnswered) {
		c.tr.endCommand(tag)
		return c.enc.Flush() == nil
	}
	if c.accountGone(err) {
		// The account was deleted under the session (bucketmail user
		// del): say BYE rather than SERVERBUG (RFC 3501 §7.1.5).
		c.log.Info("imap: account no longer exists; closing the session", slog.String("cmd", name), slog.Any("err", err))
		c.writeBye("Account no longer exists")
		c.state = stateLogout
		return false
	}
	st := c.toStatus(name, err)
	if !h.readOnly {
		c.syncDue = true
	}
	if c.state == stateSelected && !h.noSync {
		if err := c.sync(!h.noExpunge); err != nil {
			return false
		}
	}
	if c.state == stateLogout {
		return false
	}
	c.tagged(tag, st)
	c.tr.endCommand(tag)
	return c.enc.Flush() == nil
}

// accountGone reports whether err comes from the session's account having
// been deleted: mailstore.ErrNoAccount, or an error that could be one in
// disguise (a missing mailbox, or an unexpected error such as a failed
// foreign key) while the account is no longer in the index. Errors that
// are already a response, and temporary ones, are not looked into.
func (c *conn) accountGone(err error) bool {
	if err == nil || c.acct == nil {
		return false
	}
	if errors.Is(err, mailstore.ErrNoAccount) {
		return true
	}
	var st *status
	if errors.As(err, &st) || blob.IsTemporary(err) || errors.Is(err, userdb.ErrUnavailable) ||
		dbUnreachable(err) || errors.Is(err, context.Canceled) {
		return false
	}
	if !errors.Is(err, mailstore.ErrNoMailbox) && c.toStatusKnown(err) {
		return false
	}
	// The store has no cheap "does the account exist": list them, at
	// most once per accountRecheck for a missing mailbox (clients probe
	// for mailboxes that do not exist).
	if errors.Is(err, mailstore.ErrNoMailbox) && time.Since(c.acctSeen) < accountRecheck {
		return false
	}
	names, lerr := c.srv.opts.Store.Accounts(c.ctx)
	if lerr != nil {
		return false
	}
	if _, found := slices.BinarySearch(names, c.acct.Name()); found {
		c.acctSeen = time.Now()
		return false
	}
	return true
}

// accountRecheck: see accountGone.
const accountRecheck = 10 * time.Second

// toStatusKnown reports whether toStatus maps err to a specific response
// (not SERVERBUG).
func (c *conn) toStatusKnown(err error) bool {
	for _, e := range []error{mailstore.ErrNoMailbox, mailstore.ErrMailboxExists, mailstore.ErrInboxDelete,
		mailstore.ErrHasChildren, mailstore.ErrBadName, mailstore.ErrOverQuota, mailstore.ErrBadFlag,
		mailstore.ErrSameMailbox, mailstore.ErrTooLarge, mailstore.ErrMissingObject} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// status is a tagged (or untagged) status response; as an error it is
// the answer to the command.
type status struct {
	kind string // OK, NO, BAD
	code string // response code without brackets, or ""
	text string
}

func (s *status) Error() string { return s.kind + " [" + s.code + "] " + s.text }

func okText(text string) *status       { return &status{kind: "OK", text: text} }
func okCode(code, text string) *status { return &status{kind: "OK", code: code, text: text} }
func no(code, text string) *status     { return &status{kind: "NO", code: code, text: text} }
func bad(text string) *status          { return &status{kind: "BAD", text: text} }

func (c *conn) tagged(tag string, st *status) {
	c.enc.Atom(tag).SP().Atom(st.kind)
	if st.code != "" {
		c.enc.SP().Raw("[" + st.code + "]")
	}
	c.enc.SP().Raw(sanitize(st.text)).CRLF()
}

func (c *conn) untaggedStatus(st *status) {
	c.tagged("*", st)
}

func (c *conn) writeBye(text string) {
	c.byeSent = true
	c.enc.Raw("* BYE " + text).CRLF()
	c.enc.Flush()
}

// sanitize keeps response text on one line.
func sanitize(s string) string {
	if s == "" {
		return "."
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

// toStatus turns a handler's result into the tagged response. Errors that
// are not protocol answers are mapped from their sentinels; unknown ones
// are logged once here and answered NO [SERVERBUG].
func (c *conn) toStatus(name string, err error) *status {
	if err == nil {
		return okText(name + " completed")
	}
	var st *status
	if errors.As(err, &st) {
		return st
	}
	switch {
	case errors.Is(err, mailstore.ErrNoMailbox):
		return no("NONEXISTENT", "Mailbox does not exist")
	case errors.Is(err, mailstore.ErrMailboxExists):
		return no("ALREADYEXISTS", "Mailbox already exists")
	case errors.Is(err, mailstore.ErrInboxDelete):
		return no("CANNOT", "INBOX cannot be deleted")
	case errors.Is(err, mailstore.ErrHasChildren):
		return no("CANNOT", "Mailbox has children")
	case errors.Is(err, mailstore.ErrBadName):
		return no("CANNOT", "Invalid mailbox name")
	case errors.Is(err, mailstore.ErrOverQuota):
		return no("OVERQUOTA", "Over quota")
	case errors.Is(err, mailstore.ErrBadFlag):
		return bad("Invalid flag")
	case errors.Is(err, mailstore.ErrSameMailbox):
		return no("CANNOT", "Source and destination mailbox are the same")
	case errors.Is(err, mailstore.ErrTooLarge):
		return no("TOOBIG", "Message too large")
	case errors.Is(err, mailstore.ErrMissingObject):
		c.log.Warn("imap: message object missing from the blob store", slog.String("cmd", name), slog.Any("err", err))
		return no("UNAVAILABLE", "Message object missing")
	case blob.IsTemporary(err), errors.Is(err, userdb.ErrUnavailable), dbUnreachable(err):
		c.log.Warn("imap: temporary failure", slog.String("cmd", name), slog.Any("err", err))
		return no("UNAVAILABLE", "Temporary failure, try again later")
	case errors.Is(err, context.Canceled):
		return no("UNAVAILABLE", "Server shutting down")
	}
	c.log.Error("imap: command failed", slog.String("cmd", name), slog.Any("err", err))
	return no("SERVERBUG", "Internal server error")
}

// commandName reads the command name (and the UID sub-command).
func (c *conn) commandName() (string, error) {
	if err := c.dec.SP(); err != nil {
		return "", err
	}
	name, err := c.dec.Atom()
	if err != nil {
		return "", err
	}
	name = strings.ToUpper(name)
	if name == "UID" {
		if err := c.dec.SP(); err != nil {
			return "", err
		}
		sub, err := c.dec.Atom()
		if err != nil {
			return "", err
		}
		name += " " + strings.ToUpper(sub)
	}
	return name, nil
}

// cmdHandler describes a command.
type cmdHandler struct {
	states state
	fn     func(c *conn, tag string) error
	// noExpunge: EXPUNGE responses must not be sent while this command is
	// in progress (RFC 3501 §7.4.1: FETCH, STORE, SEARCH).
	noExpunge bool
	// noSync: do not report mailbox changes (the command does it itself).
	noSync bool
	// readOnly: the command writes nothing to the store (FETCH sets
	// syncDue itself when it sets \Seen), so the sync after it asks the
	// store for changes only if a Watch wake-up arrived.
	readOnly bool
}

func (c *conn) lookup(name string) (cmdHandler, bool) {
	switch name {
	case "CAPABILITY":
		return cmdHandler{states: anyState, fn: (*conn).cmdCapability, readOnly: true}, true
	case "NOOP":
		return cmdHandler{states: anyState, fn: (*conn).cmdNoop, readOnly: true}, true
	case "LOGOUT":
		return cmdHandler{states: anyState, fn: (*conn).cmdLogout, noSync: true}, true
	case "ID":
		return cmdHandler{states: anyState, fn: (*conn).cmdID, readOnly: true}, true
	case "STARTTLS":
		if c.srv.opts.TLS == nil || c.isTLS {
			return cmdHandler{}, false
		}
		return cmdHandler{states: stateNotAuth, fn: (*conn).cmdStartTLS}, true
	case "LOGIN":
		return cmdHandler{states: stateNotAuth, fn: (*conn).cmdLogin}, true
	case "AUTHENTICATE":
		return cmdHandler{states: stateNotAuth, fn: (*conn).cmdAuthenticate}, true
	case "ENABLE":
		// RFC 5161 §3.1, RFC 9051 §6.3.1: only in the authenticated state.
		return cmdHandler{states: stateAuth, fn: (*conn).cmdEnable}, true
	case "SELECT":
		return cmdHandler{states: authStates, fn: (*conn).cmdSelect, noSync: true}, true
	case "EXAMINE":
		return cmdHandler{states: authStates, fn: (*conn).cmdExamine, noSync: true}, true
	case "CREATE":
		return cmdHandler{states: authStates, fn: (*conn).cmdCreate}, true
	case "DELETE":
		return cmdHandler{states: authStates, fn: (*conn).cmdDelete}, true
	case "RENAME":
		return cmdHandler{states: authStates, fn: (*conn).cmdRename}, true
	case "SUBSCRIBE":
		return cmdHandler{states: authStates, fn: (*conn).cmdSubscribe}, true
	case "UNSUBSCRIBE":
		return cmdHandler{states: authStates, fn: (*conn).cmdUnsubscribe}, true
	case "LIST":
		return cmdHandler{states: authStates, fn: (*conn).cmdList, readOnly: true}, true
	case "LSUB":
		return cmdHandler{states: authStates, fn: (*conn).cmdLsub, readOnly: true}, true
	case "NAMESPACE":
		return cmdHandler{states: authStates, fn: (*conn).cmdNamespace, readOnly: true}, true
	case "STATUS":
		return cmdHandler{states: authStates, fn: (*conn).cmdStatus, readOnly: true}, true
	case "APPEND":
		return cmdHandler{states: authStates, fn: (*conn).cmdAppend}, true
	case "IDLE":
		return cmdHandler{states: authStates, fn: (*conn).cmdIdle}, true
	case "CHECK":
		return cmdHandler{states: stateSelected, fn: (*conn).cmdNoop, readOnly: true}, true
	case "CLOSE":
		return cmdHandler{states: stateSelected, fn: (*conn).cmdClose, noSync: true}, true
	case "UNSELECT":
		return cmdHandler{states: stateSelected, fn: (*conn).cmdUnselect, noSync: true}, true
	case "EXPUNGE":
		return cmdHandler{states: stateSelected, fn: (*conn).cmdExpunge}, true
	case "UID EXPUNGE":
		return cmdHandler{states: stateSelected, fn: (*conn).cmdUIDExpunge}, true
	case "SEARCH":
		return cmdHandler{states: stateSelected, fn: func(c *conn, tag string) error { return c.cmdSearch(tag, false) }, noExpunge: true, readOnly: true}, true
	case "UID SEARCH":
		return cmdHandler{states: stateSelected, fn: func(c *conn, tag string) error { return c.cmdSearch(tag, true) }, readOnly: true}, true
	case "FETCH":
		return cmdHandler{states: stateSelected, fn: func(c *conn, tag string) error { return c.cmdFetch(tag, false) }, noExpunge: true, readOnly: true}, true
	case "UID FETCH":
		return cmdHandler{states: stateSelected, fn: func(c *conn, tag string) error { return c.cmdFetch(tag, true) }, readOnly: true}, true
	case "STORE":
		return cmdHandler{states: stateSelected, fn: func(c *conn, tag string) error { return c.cmdStore(tag, false) }, noExpunge: true}, true
	case "UID STORE":
		return cmdHandler{states: stateSelected, fn: func(c *conn, tag string) error { return c.cmdStore(tag, true) }}, true
	case "COPY":
		return cmdHandler{states: stateSelected, fn: func(c *conn, tag string) error { return c.cmdCopy(tag, false, false) }}, true
	case "UID COPY":
		return cmdHandler{states: stateSelected, fn: func(c *conn, tag string) error { return c.cmdCopy(tag, true, false) }}, true
	case "MOVE":
		return cmdHandler{states: stateSelected, fn: func(c *conn, tag string) error { return c.cmdCopy(tag, false, true) }}, true
	case "UID MOVE":
		return cmdHandler{states: stateSelected, fn: func(c *conn, tag string) error { return c.cmdCopy(tag, true, true) }}, true
	}
	return cmdHandler{}, false
}

// capabilities returns the CAPABILITY list for the current state.
func (c *conn) capabilities() string {
	caps := []string{"IMAP4rev1", "IMAP4rev2"}
	if c.state == stateNotAuth {
		if c.srv.opts.TLS != nil && !c.isTLS {
			caps = append(caps, "STARTTLS")
		}
		if c.authAllowed() {
			caps = append(caps, "AUTH=PLAIN", "SASL-IR")
		} else {
			caps = append(caps, "LOGINDISABLED")
		}
	}
	lit := "LITERAL+"
	if c.srv.opts.LiteralMinus {
		lit = "LITERAL-"
	}
	caps = append(caps, lit, "ENABLE", "ID", "IDLE", "NAMESPACE", "UNSELECT", "CHILDREN",
		"SPECIAL-USE", "CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "UIDPLUS", "MOVE", "ESEARCH", "SEARCHRES", "BINARY", "STATUS=SIZE", "UTF8=ACCEPT")
	return strings.Join(caps, " ")
}

// authAllowed reports whether plaintext authentication is allowed now
// (DESIGN §7: refused without TLS except on loopback, unless configured).
func (c *conn) authAllowed() bool {
	return c.isTLS || c.loopback || c.srv.opts.AllowInsecureAuth
}

func (c *conn) cmdCapability(tag string) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	c.enc.Raw("* CAPABILITY " + c.capabilities()).CRLF()
	return nil
}

func (c *conn) cmdNoop(tag string) error {
	return c.dec.CRLF()
}

func (c *conn) cmdLogout(tag string) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	c.byeSent = true
	c.enc.Raw("* BYE Logging out").CRLF()
	c.tagged(tag, okText("LOGOUT completed"))
	c.enc.Flush()
	c.state = stateLogout
	return errConnDone
}

// cmdID answers ID (RFC 2971). The client's parameters are logged.
func (c *conn) cmdID(tag string) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	var params []string
	b, err := c.dec.PeekByte()
	if err != nil {
		return err
	}
	if b == '(' {
		err = c.dec.List(func() error {
			s, _, err := c.dec.NString()
			if err != nil {
				return err
			}
			params = append(params, s)
			return nil
		})
	} else {
		var a string
		a, err = c.dec.Atom()
		if err == nil && !strings.EqualFold(a, "NIL") {
			err = &imapwire.SyntaxError{Msg: "expected NIL or a list"}
		}
	}
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if len(params) > 0 {
		c.log.Debug("imap: client id", slog.Any("id", params))
	}
	c.enc.Raw(`* ID ("name" "bucketmail" "vendor" "bucketmail")`).CRLF()
	return nil
}

// cmdEnable implements ENABLE (RFC 5161) for UTF8=ACCEPT (RFC 6855) and
// IMAP4rev2 (RFC 9051).
func (c *conn) cmdEnable(tag string) error {
	var caps []string
	for !c.dec.AtEOL() {
		if err := c.dec.SP(); err != nil {
			return err
		}
		a, err := c.dec.Atom()
		if err != nil {
			return err
		}
		caps = append(caps, a)
	}
	if len(caps) == 0 {
		return &imapwire.SyntaxError{Msg: "ENABLE needs a capability"}
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	var enabled []string
	for _, a := range caps {
		switch strings.ToUpper(a) {
		case "UTF8=ACCEPT":
			if !c.utf8 {
				enabled = append(enabled, "UTF8=ACCEPT")
			}
			c.utf8 = true
		case "IMAP4REV2":
			if !c.rev2 {
				enabled = append(enabled, "IMAP4rev2")
			}
			c.rev2, c.utf8 = true, true
		}
	}
	c.dec.UTF8, c.enc.UTF8 = c.utf8, c.utf8
	c.enc.Raw("* ENABLED")
	for _, e := range enabled {
		c.enc.SP().Atom(e)
	}
	c.enc.CRLF()
	return nil
}

// spMailbox reads SP and a mailbox argument (see readMailbox).
func (c *conn) spMailbox() (string, error) {
	if err := c.dec.SP(); err != nil {
		return "", err
	}
	return c.readMailbox()
}

// mailboxLine reads the rest of a command whose only argument is a
// mailbox: SP mailbox CRLF.
func (c *conn) mailboxLine() (string, error) {
	name, err := c.spMailbox()
	if err != nil {
		return "", err
	}
	return name, c.dec.CRLF()
}

// spSeqSetSP reads SP sequence-set SP, the start of FETCH, STORE, COPY
// and MOVE.
func (c *conn) spSeqSetSP() (imapwire.SeqSet, error) {
	if err := c.dec.SP(); err != nil {
		return imapwire.SeqSet{}, err
	}
	set, err := c.dec.SeqSet()
	if err != nil {
		return imapwire.SeqSet{}, err
	}
	return set, c.dec.SP()
}

// endSetCommand reads the command's CRLF and resolves set against the
// selected mailbox: indexes into sel.msgs (RFC 3501 §6.4.8 for UIDs).
func (c *conn) endSetCommand(set imapwire.SeqSet, uid bool) ([]int, error) {
	if err := c.dec.CRLF(); err != nil {
		return nil, err
	}
	return c.sel.resolve(set, uid, c.saved)
}

// readMailbox reads a mailbox argument and returns it in the store's
// UTF-8 form: decoded from modified UTF-7 (RFC 3501 §5.1.3) unless UTF-8
// is enabled; "INBOX" and "INBOX/..." in any case become "INBOX...".
func (c *conn) readMailbox() (string, error) {
	name, err := c.dec.MailboxUTF8()
	if err != nil {
		return "", err
	}
	if len(name) > 5 && strings.EqualFold(name[:6], "INBOX/") {
		name = "INBOX" + name[5:]
	}
	return name, nil
}
