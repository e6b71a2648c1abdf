package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/dovecot"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// TestPythonImaplib runs testdata/imaplib_lmtp.py (Python's imaplib and
// smtplib.LMTP, independent client implementations) against the server:
// delivery with an unknown recipient, LOGIN, SELECT, EXAMINE, SEARCH,
// FETCH, STORE, COPY, EXPUNGE, CREATE, LIST, RENAME, SUBSCRIBE, LSUB,
// APPEND (flags, date), STATUS, UID MOVE, NOOP, CHECK, DELETE, NAMESPACE,
// LOGOUT, each with exact expected results.
func TestPythonImaplib(t *testing.T) {
	py := e2e.LookTool(t, "python3", "python3")
	srv := e2e.Start(t)
	srv.AddUser(t, user, password)
	runPythonScript(t, py, srv.IMAPAddr, srv.LMTPAddr, user, password)
}

// TestPythonImaplibOnDovecot runs the same script against Dovecot, so its
// expectations are those of the reference server, not only ours.
func TestPythonImaplibOnDovecot(t *testing.T) {
	py := e2e.LookTool(t, "python3", "python3")
	ref := dovecot.Start(t)
	c, err := e2e.DialRaw(ref.IMAPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(ref.User, ref.Password); err != nil {
		t.Fatal(err)
	}
	// bucketmail creates Archive (SPECIAL-USE) with every account; the
	// test Dovecot does not.
	if _, err := c.MustOK("CREATE Archive"); err != nil {
		t.Fatal(err)
	}
	runPythonScript(t, py, ref.IMAPAddr, ref.LMTPAddr, ref.User, ref.Password)
}

func runPythonScript(t *testing.T, py, imapAddr, lmtpAddr, user, password string) {
	t.Helper()
	cmd := exec.Command(py, "testdata/imaplib_lmtp.py", imapAddr, lmtpAddr, user, password)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("python script still running after 2 min:\n%s", out)
	}
	if err != nil {
		t.Fatalf("python3 testdata/imaplib_lmtp.py: %v\n%s", err, out)
	}
	if !strings.HasSuffix(string(out), "all checks passed\n") {
		t.Fatalf("script did not finish:\n%s", out)
	}
	t.Logf("%d checks passed", strings.Count(string(out), "\nok  ")+1)
}
