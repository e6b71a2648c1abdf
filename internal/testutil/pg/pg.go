// Package pg starts a real PostgreSQL server for tests (Debian
// postgresql: initdb and postgres from /usr/lib/postgresql/N/bin, or
// $PG_BIN), with trust authentication, on a free 127.0.0.1 port, its data
// and socket in a fresh temp dir. As root the server runs as user
// postgres (setpriv), since PostgreSQL refuses to run as root.
//
// Start takes one to three seconds, so a package starts one server in
// TestMain (or behind a sync.Once) and gives each test its own database
// (CreateDB). When the programs are missing, Start returns ErrMissing;
// Skip turns that into a skipped test, or a failure when CI=true.
package pg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/proc"
)

// ErrMissing: PostgreSQL's server programs are not installed.
var ErrMissing = errors.New("pg: PostgreSQL server not installed (Debian postgresql; or set PG_BIN)")

// Server is a running PostgreSQL.
type Server struct {
	Port int
	dir  string
	bin  string
	cmd  *exec.Cmd
	done chan struct{}
	n    atomic.Int64
}

func binDir() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "postgres")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrMissing
}

// asPostgres runs cmd as user postgres when this process is root.
func asPostgres(name string, args ...string) *exec.Cmd {
	if os.Geteuid() != 0 {
		return exec.Command(name, args...)
	}
	return exec.Command("setpriv", append([]string{"--reuid=postgres", "--regid=postgres", "--init-groups", "--pdeathsig=TERM", name}, args...)...)
}

// Start starts a server. Call Stop when done.
func Start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bucketmail-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin, done: make(chan struct{})}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pg: running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres(filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg: initdb: %v\n%s", err, out)
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.Port = port
		s.done = make(chan struct{})
		logf, err := os.Create(filepath.Join(dir, "postgres.log"))
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.cmd = asPostgres(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", dir,
			"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
		s.cmd.Stdout, s.cmd.Stderr = logf, logf
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		if err := s.cmd.Start(); err != nil {
			logf.Close()
			os.RemoveAll(dir)
			return nil, err
		}
		go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); logf.Close(); close(done) }(s.cmd, s.done)
		if err := s.waitReady(15 * time.Second); err == nil {
			return s, nil
		} else if attempt >= 2 {
			s.Stop()
			return nil, err
		}
		s.kill()
	}
}

func (s *Server) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
			return fmt.Errorf("pg: postgres exited:\n%s", log)
		default:
		}
		out, err := exec.Command(filepath.Join(s.bin, "pg_isready"), "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", "postgres", "-t", "1").CombinedOutput()
		if err == nil {
			return nil
		}
		_ = out
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("pg: not ready after %v", d)
}

func (s *Server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		proc.Stop(s.cmd.Process, s.done, syscall.SIGINT, 10*time.Second) // SIGINT: fast shutdown
	}
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() {
	s.kill()
	os.RemoveAll(s.dir)
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL returns a postgres:// URL for database db as user postgres.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", s.Addr(), db)
}

// CreateDB creates a fresh database with a unique name starting with
// prefix and returns its name.
func (s *Server) CreateDB(ctx context.Context, prefix string) (string, error) {
	name := fmt.Sprintf("%s_%d", strings.ToLower(prefix), s.n.Add(1))
	out, err := exec.CommandContext(ctx, filepath.Join(s.bin, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", "postgres",
		"-v", "ON_ERROR_STOP=1", "-qc", `CREATE DATABASE "`+name+`"`, "postgres").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pg: create database %s: %v\n%s", name, err, out)
	}
	return name, nil
}

// Psql runs SQL in database db with psql and returns its output.
func (s *Server) Psql(ctx context.Context, db, sql string) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(s.bin, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", "postgres",
		"-v", "ON_ERROR_STOP=1", "-qAtc", sql, db).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pg: psql: %v\n%s", err, out)
	}
	return string(out), nil
}

// Skip handles a Start error in a test: ErrMissing skips (fails when
// CI=true); other errors fail.
func Skip(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrMissing) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	t.Fatal(err)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
