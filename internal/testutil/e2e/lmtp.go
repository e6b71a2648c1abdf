package e2e

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/emersion/go-smtp"
)

// LMTPClient delivers messages over one LMTP connection (RFC 2033), one
// transaction per message.
type LMTPClient struct {
	c *smtp.Client
}

// DialLMTP connects and sends LHLO.
func DialLMTP(addr string) (*LMTPClient, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClientLMTP(conn)
	c.CommandTimeout = 2 * time.Minute
	c.SubmissionTimeout = 5 * time.Minute
	if err := c.Hello("e2e.test"); err != nil {
		c.Close()
		return nil, fmt.Errorf("LHLO: %w", err)
	}
	return &LMTPClient{c: c}, nil
}

// Deliver sends one message from sender to the recipients and returns the
// per-recipient DATA replies (nil for 250). A rejected MAIL or RCPT is
// returned as the error, after RSET.
func (l *LMTPClient) Deliver(from string, rcpts []string, msg []byte) (map[string]*smtp.SMTPError, error) {
	if err := l.c.Mail(from, nil); err != nil {
		l.c.Reset()
		return nil, fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, r := range rcpts {
		if err := l.c.Rcpt(r, nil); err != nil {
			l.c.Reset()
			return nil, fmt.Errorf("RCPT TO:<%s>: %w", r, err)
		}
	}
	w, err := l.c.Data()
	if err != nil {
		l.c.Reset()
		return nil, fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return nil, fmt.Errorf("DATA write: %w", err)
	}
	resp, err := w.CloseWithLMTPResponse()
	out := map[string]*smtp.SMTPError{}
	for _, r := range rcpts {
		out[r] = nil
	}
	if err != nil {
		le, ok := err.(smtp.LMTPDataError)
		if !ok {
			return nil, fmt.Errorf("DATA end: %w", err)
		}
		for r, e := range le {
			out[r] = e
		}
	}
	_ = resp
	return out, nil
}

// Deliver1 delivers msg to one recipient and returns an error unless the
// reply is 250.
func (l *LMTPClient) Deliver1(from, rcpt string, msg []byte) error {
	res, err := l.Deliver(from, []string{rcpt}, msg)
	if err != nil {
		return err
	}
	if e := res[rcpt]; e != nil {
		return e
	}
	return nil
}

// Close sends QUIT and closes the connection.
func (l *LMTPClient) Close() error {
	l.c.Quit()
	return l.c.Close()
}

// Wire returns the message as an LMTP server receives it from go-smtp's
// client (net/textproto's DotWriter): every LF not preceded by CR becomes
// CRLF, and a message that does not end in a line end gets CRLF (or LF
// after a final CR) so that the terminating "." is on its own line. This
// is what bucketmail stores after its trace header fields.
func Wire(raw []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(raw) + len(raw)/40 + 2)
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(c)
	}
	out := b.Bytes()
	switch {
	case len(out) == 0:
	case bytes.HasSuffix(out, []byte("\r\n")):
	case out[len(out)-1] == '\r':
		out = append(out, '\n')
	default:
		out = append(out, '\r', '\n')
	}
	return out
}

// Served returns the message as an IMAP server serves it in BODY[] after
// delivery with go-smtp's client: Wire(raw) with every NUL sent as 0x80,
// because a literal cannot hold NUL (RFC 3501 §4.3 and §9 CHAR8; RFC 9051
// the same) — Dovecot does exactly this; BINARY[] (RFC 3516) returns the
// NUL.
func Served(raw []byte) []byte {
	return bytes.ReplaceAll(Wire(raw), []byte{0}, []byte{0x80})
}

// TracePrefix matches the header fields bucketmail's LMTP delivery puts in
// front of a message delivered to one recipient (internal/delivery):
// Return-Path, Delivered-To and a Received field with folded lines.
func TracePrefix(sender, rcpt string) *regexp.Regexp {
	return regexp.MustCompile(`\AReturn-Path: <` + regexp.QuoteMeta(sender) + `>\r\n` +
		`Delivered-To: ` + regexp.QuoteMeta(rcpt) + `\r\n` +
		`Received: from [^\r\n]+(\r\n\t[^\r\n]+)*\r\n\z`)
}
