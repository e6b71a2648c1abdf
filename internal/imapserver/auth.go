package imapserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/bucketmail/bucketmail/internal/imapwire"
	"github.com/bucketmail/bucketmail/internal/userdb"
)

// cmdStartTLS implements STARTTLS (RFC 3501 §6.2.1, RFC 9051 §6.2.1).
// Bytes the client pipelined after the command are a protocol violation
// (command injection) and end the connection.
func (c *conn) cmdStartTLS(tag string) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if c.br.Buffered() > 0 {
		c.writeBye("Data after STARTTLS")
		c.state = stateLogout
		return errConnDone
	}
	c.tagged(tag, okText("Begin TLS negotiation now"))
	if err := c.enc.Flush(); err != nil {
		return errConnDone
	}
	tc := tls.Server(c.nc, c.srv.opts.TLS)
	c.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.HandshakeContext(c.ctx); err != nil {
		c.log.Debug("imap: STARTTLS handshake failed", slog.Any("err", err))
		c.state = stateLogout
		return errConnDone
	}
	c.nc.SetDeadline(time.Time{})
	c.mu.Lock()
	c.nc = tc
	c.mu.Unlock()
	c.isTLS = true
	c.setupIO()
	c.state = stateNotAuth
	return errAnswered
}

// errAnswered: the handler already wrote its tagged response.
var errAnswered = errors.New("imapserver: answered")

// cmdLogin implements LOGIN (RFC 3501 §6.2.3).
func (c *conn) cmdLogin(tag string) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	// 8-bit user names and passwords are taken in quoted strings too, as
	// Dovecot takes them (ENABLE UTF8=ACCEPT is not allowed before
	// login; RFC 6855 §5 would have them as literals).
	utf8 := c.dec.UTF8
	c.dec.UTF8 = true
	defer func() { c.dec.UTF8 = utf8 }()
	user, err := c.dec.AString()
	if err != nil {
		return err
	}
	if err := c.dec.SP(); err != nil {
		return err
	}
	pass, err := c.dec.AString()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	return c.login(user, pass)
}

// remoteIP is the client's IP address; invalid for a unix socket.
func (c *conn) remoteIP() netip.Addr {
	ap, err := netip.ParseAddrPort(c.remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// login authenticates and moves to the authenticated state.
//
// Failed-login throttling (issue 5 item 5, userdb/throttle): before the
// credentials are checked the attempt waits the growing delay its remote
// IP and account have earned by earlier failures, whether the password
// is right or not; an unknown user and a wrong password both count.
// AuthFailureDelay and the BYE after 5 failures are per connection, on
// top of it.
func (c *conn) login(address, password string) error {
	if !c.authAllowed() {
		return no("PRIVACYREQUIRED", "Plaintext authentication requires TLS")
	}
	user := c.srv.opts.AddressPolicy.Normalize(address)
	ip := c.remoteIP()
	if d := c.srv.throttle.Delay(ip, user); d > 0 {
		c.log.Info("imap: login throttled", slog.String("user", user), slog.Duration("delay", d))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.srv.closingCh:
			t.Stop()
			return no("UNAVAILABLE", "Server shutting down")
		case <-c.ctx.Done():
			t.Stop()
			c.state = stateLogout
			return errConnDone
		}
	}
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	u, err := c.srv.opts.Auth.Authenticate(ctx, user, password)
	if err != nil {
		if errors.Is(err, userdb.ErrAuthFailed) {
			c.srv.throttle.Failure(ip, user)
			c.authFails++
			c.log.Info("imap: authentication failed", slog.String("user", user))
			if d := c.srv.opts.AuthFailureDelay; d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-c.srv.closingCh:
					t.Stop()
				}
			}
			if c.authFails >= 5 {
				c.writeBye("Too many authentication failures")
				c.state = stateLogout
				return errConnDone
			}
			return no("AUTHENTICATIONFAILED", "Authentication failed")
		}
		return err
	}
	c.srv.throttle.Success(ip, user)
	if u.Account == "" {
		u.Account = u.Address
	}
	acct, err := c.srv.opts.Store.Account(ctx, u.Account)
	if err != nil {
		return err
	}
	c.user, c.acct = u, acct
	c.watch, c.stopWatch = acct.Watch()
	c.state = stateAuth
	c.log = c.baseLog.With(slog.String("user", u.Account))
	c.log.Info("imap: logged in")
	return okCode("CAPABILITY "+c.capabilities(), "Logged in")
}

// cmdAuthenticate implements AUTHENTICATE PLAIN (RFC 3501 §6.2.2, RFC 4616)
// with an initial response (SASL-IR, RFC 4959). A "*" response cancels.
func (c *conn) cmdAuthenticate(tag string) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	mech, err := c.dec.Atom()
	if err != nil {
		return err
	}
	var ir string
	haveIR := false
	if !c.dec.AtEOL() {
		if err := c.dec.SP(); err != nil {
			return err
		}
		if ir, err = c.dec.Atom(); err != nil {
			return err
		}
		haveIR = true
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if !strings.EqualFold(mech, "PLAIN") {
		return no("CANNOT", "Unsupported authentication mechanism")
	}
	if !c.authAllowed() {
		return no("PRIVACYREQUIRED", "Plaintext authentication requires TLS")
	}
	var raw []byte
	if haveIR {
		raw, err = imapwire.DecodeAuthData(ir)
	} else {
		c.enc.Raw("+ ").CRLF()
		if err := c.enc.Flush(); err != nil {
			return err
		}
		raw, err = c.dec.AuthResponse(8192)
	}
	if errors.Is(err, imapwire.ErrAuthCancelled) {
		return bad("Authentication cancelled")
	}
	if err != nil {
		var se *imapwire.SyntaxError
		if errors.As(err, &se) && !errors.Is(err, imapwire.ErrLineTooLong) {
			return bad(se.Msg) // the line was consumed
		}
		return err
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 {
		return bad("Invalid PLAIN response")
	}
	authz, authc, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if p := c.srv.opts.AddressPolicy; authz != "" && p.Normalize(authz) != p.Normalize(authc) {
		return no("AUTHORIZATIONFAILED", "Authorization identity not allowed")
	}
	return c.login(authc, pass)
}
