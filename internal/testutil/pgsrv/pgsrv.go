// Package pgsrv starts a real PostgreSQL server for tests that must stop
// and restart the server process (bus reconnect tests); for everything
// else use internal/testutil/pg. Debian postgresql (initdb and postgres
// from /usr/lib/postgresql/N/bin, or $PG_BIN); trust authentication; a
// free 127.0.0.1 port kept across restarts; data and socket in a temp
// dir. As root the server runs as user postgres (setpriv execs it, so the
// PID kept is the postmaster's).
//
// When PostgreSQL is missing, Start skips the test, or fails it when
// CI=true.
package pgsrv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/proc"
)

// Server is a PostgreSQL postmaster.
type Server struct {
	Port int

	bin, dir string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func binDir() string {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "postgres")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

func asPostgres(name string, args ...string) *exec.Cmd {
	if os.Geteuid() != 0 {
		return exec.Command(name, args...)
	}
	return exec.Command("setpriv", append([]string{"--reuid=postgres", "--regid=postgres", "--init-groups", name}, args...)...)
}

// Start initialises a cluster and starts the server; it stops at cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binDir()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("pgsrv: PostgreSQL not installed (apt-get install postgresql, or set PG_BIN)")
		}
		t.Skip("pgsrv: PostgreSQL not installed (apt-get install postgresql, or set PG_BIN)")
	}
	dir, err := os.MkdirTemp("", "bucketmail-pgsrv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgsrv: running as root needs a postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := asPostgres(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("pgsrv: initdb: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Port: l.Addr().(*net.TCPAddr).Port, bin: bin, dir: dir}
	l.Close()
	t.Cleanup(s.Stop)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	return s
}

// URL returns a postgres:// URL for database db as user postgres.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// Restart starts the server again on the same port and data after Stop
// (a no-op when it is running) and waits until it accepts connections.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	logPath := filepath.Join(s.dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := asPostgres(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.Port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("pgsrv: start: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("pgsrv: postgres exited:\n%s", out)
		default:
		}
		if exec.Command(filepath.Join(s.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-t", "1").Run() == nil {
			s.cmd, s.done = cmd, done
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-done
	return fmt.Errorf("pgsrv: not ready after 15s")
}

// Stop stops the server (SIGINT: fast shutdown, then SIGKILL after 10 s)
// and waits for it. The data stay for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	proc.Stop(s.cmd.Process, s.done, syscall.SIGINT, 10*time.Second) // SIGINT: fast shutdown
	s.cmd, s.done = nil, nil
}
