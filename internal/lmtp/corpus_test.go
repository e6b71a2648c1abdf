package lmtp_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
)

// sentBytes is what go-smtp's client puts on the wire for raw (its
// textproto dot-writer turns bare LF into CRLF and ends the last line),
// which is also what the server must store after the added fields.
func sentBytes(raw []byte) []byte {
	b := corpus.CRLF(raw)
	switch {
	case bytes.HasSuffix(b, []byte("\r\n")):
	case bytes.HasSuffix(b, []byte("\r")):
		b = append(b, '\n')
	default:
		b = append(b, '\r', '\n')
	}
	return b
}

// TestCorpusDelivery delivers every corpus message over LMTP and checks
// that each is stored as the added header fields followed by exactly the
// bytes sent, with RFC822.SIZE equal to the stored length. Four
// connections deliver in parallel, each to its own account, so that the
// order within an account is known.
func TestCorpusDelivery(t *testing.T) {
	f := newFixtureSize(t, "tcp", 64<<20)
	ctx := context.Background()
	accounts := []string{"alice@example.org", "bob@example.org", "carol@example.org", "dave@example.org"}
	for _, a := range accounts[2:] {
		if err := f.manager.AddUser(ctx, a, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	type msg struct {
		id   string
		raw  []byte
		want []byte
	}
	lists := make([][]msg, len(accounts))
	n := 0
	var sent int64
	// Under the race detector (8x slower here) every 8th message is
	// delivered; the whole corpus runs without it.
	step, seen := 1, 0
	if raceEnabled {
		step = 8
	}
	corpus.Walk(t, "", func(m corpus.Message) {
		seen++
		if (seen-1)%step != 0 {
			return
		}
		lists[n%len(accounts)] = append(lists[n%len(accounts)], msg{m.ID, m.Raw, sentBytes(m.Raw)})
		n++
		sent += int64(len(m.Raw))
	})
	if n == 0 {
		t.Fatal("the corpus has no messages")
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(accounts))
	for i, acct := range accounts {
		c := f.dial()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, m := range lists[i] {
				if err := c.SendMail("corpus@example.net", []string{acct}, bytes.NewReader(m.raw)); err != nil {
					errs <- fmt.Errorf("%s: %w", m.id, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	t.Logf("delivered %d messages (%.1f MB) in %v: %.0f messages/s, %.1f MB/s (%d connections)",
		n, float64(sent)/1e6, elapsed.Round(time.Millisecond),
		float64(n)/elapsed.Seconds(), float64(sent)/1e6/elapsed.Seconds(), len(accounts))

	for ai, acct := range accounts {
		list := lists[ai]
		a, err := f.store.Account(ctx, acct)
		if err != nil {
			t.Fatal(err)
		}
		mb, err := a.Mailbox(ctx, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		states, err := a.States(ctx, mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(states) != len(list) {
			t.Fatalf("%s: INBOX has %d messages, want %d", acct, len(states), len(list))
		}
		uids := make([]uint32, len(states))
		for i, s := range states {
			uids[i] = s.UID
		}
		prefix := regexp.MustCompile(`\AReturn-Path: <corpus@example\.net>\r\nDelivered-To: ` + regexp.QuoteMeta(acct) + `\r\n` +
			`Received: from client\.example \(\[127\.0\.0\.1\]\)\r\n\tby mx\.test with LMTP id [0-9A-F]{16}\r\n` +
			`\t\(envelope-from <corpus@example\.net>\)\r\n\tfor <` + regexp.QuoteMeta(acct) + `>; [^\r\n]+\r\n\z`)
		i, bad := 0, 0
		err = a.Messages(ctx, mb.ID, uids, func(m *mailstore.Message) error {
			rc, err := a.OpenBody(ctx, m, 0, -1)
			if err != nil {
				return err
			}
			got, err := io.ReadAll(rc) // test only: compare whole messages
			rc.Close()
			if err != nil {
				return err
			}
			w := list[i].want
			switch {
			case int64(len(got)) != m.Size:
				t.Errorf("%s: RFC822.SIZE %d, stored %d bytes", list[i].id, m.Size, len(got))
				bad++
			case !bytes.HasSuffix(got, w) || !prefix.Match(got[:len(got)-len(w)]):
				t.Errorf("%s: stored bytes are not the added fields + the %d bytes sent; starts %q", list[i].id, len(w), got[:min(len(got), 300)])
				bad++
			}
			i++
			if bad > 10 {
				return fmt.Errorf("too many failures")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if i != len(list) {
			t.Fatalf("%s: read back %d messages, want %d", acct, i, len(list))
		}
	}
}
