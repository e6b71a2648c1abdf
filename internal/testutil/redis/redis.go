// Package redis starts a real Redis server for tests: Debian's
// redis-server on a free 127.0.0.1 port, in-memory (no RDB, no AOF), its
// working directory a test temp dir.
//
// The binary is $REDIS_SERVER, else redis-server on $PATH (apt-get install
// redis-server). When it is missing, Start skips the test, or fails it when
// CI=true. Stop and Restart (same port, empty data) are for failure tests
// ("backend down").
package redis

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/proc"
)

// Server is a running redis-server.
type Server struct {
	Addr string // "127.0.0.1:PORT"
	URL  string // "redis://127.0.0.1:PORT/0"

	bin, dir string
	args     []string // extra server arguments
	port     int

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	output bytes.Buffer
}

// Binary returns the redis-server path, or "" when none is installed.
func Binary() string {
	if p := os.Getenv("REDIS_SERVER"); p != "" {
		return p
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return ""
	}
	return p
}

// Start starts a server for the test and stops it in t.Cleanup. args are
// extra redis-server arguments, e.g. "--requirepass", "secret".
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "redis-server not installed: apt-get install redis-server (or set $REDIS_SERVER)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	s := &Server{bin: bin, dir: dir, args: args}
	_, err := proc.OnFreePort(5, func(port int) error {
		s.port = port
		return s.start()
	})
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Restart starts a stopped server again on the same port, with no data
// (the server keeps nothing on disk).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatalf("redis: restart: %v", err)
	}
}

func (s *Server) start() error {
	port := s.port
	cmd := exec.Command(s.bin, append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", s.dir}, s.args...)...)
	s.output.Reset()
	cmd.Stdout = &s.output
	cmd.Stderr = &s.output
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = "redis://" + s.Addr + "/0"
	s.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start: %s", port, strings.TrimSpace(s.output.String()))
		default:
		}
		if ping(s.Addr) { // -NOAUTH also proves it listens
			return nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("redis-server on port %d did not answer PING within 10s", port)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 7)
	n, _ := c.Read(buf)
	return string(buf[:n]) == "+PONG\r\n" || strings.HasPrefix(string(buf[:n]), "-NOAUTH")
}

// Stop kills the server (by PID) and waits for it to exit. Safe to call
// twice.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
	s.mu.Lock()
	if s.cmd == cmd {
		s.cmd = nil
	}
	s.mu.Unlock()
}
