// Package e2e builds the real bucketmail binary and runs it as a separate
// process for end-to-end tests: `bucketmail serve` on free loopback ports
// with its own data dir, `bucketmail user add`, stop by SIGTERM, restart on
// the same data dir.
//
// The binary is built once per test process (go build into a temp dir),
// with -race when the tests run with -race and E2E_RACE=1. Call Main from
// TestMain so the build dir is removed at the end.
package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// RepoRoot returns the module root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	// file is <repo>/internal/testutil/e2e/e2e.go
	return filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(file))))
}

var (
	atExitMu sync.Mutex
	atExit   []func()
)

// AtExit registers f to run after all tests, in Main (last registered
// first): for fixtures shared by several tests.
func AtExit(f func()) {
	atExitMu.Lock()
	defer atExitMu.Unlock()
	atExit = append(atExit, f)
}

// Main runs the tests, then the AtExit functions, and removes the
// binary's build dir. Use it as TestMain:
// func TestMain(m *testing.M) { e2e.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	atExitMu.Lock()
	for i := len(atExit) - 1; i >= 0; i-- {
		atExit[i]()
	}
	atExitMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// Binary returns the path of a bucketmail binary built from this
// checkout, building it on first use (about 10-60 s with a cold cache).
//
// The binary is built without the race detector unless E2E_RACE=1: the
// end-to-end tests push the whole corpus through it several times, which
// under -race takes minutes, and the packages it is made of run their own
// tests with -race in-process.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := BinaryPath()
	if err != nil {
		t.Fatalf("e2e: build bucketmail: %v", err)
	}
	return bin
}

// BinaryPath is Binary returning the error.
func BinaryPath() (string, error) {
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "bucketmail-e2e-bin-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "bucketmail")
		args := []string{"build", "-o", buildBin}
		if raceEnabled && os.Getenv("E2E_RACE") == "1" {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/bucketmail")
		cmd := exec.Command("go", args...)
		cmd.Dir = RepoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	return buildBin, buildErr
}

// Server is a running (or stopped) `bucketmail serve` process.
type Server struct {
	Bin      string
	DataDir  string
	IMAPAddr string // 127.0.0.1:port, plain IMAP
	LMTPAddr string // 127.0.0.1:port
	// Args are extra flags for serve and for Run/RunErr (e.g.
	// "--userdb", "postgres://..."); see StartArgs.
	Args []string

	logPath string
	cwd     string // LaunchDefaults: working directory, no flags
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	waitErr error
	logFile *os.File
	starts  int
}

// Start starts `bucketmail serve` on a fresh data dir and free loopback
// ports and waits until both listeners answer. It is stopped (SIGTERM,
// exit status checked) on t.Cleanup if still running.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Launch(Binary(t), t.TempDir())
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	t.Cleanup(func() {
		if s.Running() {
			s.Stop(t)
		}
		if t.Failed() {
			t.Logf("bucketmail serve log (%s):\n%s", s.logPath, tail(s.Log(), 3000))
		}
	})
	return s
}

// StartArgs is Start with extra flags (Server.Args) for serve and for
// every Run/RunErr, e.g. StartArgs(t, "--userdb", "passwd-file:/path").
func StartArgs(t testing.TB, args ...string) *Server {
	t.Helper()
	s, err := LaunchArgs(Binary(t), t.TempDir(), args...)
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	t.Cleanup(func() {
		if s.Running() {
			s.Stop(t)
		}
		if t.Failed() {
			t.Logf("bucketmail serve log (%s):\n%s", s.logPath, tail(s.Log(), 3000))
		}
	})
	return s
}

// Launch starts `bucketmail serve` with its data in dir/data and its
// output in dir/serve.log, on free loopback ports, and waits until both
// listeners answer. The caller stops it (Stop or Shutdown).
func Launch(bin, dir string) (*Server, error) { return LaunchArgs(bin, dir) }

// LaunchArgs is Launch with extra flags (Server.Args).
func LaunchArgs(bin, dir string, args ...string) (*Server, error) {
	s := &Server{
		Bin:     bin,
		DataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "serve.log"),
		Args:    args,
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var p1, p2 int
		if p1, err = freePort(); err != nil {
			return nil, err
		}
		if p2, err = freePort(); err != nil {
			return nil, err
		}
		s.IMAPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p1))
		s.LMTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p2))
		if err = s.start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// LaunchDefaults runs `bucketmail serve` exactly as the README's first
