package imapserver

import (
	"context"
	"io"
	"testing"
)

// TestAccountDeletedUnderSession: after the account of logged-in
// sessions is deleted (bucketmail user del), a command that touches it
// gets "* BYE" and the connection closes; never NO [SERVERBUG].
func TestAccountDeletedUnderSession(t *testing.T) {
	env := newTestEnv(t, nil)
	cmds := []string{
		"CREATE foo",              // a foreign-key failure in the store
		"SUBSCRIBE INBOX",         // likewise
		"SELECT INBOX",            // NONEXISTENT in disguise
		"STATUS INBOX (MESSAGES)", // likewise
	}
	var clients []*rawClient
	for range cmds {
		c := dialRaw(t, env.addr)
		c.send("a1 LOGIN alice secret\r\n")
		c.expect("a1 OK")
		clients = append(clients, c)
	}
	if err := env.store.DeleteAccount(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		c := clients[i]
		c.send("a2 " + cmd + "\r\n")
		if l := c.line(); l != "* BYE Account no longer exists" {
			t.Errorf("%s: got %q, want * BYE Account no longer exists", cmd, l)
		}
		if _, err := c.br.ReadString('\n'); err != io.EOF {
			t.Errorf("%s: after BYE: %v, want EOF", cmd, err)
		}
	}
	// A mailbox that is missing while the account exists is still NO.
	c := dialRaw(t, env.addr)
	c.send("b1 LOGIN bob hunter2\r\n")
	c.expect("b1 OK")
	c.send("b2 SELECT nosuch\r\n")
	if l := c.line(); l != "b2 NO [NONEXISTENT] Mailbox does not exist" {
		t.Errorf("SELECT nosuch: got %q", l)
	}
}
