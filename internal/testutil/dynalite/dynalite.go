// Package dynalite starts a real DynamoDB API server for tests: dynalite
// (npm dynalite@4.0.0, MIT, run by the machine's Node.js), in memory, on a
// free 127.0.0.1 port.
//
// The program is $DYNALITE, else .tools/node_modules/.bin/dynalite in the
// repository root (npm install --prefix .tools dynalite@4.0.0). When it
// is missing, Start skips the test, or fails it when CI=true. Stop and
// Restart (same port, no tables) are for failure tests ("backend down").
//
// Clients reach it with AWS_ENDPOINT_URL_DYNAMODB=s.Endpoint and any
// non-empty credentials and region; Env returns those variables.
package dynalite

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/proc"
)

// Server is a running dynalite.
type Server struct {
	Endpoint string // "http://127.0.0.1:PORT"

	bin  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	output bytes.Buffer
}

// Binary returns the dynalite path, or "" when none is installed.
func Binary() string {
	if p := os.Getenv("DYNALITE"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for { // walk up to the module root
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, ".tools", "node_modules", ".bin", "dynalite")
			if _, err := os.Stat(p); err == nil {
				return p
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Start starts a server for the test and stops it in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "dynalite not installed: npm install --prefix .tools dynalite@4.0.0 (or set $DYNALITE)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	s := &Server{bin: bin}
	_, err := proc.OnFreePort(5, func(port int) error {
		s.port = port
		return s.start()
	})
	if err != nil {
		t.Fatalf("dynalite: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Env returns the environment a client needs: endpoint, region and dummy
// credentials, as "KEY=value" strings (for t.Setenv or exec.Cmd.Env).
func (s *Server) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL_DYNAMODB=" + s.Endpoint,
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=bucketmail-test",
		"AWS_SECRET_ACCESS_KEY=bucketmail-test-secret",
	}
}

// Setenv sets Env's variables for the test (t.Setenv: not with t.Parallel).
func (s *Server) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Restart starts a stopped server again on the same port, empty (it is
// in memory).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatalf("dynalite: restart: %v", err)
	}
}

func (s *Server) start() error {
	bin, port := s.bin, s.port
	// Tables become ACTIVE at once (dynalite's default keeps them
	// CREATING for 500 ms).
	cmd := exec.Command(bin, "--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0")
	s.output.Reset()
	cmd.Stdout = &s.output
	cmd.Stderr = &s.output
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
	s.mu.Unlock()
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("dynalite on port %d exited at start: %s", port, strings.TrimSpace(s.output.String()))
		default:
		}
		// Any HTTP answer (400 for a request without a target) means it listens.
		if resp, err := client.Get(s.Endpoint); err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("dynalite on port %d did not answer within 20s", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
