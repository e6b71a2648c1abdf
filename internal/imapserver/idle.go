package imapserver

import (
	"strings"
	"time"
)

// idleRecheck bounds how long IDLE goes without looking for changes even
// when no watch notification arrives (a safety net, not the mechanism).
const idleRecheck = 30 * time.Second

// cmdIdle implements IDLE (RFC 2177, RFC 9051 §6.3.13). Changes made by
// other sessions are reported as soon as mailstore's Watch fires. A reader
// goroutine waits for "DONE"; it owns the decoder until it has returned,
// and cmdIdle always waits for it before returning.
func (c *conn) cmdIdle(tag string) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	c.enc.Raw("+ idling").CRLF()
	if err := c.sync(true); err != nil {
		return err
	}
	if err := c.enc.Flush(); err != nil {
		return errConnDone
	}

	type lineResult struct {
		line string
		err  error
	}
	lines := make(chan lineResult, 1)
	c.nc.SetReadDeadline(time.Now().Add(c.srv.opts.IdleTimeout))
	go func() {
		l, err := c.dec.Line(64)
		lines <- lineResult{l, err}
	}()
	tick := time.NewTicker(idleRecheck)
	defer tick.Stop()
	for {
		c.releaseOut() // flushed: nothing to write until something happens
		select {
		case r := <-lines:
			c.acquireOut()
			if r.err != nil {
				if c.io.get() != nil {
					return errConnDone
				}
				return r.err // a *SyntaxError (line too long): BAD, rest discarded
			}
			if !strings.EqualFold(strings.TrimSpace(r.line), "DONE") {
				return bad("Expected DONE")
			}
			return okText("IDLE terminated")
		case <-c.watch:
			c.acquireOut()
			c.syncDue = true // consumed here: sync must still read
		case <-tick.C:
			c.acquireOut()
			c.syncDue = true
		case <-c.srv.closingCh:
			c.acquireOut()
			c.writeBye("Server shutting down")
			c.close()
			<-lines
			c.state = stateLogout
			return errConnDone
		}
		if err := c.sync(true); err != nil {
			c.close()
			<-lines
			return err
		}
		if err := c.enc.Flush(); err != nil {
			c.close()
			<-lines
			return errConnDone
		}
	}
}