// command does: no flags, in the working directory dir, so the data goes
// to dir/bucketmail-data and the listeners to the embedded defaults
// 127.0.0.1:1143 (IMAP) and 127.0.0.1:2424 (LMTP).
func LaunchDefaults(bin, dir string) (*Server, error) {
	s := &Server{
		Bin:      bin,
		DataDir:  filepath.Join(dir, "bucketmail-data"),
		IMAPAddr: "127.0.0.1:1143",
		LMTPAddr: "127.0.0.1:2424",
		logPath:  filepath.Join(dir, "serve.log"),
		cwd:      dir,
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// start runs serve with the current addresses and waits for the
// listeners.
func (s *Server) start() error {
	f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.starts++
	fmt.Fprintf(f, "=== e2e: start %d: serve --data-dir %s --imap-listen %s --lmtp-listen %s\n",
		s.starts, s.DataDir, s.IMAPAddr, s.LMTPAddr)
	cmd := exec.Command(s.Bin, append([]string{"serve", "--data-dir", s.DataDir,
		"--imap-listen", s.IMAPAddr, "--lmtp-listen", s.LMTPAddr}, s.Args...)...)
	if s.cwd != "" {
		cmd = exec.Command(s.Bin, "serve")
		cmd.Dir = s.cwd
	}
	cmd.Stdout, cmd.Stderr = f, f
	// The server dies with the test process, even when a test panics.
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	s.cmd, s.logFile = cmd, f
	s.done = make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for _, w := range []struct{ addr, greeting string }{{s.IMAPAddr, "* OK"}, {s.LMTPAddr, "220 "}} {
		for {
			err := greeting(w.addr, w.greeting)
			if err == nil {
				break
			}
			select {
			case <-s.done:
				f.Close()
				return fmt.Errorf("bucketmail serve exited before listening (%v):\n%s", s.waitErr, tail(s.Log(), 4000))
			default:
			}
			if time.Now().After(deadline) {
				s.kill()
				f.Close()
				return fmt.Errorf("bucketmail serve: %s not answering after 30s: %v\n%s", w.addr, err, tail(s.Log(), 4000))
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	// Someone else may have answered (a port taken between the probe and
	// the bind): the process must still be running.
	time.Sleep(50 * time.Millisecond)
	if !s.Running() {
		f.Close()
		return fmt.Errorf("bucketmail serve exited after start (%v):\n%s", s.waitErr, tail(s.Log(), 4000))
	}
	return nil
}

// Running reports whether the server process is running.
func (s *Server) Running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits up to 60 s for the process to exit. It
// fails the test unless the exit status is 0.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.Shutdown(); err != nil {
		t.Errorf("e2e: %v", err)
	}
}

// Shutdown is Stop returning the problem as an error.
func (s *Server) Shutdown() error {
	if !s.Running() {
		return fmt.Errorf("bucketmail serve: not running")
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		s.kill()
		return fmt.Errorf("bucketmail serve did not exit within 60s of SIGTERM")
	}
	s.logFile.Close()
	if s.waitErr != nil {
		return fmt.Errorf("bucketmail serve exit after SIGTERM: %v, want status 0\n%s", s.waitErr, tail(s.Log(), 4000))
	}
	return nil
}

// Restart stops the server (SIGTERM) and starts it again on the same
// data dir and the same addresses.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	var err error
	// The ports were just released; another process could grab one in
	// between, but on a test machine that is rare: retry briefly.
	for i := 0; i < 20; i++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("e2e: restart: %v", err)
}

func (s *Server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Log returns everything the server wrote to stdout and stderr so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// Run runs `bucketmail ARGS... --data-dir D` with stdin and returns its
// standard output; it fails the test on a non-zero exit.
func (s *Server) Run(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := s.RunErr(stdin, args...)
	if err != nil {
		t.Fatalf("e2e: bucketmail %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// RunErr is Run returning the error (an *exec.ExitError for a non-zero
// exit) and standard error instead of failing.
func (s *Server) RunErr(stdin string, args ...string) (stdout, stderr string, err error) {
	args = append(append(append([]string{}, args...), "--data-dir", s.DataDir), s.Args...)
	cmd := exec.Command(s.Bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// AddUser runs `bucketmail user add ADDR --password-stdin`.
func (s *Server) AddUser(t testing.TB, addr, password string) {
	t.Helper()
	s.Run(t, password+"\n", "user", "add", addr, "--password-stdin")
}

// ExitCode returns the exit code of err from RunErr, 0 for nil, -1 for
// other errors.
func ExitCode(err error) int {
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func greeting(addr, prefix string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, prefix) {
		return fmt.Errorf("greeting %q, want %q...", line, prefix)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// SkipOrFail skips the test, or fails it when CI=true (in CI every tool
// is installed by .ci/run, so a missing one is a failure).
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI=true: required)", args...)
	}
	t.Skipf(format, args...)
}

// LookTool returns the path of an external program, skipping the test
// when it is missing (failing under CI=true).
func LookTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, "%s not installed (apt-get install %s)", name, pkg)
	}
	return p
}
