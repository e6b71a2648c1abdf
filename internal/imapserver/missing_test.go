package imapserver

import (
	"context"
	"fmt"
	"testing"

	"github.com/bucketmail/bucketmail/internal/mailstore"
)

// TestFetchMissingObject: a message whose object was deleted from a real
// blob/fs store is left out of FETCH 1:*; every other message is served
// and the tagged answer names the missing UID.
func TestFetchMissingObject(t *testing.T) {
	st, fb := newTestStoreBlobs(t)
	env := newTestEnv(t, func(o *Options) { o.Store = st })
	c := dialRaw(t, env.addr)
	c.send("a1 LOGIN alice secret\r\n")
	c.expect("a1 OK")
	for i := 1; i <= 3; i++ {
		msg := fmt.Sprintf("Subject: m%d\r\n\r\nbody\r\n", i)
		c.send(fmt.Sprintf("a2 APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg))
		c.expect("a2 OK")
	}
	ctx := context.Background()
	acct, err := st.Account(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := acct.Mailbox(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var key string
	if err := acct.Messages(ctx, mb.ID, []uint32{2}, func(m *mailstore.Message) error {
		key = m.BlobKey
		return nil
	}); err != nil || key == "" {
		t.Fatalf("blob key of UID 2: %q, %v", key, err)
	}
	if err := fb.Store.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	c.send("a3 SELECT INBOX\r\n")
	c.expect("a3 OK")
	c.send("a4 FETCH 1:* (UID BODY.PEEK[HEADER])\r\n")
	want := []string{
		"* 1 FETCH (UID 1 BODY[HEADER] {15}", "Subject: m1", "", ")",
		"* 3 FETCH (UID 3 BODY[HEADER] {15}", "Subject: m3", "", ")",
		"a4 NO [UNAVAILABLE] Some messages could not be fetched (UID 2: object missing)",
	}
	for _, w := range want {
		if l := c.line(); l != w {
			t.Fatalf("got %q, want %q", l, w)
		}
	}
	// Without body data every message answers.
	c.send("a5 FETCH 1:* (UID)\r\n")
	for _, w := range []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)", "a5 OK FETCH completed"} {
		if l := c.line(); l != w {
			t.Fatalf("got %q, want %q", l, w)
		}
	}
	// \Seen is not set on the message that could not be served.
	c.send("a6 FETCH 2:3 BODY[TEXT]\r\n")
	for _, w := range []string{"* 3 FETCH (BODY[TEXT] {6}", "body", " FLAGS (\\Seen \\Recent))",
		"a6 NO [UNAVAILABLE] Some messages could not be fetched (UID 2: object missing)"} {
		if l := c.line(); l != w {
			t.Fatalf("got %q, want %q", l, w)
		}
	}
	c.send("a7 FETCH 2 FLAGS\r\n")
	for _, w := range []string{"* 2 FETCH (FLAGS (\\Recent))", "a7 OK FETCH completed"} {
		if l := c.line(); l != w {
			t.Fatalf("got %q, want %q", l, w)
		}
	}
}
