package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// The mixed IMAP load models a desktop client (Thunderbird-like) over
// many users and connections. Each worker owns a disjoint set of users
// and, until the duration is over, logs in as the next one and runs:
//
//	LOGIN, SELECT INBOX, UID FETCH 1:* (UID FLAGS ENVELOPE)      once per login
//	then Cycles times:
//	  IDLE (even cycles) or NOOP (odd cycles), during which one new
//	    message arrives for the user over LMTP (not counted as an IMAP op)
//	  UID FETCH 1:* (FLAGS)                        flag resync
//	  UID SEARCH UNSEEN
//	  UID FETCH <unseen, at most 3> BODY.PEEK[]    read new mail
//	  UID STORE <those> +FLAGS.SILENT (\Seen)
//	  APPEND Sent (\Seen) <a small corpus message> save a sent message
//	  UID STORE <oldest> +FLAGS.SILENT (\Deleted), EXPUNGE   delete one (INBOX keeps its size)
//	LOGOUT
//
// Every IMAP command's latency is recorded under the names in mixedOps.
// IDLE's latency is the time to the continuation request plus the time
// from DONE to the tagged OK (the wait in between is not counted).

// mixedOps are the per-command rows of the table, in order.
var mixedOps = []string{"LOGIN", "SELECT", "FETCH ENVELOPE 1:*", "FETCH FLAGS 1:*", "SEARCH UNSEEN",
	"FETCH BODY.PEEK[]", "STORE", "APPEND", "EXPUNGE", "IDLE", "NOOP", "LOGOUT"}

type mixedResult struct {
	Ops      int
	Errors   int
	FirstErr error
	Elapsed  time.Duration
	Lat      latencies
	Sessions int
	// Deliveries are the new-mail LMTP deliveries inside the cycles
	// (op "deliver"): part of each cycle's time, not IMAP operations.
	Deliveries latencies
}

// OpsPerSec returns IMAP commands completed per second.
func (r *mixedResult) OpsPerSec() float64 { return float64(r.Ops) / r.Elapsed.Seconds() }

