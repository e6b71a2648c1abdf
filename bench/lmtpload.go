package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// lmtpConn delivers over one LMTP connection (RFC 2033), one transaction
// per message.
type lmtpConn struct {
	c *smtp.Client
}

func dialLMTP(addr string) (*lmtpConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClientLMTP(conn)
	c.CommandTimeout = time.Minute
	c.SubmissionTimeout = 2 * time.Minute
	if err := c.Hello("bench.test"); err != nil {
		c.Close()
		return nil, fmt.Errorf("LHLO: %w", err)
	}
	return &lmtpConn{c: c}, nil
}

// deliver sends msg to one recipient; an error unless the reply is 250.
func (l *lmtpConn) deliver(rcpt string, msg []byte) error {
	if err := l.c.Mail("sender@bench.test", nil); err != nil {
		l.c.Reset()
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	if err := l.c.Rcpt(rcpt, nil); err != nil {
		l.c.Reset()
		return fmt.Errorf("RCPT TO:<%s>: %w", rcpt, err)
	}
	w, err := l.c.Data()
	if err != nil {
		l.c.Reset()
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("DATA write: %w", err)
	}
	if _, err := w.CloseWithLMTPResponse(); err != nil {
		return fmt.Errorf("DATA end: %w", err)
	}
	return nil
}

func (l *lmtpConn) close() {
	l.c.Quit()
	l.c.Close()
}

// lmtpResult is one LMTP phase.
type lmtpResult struct {
	Delivered int
	Errors    int
	FirstErr  error
	Elapsed   time.Duration
	Bytes     int64
	Lat       latencies // op "deliver"
}

// PerSec returns delivered messages per second.
func (r *lmtpResult) PerSec() float64 { return float64(r.Delivered) / r.Elapsed.Seconds() }

// runLMTP delivers msgs[i%len(msgs)] for i in [first, first+n) to
// rcpt(i) with the given number of concurrent senders, each on its own
// connection, stopping early after maxTime.
func runLMTP(ctx context.Context, addr string, senders, first, n int, msgs [][]byte, rcpt func(i int) string, maxTime time.Duration) (*lmtpResult, error) {
	res := &lmtpResult{}
	conns := make([]*lmtpConn, senders)
	for i := range conns {
		c, err := dialLMTP(addr)
		if err != nil {
			for _, c := range conns[:i] {
				c.close()
			}
			return nil, fmt.Errorf("lmtp %s: %w", addr, err)
		}
		conns[i] = c
	}
	var next atomic.Int64
	var mu sync.Mutex
	deadline := time.Now().Add(maxTime)
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.close()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				k := int(next.Add(1)) - 1
				if k >= n {
					return
				}
				i := first + k
				msg := msgs[i%len(msgs)]
				t0 := time.Now()
				err := c.deliver(rcpt(i), msg)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					res.Errors++
					if res.FirstErr == nil {
						res.FirstErr = err
					}
				} else {
					res.Delivered++
					res.Bytes += int64(len(msg))
				}
				mu.Unlock()
				if err == nil {
					res.Lat.add("deliver", d)
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if res.Delivered == 0 {
		return res, fmt.Errorf("lmtp: nothing delivered: %v", res.FirstErr)
	}
	return res, nil
}
