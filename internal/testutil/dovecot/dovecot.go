// Package dovecot starts Debian's Dovecot (dovecot-imapd, dovecot-lmtpd) on
// loopback as a reference IMAP server for differential tests.
//
// Each Instance has its own throwaway configuration: base_dir, state_dir,
// log file and instance_name in temp dirs, a passwd-file passdb with one
// user, a static userdb running as the system user "mail", and a Maildir
// per user under t.TempDir(). Nothing touches a system-wide service. The
// master process is stopped with `dovecot -c FILE stop` on t.Cleanup.
//
// Start skips the test when Dovecot is not installed or the test does not
// run as root (Dovecot must switch to the mail user), and fails it instead
// when the environment variable CI is "true".
package dovecot

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Instance is a running Dovecot.
type Instance struct {
	IMAPAddr string // host:port of the plaintext IMAP listener (no TLS)
	LMTPAddr string // host:port of the LMTP listener
	User     string // login name and LMTP recipient address
	Password string // plaintext password for LOGIN / AUTHENTICATE PLAIN

	dir     string // t.TempDir(): mail, state, log, config
	runDir  string // base_dir (kept short: unix socket paths are limited to 108 bytes)
	conf    string
	logPath string
}

// Binary returns the path of the dovecot binary, or "" when it is not
// installed (it lives in /usr/sbin, which is not always on PATH).
func Binary() string {
	if p, err := exec.LookPath("dovecot"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/dovecot"); err == nil {
		return "/usr/sbin/dovecot"
	}
	return ""
}

// skipOrFail skips the test, or fails it when CI=true: in CI every tool
// the tests need is installed by .ci/run.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI=true: required)", args...)
	}
	t.Skipf(format, args...)
}

// Start starts a Dovecot instance and registers its shutdown with
// t.Cleanup. It takes about half a second.
func Start(t testing.TB) *Instance {
	t.Helper()
	bin := Binary()
	if bin == "" {
		skipOrFail(t, "dovecot: not installed (apt-get install dovecot-imapd dovecot-lmtpd)")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "dovecot: the reference server needs root to run as user mail")
	}
	mailUser, err := user.Lookup("mail")
	if err != nil {
		skipOrFail(t, "dovecot: no system user mail: %v", err)
	}
	uid, _ := strconv.Atoi(mailUser.Uid)
	gid, _ := strconv.Atoi(mailUser.Gid)

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		in, err := start(t, bin, uid, gid)
		if err == nil {
			return in
		}
		lastErr = err // most likely a port taken between probe and bind
	}
	t.Fatalf("dovecot: start: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string, uid, gid int) (*Instance, error) {
	t.Helper()
	dir := t.TempDir()
	// The mail user must be able to reach its Maildir: t.TempDir() and its
	// parent are created 0700.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, err
		}
	}
	runDir, err := os.MkdirTemp("", "bmdc")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	if err := os.Chmod(runDir, 0o755); err != nil {
		return nil, err
	}
	in := &Instance{
		User:     "ref@example.org",
		Password: "ref-password",
		dir:      dir,
		runDir:   runDir,
		conf:     filepath.Join(dir, "dovecot.conf"),
		logPath:  filepath.Join(dir, "dovecot.log"),
	}
	mail := filepath.Join(dir, "mail")
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(mail, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(mail, uid, gid); err != nil {
		return nil, err
	}
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte(in.User+":{PLAIN}"+in.Password+"::::::\n"), 0o644); err != nil {
		return nil, err
	}
	imapPort, err := freePort()
	if err != nil {
		return nil, err
	}
	lmtpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	in.IMAPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(imapPort))
	in.LMTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(lmtpPort))
	conf := fmt.Sprintf(`# throwaway config written by internal/testutil/dovecot
base_dir = %[1]s
state_dir = %[2]s/state
log_path = %[3]s
instance_name = bucketmail-test-%[4]d
listen = 127.0.0.1
protocols = imap lmtp
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = %[5]d
last_valid_uid = %[5]d
mail_location = maildir:%[6]s/%%u/Maildir
# messages arrive with CRLF line ends; keep them byte for byte
mail_save_crlf = yes
# a throwaway reference server: no fsync (tests wait on it otherwise)
mail_fsync = never
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[7]s
}
userdb {
  driver = static
  args = uid=%[5]d gid=%[8]d home=%[6]s/%%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[9]d
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[10]d
  }
}
protocol lmtp {
  auth_username_format = %%u
}
`, runDir, dir, in.logPath, lmtpPort, uid, mail, passwd, gid, imapPort, lmtpPort)
	if err := os.WriteFile(in.conf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	// The master daemonizes and its children keep the standard streams:
	// capture them in a file, not a pipe (a pipe would never reach EOF).
	if err := run(filepath.Join(dir, "start.out"), bin, "-c", in.conf); err != nil {
		return nil, fmt.Errorf("%v%s", err, in.logTail())
	}
	t.Cleanup(func() { in.stop(t, bin) })
	if err := waitGreeting(in.IMAPAddr, "* OK", 10*time.Second); err != nil {
		return nil, fmt.Errorf("imap %s: %v%s", in.IMAPAddr, err, in.logTail())
	}
	if err := waitGreeting(in.LMTPAddr, "220 ", 10*time.Second); err != nil {
		return nil, fmt.Errorf("lmtp %s: %v%s", in.LMTPAddr, err, in.logTail())
	}
	return in, nil
}

// Maildir returns the Maildir of the instance's user (it exists after the
// first login or delivery).
func (in *Instance) Maildir() string { return filepath.Join(in.dir, "mail", in.User, "Maildir") }

// Log returns the content of Dovecot's log file.
func (in *Instance) Log() string {
	b, _ := os.ReadFile(in.logPath)
	return string(b)
}

func (in *Instance) logTail() string {
	l := in.Log()
	if len(l) > 4000 {
		l = l[len(l)-4000:]
	}
	if l == "" {
		return ""
	}
	return "\ndovecot log:\n" + l
}

func (in *Instance) stop(t testing.TB, bin string) {
	pid := 0
	if b, err := os.ReadFile(filepath.Join(in.runDir, "master.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if err := run(filepath.Join(in.dir, "stop.out"), bin, "-c", in.conf, "stop"); err != nil {
		t.Errorf("dovecot: stop: %v", err)
	}
	if pid > 0 {
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				t.Errorf("dovecot: master %d still running 10s after stop; killing it", pid)
				syscall.Kill(pid, syscall.SIGKILL)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if t.Failed() {
		t.Logf("dovecot log (%s):%s", in.logPath, in.logTail())
	}
}

// run runs a command with its output going to the file out.
func run(out string, name string, args ...string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out)
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, b)
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitGreeting dials addr until the server sends a line starting with
// prefix.
func waitGreeting(addr, prefix string, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && strings.HasPrefix(line, prefix) {
				return nil
			}
			last = fmt.Errorf("greeting %q: %v", line, err)
		} else {
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

// NULToHigh returns b with every NUL byte replaced by 0x80: Dovecot serves
// NUL this way in BODY[] and RFC822 (RFC 3501 §4.3 forbids NUL in a
// literal; BINARY is the only way to get it).
func NULToHigh(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte{0}, []byte{0x80})
}