func runMixed(ctx context.Context, t Target, env *runEnv, newMail, sent [][]byte) (*mixedResult, error) {
	sz := env.Sizes
	users := env.Users[:sz.Users]
	res := &mixedResult{}
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		res.Errors++
		if res.FirstErr == nil {
			res.FirstErr = err
		}
		mu.Unlock()
	}
	deadline := time.Now().Add(sz.MixedDuration)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < sz.MixedWorkers; w++ {
		var mine []string
		for i := w % len(users); i < len(users); i += sz.MixedWorkers {
			mine = append(mine, users[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lc, err := dialLMTP(t.LMTPAddr())
			if err != nil {
				fail(err)
				return
			}
			defer lc.close()
			s := &mixedSession{t: t, env: env, res: res, lc: lc, newMail: newMail, sent: sent, seed: w}
			for k := 0; ctx.Err() == nil && time.Now().Before(deadline); k++ {
				if err := s.run(mine[k%len(mine)], deadline); err != nil {
					fail(err)
					// A broken session is not retried at full speed.
					time.Sleep(50 * time.Millisecond)
				}
				mu.Lock()
				res.Sessions++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Ops = res.Lat.count("")
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if res.Ops == 0 {
		return res, fmt.Errorf("mixed: no IMAP command completed: %v", res.FirstErr)
	}
	return res, nil
}

type mixedSession struct {
	t             Target
	env           *runEnv
	res           *mixedResult
	lc            *lmtpConn
	newMail, sent [][]byte
	seed, n       int
}

// deliver delivers msg to user over the worker's LMTP connection.
func (s *mixedSession) deliver(user string, msg []byte) error {
	t0 := time.Now()
	if err := s.lc.deliver(user, msg); err != nil {
		return err
	}
	s.res.Deliveries.add("deliver", time.Since(t0))
	return nil
}

// timed runs f and records its latency under op when it succeeds.
func (s *mixedSession) timed(op string, f func() error) error {
	t0 := time.Now()
	if err := f(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	s.res.Lat.add(op, time.Since(t0))
	return nil
}

func (s *mixedSession) run(user string, deadline time.Time) error {
	conn, err := net.DialTimeout("tcp", s.t.IMAPAddr(), 10*time.Second)
	if err != nil {
		return err
	}
	c := imapclient.New(conn, nil)
	defer c.Close()
	if err := c.WaitGreeting(); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if err := s.timed("LOGIN", func() error { return c.Login(user, s.env.Password).Wait() }); err != nil {
		return err
	}
	if err := s.timed("SELECT", func() error { _, err := c.Select("INBOX", nil).Wait(); return err }); err != nil {
		return err
	}
	all := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}
	if err := s.timed("FETCH ENVELOPE 1:*", func() error {
		_, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
		return err
	}); err != nil {
		return err
	}
	// The first login's cycles always run, so every command has a sample
	// even when one login takes longer than the whole (smoke) duration.
	for cyc := 0; cyc < s.env.Sizes.MixedCycles && (s.n < s.env.Sizes.MixedCycles || time.Now().Before(deadline)); cyc++ {
		s.n++
		msg := s.newMail[(s.seed*7919+s.n)%len(s.newMail)]
		if cyc%2 == 0 {
			t0 := time.Now()
			idle, err := c.Idle()
			if err != nil {
				return fmt.Errorf("IDLE: %w", err)
			}
			d := time.Since(t0)
			derr := s.deliver(user, msg)
			t1 := time.Now()
			if err := idle.Close(); err != nil {
				return fmt.Errorf("IDLE DONE: %w", err)
			}
			if err := idle.Wait(); err != nil {
				return fmt.Errorf("IDLE: %w", err)
			}
			s.res.Lat.add("IDLE", d+time.Since(t1))
			if derr != nil {
				return fmt.Errorf("new mail over LMTP: %w", derr)
			}
		} else {
			if err := s.deliver(user, msg); err != nil {
				return fmt.Errorf("new mail over LMTP: %w", err)
			}
			if err := s.timed("NOOP", func() error { return c.Noop().Wait() }); err != nil {
				return err
			}
		}
		var oldest imap.UID
		if err := s.timed("FETCH FLAGS 1:*", func() error {
			msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true}).Collect()
			for _, m := range msgs {
				if oldest == 0 || m.UID < oldest {
					oldest = m.UID
				}
			}
			return err
		}); err != nil {
			return err
		}
		var unseen []imap.UID
		if err := s.timed("SEARCH UNSEEN", func() error {
			data, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
			if err == nil {
				unseen = data.AllUIDs()
			}
			return err
		}); err != nil {
			return err
		}
		if len(unseen) > 3 {
			unseen = unseen[len(unseen)-3:]
		}
		if len(unseen) > 0 {
			set := imap.UIDSetNum(unseen...)
			if err := s.timed("FETCH BODY.PEEK[]", func() error {
				return fetchBodies(c, set, io.Discard)
			}); err != nil {
				return err
			}
			if err := s.timed("STORE", func() error {
				return c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
			}); err != nil {
				return err
			}
		}
		out := s.sent[(s.seed*104729+s.n)%len(s.sent)]
		if err := s.timed("APPEND", func() error {
			cmd := c.Append("Sent", int64(len(out)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
			if _, err := cmd.Write(out); err != nil {
				return err
			}
			if err := cmd.Close(); err != nil {
				return err
			}
			_, err := cmd.Wait()
			return err
		}); err != nil {
			return err
		}
		if oldest != 0 {
			if err := s.timed("STORE", func() error {
				return c.Store(imap.UIDSetNum(oldest), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
			}); err != nil {
				return err
			}
			if err := s.timed("EXPUNGE", func() error { return c.Expunge().Close() }); err != nil {
				return err
			}
		}
	}
	return s.timed("LOGOUT", func() error { return c.Logout().Wait() })
}

// fetchBodies runs UID FETCH set BODY.PEEK[] and copies every literal to
// w, returning when the command completes. It returns the byte count
// through w.
func fetchBodies(c *imapclient.Client, set imap.NumSet, w io.Writer) error {
	cmd := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	for {
		m := cmd.Next()
		if m == nil {
			break
		}
		for {
			item := m.Next()
			if item == nil {
				break
			}
			if b, ok := item.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
				if _, err := io.Copy(w, b.Literal); err != nil {
					cmd.Close()
					return err
				}
			}
		}
	}
	return cmd.Close()
}
