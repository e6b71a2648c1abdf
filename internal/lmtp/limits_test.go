package lmtp_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bucketmail/bucketmail/internal/lmtp"
)

// TestCommandLineLimit: a command line longer than the default line
// limit is refused with 500 5.4.0 and the connection closed, even when
// the message size limit is far larger (go-smtp buffers a command line
// whole, so the line limit is what bounds memory per connection).
func TestCommandLineLimit(t *testing.T) {
	f := newFixtureSize(t, "tcp", 50<<20)
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
		t.Fatalf("greeting %q, %v", line, err)
	}
	// No CRLF: the server must answer before the line ends.
	go func() {
		io.WriteString(conn, "MAIL FROM:<"+strings.Repeat("a", lmtp.DefaultMaxLineLength+10))
	}()
	line, err := r.ReadString('\n')
	if err != nil || line != "500 5.4.0 Too long line, closing connection\r\n" {
		t.Fatalf("over-long command line: %q, %v; want 500 5.4.0", line, err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("after 500: read %v, want EOF", err)
	}
}

// TestMessageLineLimit: message lines up to Options.MaxLineLength bytes
// are stored; one byte more fails the transaction with 554 5.6.0.
func TestMessageLineLimit(t *testing.T) {
	const limit = 1000
	f := newFixtureOpts(t, "tcp", 1<<20, func(o *lmtp.Options) { o.MaxLineLength = limit })
	send := func(line string) error {
		c := f.dial()
		if err := c.Mail("carol@example.net", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("alice@example.org", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "Subject: long\r\n\r\n"+line+"\r\nend\r\n")
		_, err = w.CloseWithLMTPResponse()
		return err
	}
	if err := send(strings.Repeat("x", limit)); err != nil {
		t.Fatalf("line of exactly %d bytes: %v, want 250", limit, err)
	}
	err := send(strings.Repeat("y", limit+1))
	var le smtp.LMTPDataError
	if !errors.As(err, &le) || smtpCode(le["alice@example.org"]) != "554 5.6.0" {
		t.Fatalf("line of %d bytes: %v, want 554 5.6.0 for alice", limit+1, err)
	}
	msgs := f.inbox("alice@example.org")
	if len(msgs) != 1 || !strings.Contains(string(msgs[0]), "\r\n"+strings.Repeat("x", limit)+"\r\nend\r\n") {
		t.Fatalf("alice has %d messages, want the one with the %d-byte line", len(msgs), limit)
	}
	f.spoolEmpty()
}

// TestConnectionLimit: past MaxConnections a client is not greeted
// until a connection ends.
func TestConnectionLimit(t *testing.T) {
	f := newFixtureOpts(t, "tcp", maxSize, func(o *lmtp.Options) { o.MaxConnections = 2 })
	greet := func(c net.Conn, wait time.Duration) (string, error) {
		c.SetReadDeadline(time.Now().Add(wait))
		return bufio.NewReader(c).ReadString('\n')
	}
	var conns []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		if i < 2 {
			if line, err := greet(c, 5*time.Second); err != nil || !strings.HasPrefix(line, "220 ") {
				t.Fatalf("connection %d: greeting %q, %v", i, line, err)
			}
		}
	}
	if line, err := greet(conns[2], 300*time.Millisecond); err == nil {
		t.Fatalf("third connection greeted %q with MaxConnections 2", line)
	}
	conns[0].Close()
	if line, err := greet(conns[2], 5*time.Second); err != nil || !strings.HasPrefix(line, "220 ") {
		t.Fatalf("third connection after one closed: %q, %v; want 220", line, err)
	}
}
