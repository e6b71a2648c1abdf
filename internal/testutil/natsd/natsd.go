// Package natsd starts a real NATS server for tests: Debian's nats-server
// (or $NATS_SERVER) on a free 127.0.0.1 port, no persistence.
//
// When the binary is missing, Start skips the test, or fails it when
// CI=true. Stop and Start again (same port) are for "bus down" tests.
package natsd

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/proc"
)

// Server is a nats-server process.
type Server struct {
	Port int
	URL  string // nats://127.0.0.1:PORT

	bin string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}

	outMu sync.Mutex
	out   bytes.Buffer
}

// Binary returns the nats-server path, or "" when none is installed.
func Binary() string {
	if b := os.Getenv("NATS_SERVER"); b != "" {
		return b
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nats-server"); err == nil {
		return "/usr/sbin/nats-server"
	}
	return ""
}

// Start starts a server for the test; it stops at cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("natsd: nats-server not installed (apt-get install nats-server)")
		}
		t.Skip("natsd: nats-server not installed (apt-get install nats-server)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{Port: port, URL: fmt.Sprintf("nats://127.0.0.1:%d", port), bin: bin}
	t.Cleanup(s.Stop)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Restart starts the server again on the same port after Stop (a no-op
// when it is running).
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after Stop
		if err = s.startLocked(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func (s *Server) startLocked() error {
	s.outMu.Lock()
	s.out.Reset()
	s.outMu.Unlock()
	cmd := exec.Command(s.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(s.Port))
	cmd.Stdout, cmd.Stderr = &lockedWriter{s}, &lockedWriter{s}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("natsd: start: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("natsd: nats-server exited: %s", s.outputUnlocked())
		default:
		}
		if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), 200*time.Millisecond); err == nil {
			c.Close()
			s.cmd, s.done = cmd, done
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-done
	return fmt.Errorf("natsd: not listening after 5s: %s", s.outputUnlocked())
}

// Stop stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	proc.Stop(s.cmd.Process, s.done, syscall.SIGTERM, 5*time.Second)
	s.cmd, s.done = nil, nil
}

// lockedWriter collects output; nats-server writes from one process but
// exec copies stdout and stderr in two goroutines.
type lockedWriter struct{ s *Server }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.outMu.Lock()
	defer w.s.outMu.Unlock()
	return w.s.out.Write(p)
}

func (s *Server) outputUnlocked() string {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	return s.out.String()
}
