package dovecot_test

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/bucketmail/bucketmail/internal/testutil/dovecot"
)

// TestStartDeliverFetch starts Dovecot, delivers one message over LMTP,
// APPENDs another, and reads both back over IMAP.
func TestStartDeliverFetch(t *testing.T) {
	in := dovecot.Start(t)

	msg := "From: a@example.org\r\nTo: ref@example.org\r\nSubject: hello\r\n\r\nbody line\r\n"
	conn, err := net.DialTimeout("tcp", in.LMTPAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lc := smtp.NewClientLMTP(conn)
	defer lc.Close()
	if err := lc.Hello("localhost"); err != nil {
		t.Fatal(err)
	}
	if err := lc.Mail("sender@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := lc.Rcpt(in.User, nil); err != nil {
		t.Fatal(err)
	}
	if err := lc.Rcpt("nobody@example.org", nil); err == nil {
		t.Errorf("RCPT to unknown user: accepted, want 550")
	} else if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 550 {
		t.Errorf("RCPT to unknown user: %v, want 550", err)
	}
	w, err := lc.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(msg))
	resp, err := w.CloseWithLMTPResponse()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if len(resp) != 1 || resp[in.User] == nil {
		t.Fatalf("DATA responses = %v, want one for %s", resp, in.User)
	}
	lc.Quit()

	c, err := imapclient.DialInsecure(in.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(in.User, in.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	appended := "From: b@example.org\r\nSubject: appended\r\n\r\nx\r\n"
	ac := c.Append("INBOX", int64(len(appended)), nil)
	ac.Write([]byte(appended))
	ac.Close()
	ad, err := ac.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if ad.UID != 2 {
		t.Errorf("APPENDUID uid = %d, want 2", ad.UID)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.UIDSetNum(1, 2), &imap.FetchOptions{
		UID: true, RFC822Size: true, Envelope: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("FETCH returned %d messages, want 2", len(msgs))
	}
	var body1 []byte
	for _, b := range msgs[0].BodySection {
		body1 = b.Bytes
	}
	// Dovecot's LMTP prepends Return-Path, Delivered-To and Received.
	if !bytes.HasPrefix(body1, []byte("Return-Path: <sender@example.com>\r\nDelivered-To: ref@example.org\r\nReceived: ")) {
		t.Errorf("delivered BODY[] starts %q", body1[:min(len(body1), 120)])
	}
	if !bytes.HasSuffix(body1, []byte(msg)) {
		t.Errorf("delivered BODY[] = %q, want it to end with the message", body1)
	}
	if msgs[0].RFC822Size != int64(len(body1)) {
		t.Errorf("RFC822.SIZE = %d, BODY[] has %d octets", msgs[0].RFC822Size, len(body1))
	}
	if got := msgs[0].Envelope.Subject; got != "hello" {
		t.Errorf("ENVELOPE subject = %q, want hello", got)
	}
	var body2 []byte
	for _, b := range msgs[1].BodySection {
		body2 = b.Bytes
	}
	if string(body2) != appended {
		t.Errorf("appended BODY[] = %q, want %q", body2, appended)
	}
	if msgs[1].RFC822Size != int64(len(appended)) {
		t.Errorf("appended RFC822.SIZE = %d, want %d", msgs[1].RFC822Size, len(appended))
	}
	if err := c.Logout().Wait(); err != nil {
		t.Error(err)
	}
	if strings.Contains(in.Log(), "Fatal:") {
		t.Errorf("dovecot log has a fatal error:\n%s", in.Log())
	}
}
