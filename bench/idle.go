package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// raiseFileLimit raises RLIMIT_NOFILE to at least n (the hard limit too,
// which root may do); the servers started afterwards inherit it.
func raiseFileLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	if lim.Max < n {
		lim.Max = n
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("setrlimit NOFILE %d: %w", n, err)
	}
	return nil
}

// idleConn is one raw IMAP connection parked in IDLE.
type idleConn struct {
	c net.Conn
	r *bufio.Reader
}

// cmd sends "tag line" and reads up to the tagged reply (or, for IDLE,
// the continuation request).
func (ic *idleConn) cmd(tag, line string, untilCont bool) error {
	ic.c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := fmt.Fprintf(ic.c, "%s %s\r\n", tag, line); err != nil {
		return err
	}
	for {
		l, err := ic.r.ReadString('\n')
		if err != nil {
			return err
		}
		if untilCont && strings.HasPrefix(l, "+") {
			return nil
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				return fmt.Errorf("%s: %s", strings.Fields(line)[0], strings.TrimSpace(l))
			}
			return nil
		}
		// Untagged data of SELECT: no literals are expected here.
	}
}

type idleResult struct {
	Conns       int
	Before      int64 // bytes
	After       int64
	PerConnKiB  float64
	OpenSeconds float64
}

// runIdle restarts the server (so earlier phases' garbage does not count),
// measures its memory, opens n connections (LOGIN, SELECT INBOX, IDLE)
// with a few openers at a time, waits for the memory to settle, measures
// again and closes them.
// whileOpen, when not nil, runs after the measurement with the
// connections still open (profiles).
func runIdle(ctx context.Context, t Target, env *runEnv, n int, whileOpen func()) (*idleResult, error) {
	if err := t.Restart(ctx); err != nil {
		return nil, fmt.Errorf("idle: restart: %w", err)
	}
	time.Sleep(2 * time.Second)
	before, err := t.Memory()
	if err != nil {
		return nil, fmt.Errorf("idle: memory: %w", err)
	}
	users := env.Users[:env.Sizes.Users]
	conns := make([]*idleConn, n)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				ic, err := openIdle(t.IMAPAddr(), users[i%len(users)], env.Password)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("idle: connection %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				conns[i] = ic
			}
		}()
	}
	wg.Wait()
	open := time.Since(t0)
	defer func() {
		for _, ic := range conns {
			if ic != nil {
				ic.c.Close()
			}
		}
	}()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	time.Sleep(3 * time.Second)
	after, err := t.Memory()
	if err != nil {
		return nil, fmt.Errorf("idle: memory: %w", err)
	}
	if whileOpen != nil {
		whileOpen()
	}
	return &idleResult{
		Conns: n, Before: before, After: after,
		PerConnKiB:  float64(after-before) / 1024 / float64(n),
		OpenSeconds: open.Seconds(),
	}, nil
}

func openIdle(addr, user, password string) (*idleConn, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	ic := &idleConn{c: c, r: bufio.NewReaderSize(c, 1024)}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if l, err := ic.r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		c.Close()
		return nil, fmt.Errorf("greeting %q: %v", l, err)
	}
	if err := ic.cmd("a", fmt.Sprintf("LOGIN %q %q", user, password), false); err != nil {
		c.Close()
		return nil, err
	}
	if err := ic.cmd("b", "SELECT INBOX", false); err != nil {
		c.Close()
		return nil, err
	}
	if err := ic.cmd("c", "IDLE", true); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return ic, nil
}
