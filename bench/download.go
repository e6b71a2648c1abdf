package main

import (
	"context"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// countWriter counts bytes and drops them.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

type downloadResult struct {
	MBps     []float64 // per pass, 10^6 bytes of literal data per second
	Bytes    int64     // per pass
	Messages uint32
}

// runDownload logs in as the big account and runs UID FETCH 1:*
// BODY.PEEK[] passes times over one connection.
func runDownload(ctx context.Context, t Target, env *runEnv, passes int) (*downloadResult, error) {
	c, err := imapclient.DialInsecure(t.IMAPAddr(), nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login(env.Big, env.Password).Wait(); err != nil {
		return nil, fmt.Errorf("download: LOGIN: %w", err)
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, fmt.Errorf("download: EXAMINE: %w", err)
	}
	res := &downloadResult{Messages: sel.NumMessages}
	for i := 0; i < passes && ctx.Err() == nil; i++ {
		var w countWriter
		t0 := time.Now()
		if err := fetchBodies(c, imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &w); err != nil {
			return nil, fmt.Errorf("download: UID FETCH 1:* BODY.PEEK[]: %w", err)
		}
		d := time.Since(t0)
		res.Bytes = w.n
		res.MBps = append(res.MBps, float64(w.n)/1e6/d.Seconds())
	}
	c.Logout().Wait()
	return res, ctx.Err()
}
