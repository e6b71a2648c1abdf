package e2e

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// corpusMessages returns the messages of corpus/real and corpus/edge (in
// that order; large files left out under -short).
func corpusMessages(t *testing.T) []corpus.Message {
	t.Helper()
	var msgs []corpus.Message
	for _, sub := range []string{"real", "edge"} {
		corpus.Walk(t, sub, func(m corpus.Message) { msgs = append(msgs, m) })
	}
	return msgs
}

// deliverAll delivers every message to rcpt over one LMTP connection, in
// order, and returns the messages that were accepted (their sequence
// numbers and UIDs in INBOX) and one line per refused delivery.
func deliverAll(addr, rcpt string, msgs []corpus.Message) (ok []corpus.Message, refused []string, stats string, err error) {
	lc, err := e2e.DialLMTP(addr)
	if err != nil {
		return nil, nil, "", fmt.Errorf("LMTP: %w", err)
	}
	defer lc.Close()
	var octets int
	start := time.Now()
	for _, m := range msgs {
		if err := lc.Deliver1(sender, rcpt, m.Raw); err != nil {
			refused = append(refused, fmt.Sprintf("deliver %s: %v", m.ID, err))
			continue
		}
		ok = append(ok, m)
		octets += len(m.Raw)
	}
	d := time.Since(start)
	stats = fmt.Sprintf("LMTP: delivered %d of %d messages (%.1f MB) in %v: %.0f messages/s",
		len(ok), len(msgs), float64(octets)/1e6, d.Round(time.Millisecond), float64(len(ok))/d.Seconds())
	return ok, refused, stats, nil
}

// filled is the corpus-filled server that several tests share: starting
// it and delivering the corpus takes most of a minute.
var filled struct {
	once    sync.Once
	srv     *e2e.Server
	msgs    []corpus.Message // delivered, in UID order
	refused []string
	stats   string
	err     error
}

// corpusServer returns a running server whose user (user/password) has
// every corpus message in INBOX, delivered once per test process over
// LMTP; msgs[i] has sequence number and UID i+1. Tests must leave INBOX
// as it is (no flags, expunges or new messages); other mailboxes are
// theirs. Refused deliveries are errors in every test that uses it.
func corpusServer(t *testing.T) (*e2e.Server, []corpus.Message) {
	t.Helper()
	corpus.Dir(t) // skip (or fail in CI) before starting anything
	filled.once.Do(func() {
		filled.err = fmt.Errorf("corpus server: set-up did not finish (see the first test that used it)")
		msgs := corpusMessages(t)
		bin, err := e2e.BinaryPath()
		if err != nil {
			filled.err = err
			return
		}
		dir, err := os.MkdirTemp("", "bucketmail-e2e-corpus-")
		if err != nil {
			filled.err = err
			return
		}
		srv, err := e2e.Launch(bin, dir)
		if err != nil {
			os.RemoveAll(dir)
			filled.err = err
			return
		}
		e2e.AtExit(func() {
			if err := srv.Shutdown(); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: corpus server: %v\n", err)
			}
			os.RemoveAll(dir)
		})
		if out, errOut, err := srv.RunErr(password+"\n", "user", "add", user, "--password-stdin"); err != nil {
			filled.err = fmt.Errorf("user add: %v\n%s%s", err, out, errOut)
			return
		}
		filled.srv = srv
		filled.msgs, filled.refused, filled.stats, filled.err = deliverAll(srv.LMTPAddr, user, msgs)
	})
	if filled.err != nil {
		t.Fatal(filled.err)
	}
	t.Log(filled.stats)
	for _, r := range filled.refused {
		t.Error(r)
	}
	t.Cleanup(func() {
		if t.Failed() && filled.srv != nil {
			t.Logf("bucketmail serve log (%s): last lines:\n%s", filled.srv.DataDir, lastLines(filled.srv.Log(), 30))
		}
	})
	return filled.srv, filled.msgs
}

func lastLines(s string, n int) string {
	end := len(s)
	for i := len(s) - 1; i >= 0 && n > 0; i-- {
		if s[i] == '\n' && i != len(s)-1 {
			n--
			if n == 0 {
				return s[i+1 : end]
			}
		}
	}
	return s
}
