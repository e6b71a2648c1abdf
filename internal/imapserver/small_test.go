package imapserver

import (
	"testing"
)

// TestDovecotSmallCases: behaviours matched to Dovecot 2.3 (checked
// against the one internal/testutil/dovecot starts).
func TestDovecotSmallCases(t *testing.T) {
	env := newTestEnv(t, nil)
	c := dialRaw(t, env.addr)
	for _, step := range []struct{ send, want string }{
		// An empty line gets an untagged BAD, before and after login.
		{"\r\n", "* BAD Empty command line"},
		{"\n", "* BAD Empty command line"},
		// 8-bit in a quoted LOGIN argument is taken (a failed login, not BAD).
		{"a1 LOGIN \"\xc3\xbcser\" \"p\xc3\xa4ss\"\r\n", "a1 NO [AUTHENTICATIONFAILED] Authentication failed"},
		{"a2 LOGIN alice secret\r\n", "a2 OK"},
		{"\r\n", "* BAD Empty command line"},
		// \Recent cannot be set by APPEND.
		{"a3 APPEND INBOX (\\Seen \\Recent) {12+}\r\nSubject: x\r\n\r\n", "a3 BAD Invalid system flag \\Recent"},
		// A zero-byte message is refused.
		{"a4 APPEND INBOX {0+}\r\n\r\n", "a4 NO Can't save a zero byte message"},
		{"a5 STATUS INBOX (MESSAGES)\r\n", "* STATUS INBOX (MESSAGES 0)"},
	} {
		c.send(step.send)
		if l := c.line(); len(l) < len(step.want) || l[:len(step.want)] != step.want {
			t.Errorf("sent %q: got %q, want %q", step.send, l, step.want)
		}
		if step.send[0] == 'a' && step.want[0] == '*' {
			c.expect(step.send[:2] + " OK") // the tagged OK of STATUS
		}
	}
	// The session is still in step: a plain command works.
	c.send("a6 NOOP\r\n")
	c.expect("a6 OK")
}
