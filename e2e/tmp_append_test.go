package e2e

import (
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
	"github.com/bucketmail/bucketmail/internal/testutil/dovecot"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

func TestTmpAppendSpeed(t *testing.T) {
	srv := e2e.Start(t)
	srv.AddUser(t, user, password)
	ref := dovecot.Start(t)
	msgs := corpusMessages(t)
	for _, s := range []struct{ addr, u, p string }{{srv.IMAPAddr, user, password}, {ref.IMAPAddr, ref.User, ref.Password}} {
		c, _ := e2e.DialRaw(s.addr)
		c.Login(s.u, s.p)
		start := time.Now()
		var slow []string
		for _, m := range msgs {
			t0 := time.Now()
			if _, err := c.Append("INBOX", corpus.CRLF(m.Raw)); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(t0); d > 50*time.Millisecond {
				slow = append(slow, m.ID+" "+d.String())
			}
		}
		t.Logf("%s: %d APPEND in %v; slow: %d %v", s.addr, len(msgs), time.Since(start), len(slow), slow[:min(5, len(slow))])
	}
}
