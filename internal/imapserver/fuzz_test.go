package imapserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzCommandLoop feeds arbitrary bytes to a logged-in session with a
// selected mailbox holding two messages. The session must neither panic
// nor hang: it ends when the input ends.
func FuzzCommandLoop(f *testing.F) {
	for _, s := range []string{
		"a NOOP\r\n",
		"a FETCH 1:* (FLAGS BODY[] BODY.PEEK[1.MIME] BINARY[2] BINARY.SIZE[1] ENVELOPE BODYSTRUCTURE)\r\n",
		"a UID FETCH 1:* BODY[HEADER.FIELDS (Subject)]<0.5>\r\n",
		"a SEARCH OR BODY x NOT TEXT y\r\n",
		"a SEARCH RETURN (SAVE) ALL\r\nb FETCH $ UID\r\n",
		"a STORE 1 +FLAGS (\\Deleted)\r\nb EXPUNGE\r\n",
		"a APPEND INBOX {5}\r\nhello\r\n",
		"a APPEND INBOX {5+}\r\nhello\r\n",
		"a LIST \"\" *\r\nb LSUB \"\" %\r\n",
		"a CREATE x\r\nb RENAME x y\r\nc DELETE y\r\n",
		"a IDLE\r\nDONE\r\n",
		"a COPY 1 Trash\r\nb MOVE 2 Junk\r\n",
		"a STATUS INBOX (MESSAGES UIDNEXT)\r\n",
		"a ENABLE IMAP4rev2\r\nb SEARCH ALL\r\n",
		"a CLOSE\r\nb SELECT Trash\r\n",
		"a AUTHENTICATE PLAIN\r\n*\r\n",
		"a LOGOUT\r\n",
		"\x00\xff{99999999}\r\n",
	} {
		f.Add([]byte(s))
	}
	st := newTestStore(f)
	var panics panicCatcher
	srv := New(Options{Store: st, Auth: testUsers, Logger: slog.New(&panics), AuthFailureDelay: -1})
	ctx := context.Background()
	acct, err := st.Account(ctx, "alice")
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range []string{msgPlain, msgMultipart} {
		in, err := st.Spool(ctx, strings.NewReader(m), false, 0)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := acct.Append(ctx, "INBOX", in, nil, time.Time{}); err != nil {
			f.Fatal(err)
		}
		in.Close()
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		client, server := net.Pipe()
		c := newConn(srv, server, false)
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.serve()
		}()
		go io.Copy(io.Discard, client)
		prefix := "p1 LOGIN alice secret\r\np2 SELECT INBOX\r\n"
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write([]byte(prefix))
		client.Write(input)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session did not end for input %q", input)
		}
		if p := panics.take(); p != "" {
			t.Fatalf("panic for input %q: %s", input, p)
		}
	})
}

// panicCatcher is a slog.Handler that keeps the connection panics the
// server logs (it recovers them to keep serving other connections).
type panicCatcher struct {
	mu  sync.Mutex
	msg string
}

func (p *panicCatcher) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicCatcher) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *panicCatcher) WithGroup(string) slog.Handler            { return p }

func (p *panicCatcher) Handle(_ context.Context, r slog.Record) error {
	if !strings.Contains(r.Message, "panic") {
		return nil
	}
	var b strings.Builder
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(a.String() + "\n")
		return true
	})
	p.mu.Lock()
	p.msg += b.String()
	p.mu.Unlock()
	return nil
}

func (p *panicCatcher) take() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.msg
	p.msg = ""
	return m
}
