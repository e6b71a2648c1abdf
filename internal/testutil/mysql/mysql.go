// Package mysql starts a real MariaDB server for tests (Debian
// mariadb-server: mariadb-install-db and mariadbd, or $MARIADB_BIN for the
// directory holding both) on a free 127.0.0.1 port, with its data dir and
// socket in a fresh temp dir and --skip-grant-tables (any user, no
// password). As root the server runs with --user=root.
//
// Start takes a few seconds, so a package starts one server in TestMain
// (or behind a sync.Once) and gives each test its own database
// (CreateDB). When the programs are missing, Start returns ErrMissing;
// Skip turns that into a skipped test, or a failure when CI=true.
package mysql

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/proc"
)

// ErrMissing: MariaDB's server programs are not installed.
var ErrMissing = errors.New("mysql: MariaDB server not installed (Debian mariadb-server; or set MARIADB_BIN)")

// Server is a running MariaDB.
type Server struct {
	Port   int
	dir    string
	client string // mariadb client
	cmd    *exec.Cmd
	done   chan struct{}
	n      atomic.Int64
}

func find(name string) (string, error) {
	if d := os.Getenv("MARIADB_BIN"); d != "" {
		return filepath.Join(d, name), nil
	}
	for _, p := range []string{name, "/usr/sbin/" + name, "/usr/bin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", ErrMissing
}

// Start starts a server. Call Stop when done.
func Start() (*Server, error) {
	installDB, err := find("mariadb-install-db")
	if err != nil {
		return nil, err
	}
	mariadbd, err := find("mariadbd")
	if err != nil {
		return nil, err
	}
	client, err := find("mariadb")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bucketmail-mariadb-")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	userArg := []string{}
	if os.Geteuid() == 0 {
		userArg = []string{"--user=root"}
	}
	args := append([]string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal", "--skip-test-db"}, userArg...)
	if out, err := exec.Command(installDB, args...).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mysql: mariadb-install-db: %v\n%s", err, out)
	}
	s := &Server{dir: dir, client: client}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.Port = port
		s.done = make(chan struct{})
		logf, err := os.Create(filepath.Join(dir, "mariadbd.log"))
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		args := append([]string{"--no-defaults", "--datadir=" + data, "--socket=" + filepath.Join(dir, "sock"),
			"--port=" + strconv.Itoa(port), "--bind-address=127.0.0.1", "--skip-grant-tables", "--skip-name-resolve",
			"--pid-file=" + filepath.Join(dir, "pid"), "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=16M",
			"--skip-log-bin", "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci"}, userArg...)
		s.cmd = exec.Command(mariadbd, args...)
		s.cmd.Stdout, s.cmd.Stderr = logf, logf
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		if err := s.cmd.Start(); err != nil {
			logf.Close()
			os.RemoveAll(dir)
			return nil, err
		}
		go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); logf.Close(); close(done) }(s.cmd, s.done)
		if err := s.waitReady(30 * time.Second); err == nil {
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
			log, _ := os.ReadFile(filepath.Join(s.dir, "mariadbd.log"))
			return fmt.Errorf("mysql: mariadbd exited:\n%s", log)
		default:
		}
		if _, err := s.SQL(context.Background(), "", "SELECT 1"); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("mysql: not ready after %v", d)
}

func (s *Server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		proc.Stop(s.cmd.Process, s.done, syscall.SIGTERM, 15*time.Second)
	}
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() {
	s.kill()
	os.RemoveAll(s.dir)
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL returns a mysql:// URL (bucketmail's --userdb form) for database db
// as user root.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("mysql://root@%s/%s", s.Addr(), db)
}

// CreateDB creates a fresh utf8mb4 database with a unique name starting
// with prefix and returns its name.
func (s *Server) CreateDB(ctx context.Context, prefix string) (string, error) {
	name := fmt.Sprintf("%s_%d", prefix, s.n.Add(1))
	if _, err := s.SQL(ctx, "", "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
		return "", err
	}
	return name, nil
}

// SQL runs statements in database db (may be "") with the mariadb client
// over TCP and returns its tab-separated output.
func (s *Server) SQL(ctx context.Context, db, sql string) (string, error) {
	args := []string{"--no-defaults", "-h", "127.0.0.1", "-P", strconv.Itoa(s.Port), "-u", "root", "-N", "-B", "-e", sql}
	if db != "" {
		args = append(args, db)
	}
	out, err := exec.CommandContext(ctx, s.client, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("mysql: %v\n%s", err, out)
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
