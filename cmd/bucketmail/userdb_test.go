package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/bucketmail/bucketmail/internal/testutil/dynalite"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
	"github.com/bucketmail/bucketmail/internal/testutil/mysql"
	"github.com/bucketmail/bucketmail/internal/testutil/pg"
	redissrv "github.com/bucketmail/bucketmail/internal/testutil/redis"
)

// End-to-end tests of the user database backends through the real
// binary: IMAP login and LMTP delivery, read-only backends refused by
// `bucketmail user`, and a backend that is down answering NO
// [UNAVAILABLE] / 451 4.3.0.

// doveadmPw runs `doveadm pw -s scheme -p pw` (skips without Dovecot,
// fails when CI=true).
func doveadmPw(t *testing.T, scheme, pw string) string {
	t.Helper()
	doveadm := e2e.LookTool(t, "doveadm", "dovecot-core")
	out, err := exec.Command(doveadm, "pw", "-s", scheme, "-p", pw).Output()
	if err != nil {
		t.Fatalf("doveadm pw -s %s: %v", scheme, err)
	}
	return strings.TrimSpace(string(out))
}

// launch starts serve with extra flags; stopped on cleanup.
func launch(t *testing.T, args ...string) *e2e.Server {
	t.Helper()
	s, err := e2e.LaunchArgs(binPath, t.TempDir(), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.Running() {
			s.Stop(t)
		}
		if t.Failed() {
			t.Logf("serve log:\n%s", s.Log())
		}
	})
	return s
}

// deliverAndRead delivers one message to rcpt over LMTP and checks that
// login with password sees it in INBOX (the first message there).
func deliverAndRead(t *testing.T, s *e2e.Server, rcpt, login, password string) {
	t.Helper()
	deliverAndReadN(t, s, rcpt, login, password, 1)
}

// deliverAndReadN is deliverAndRead when INBOX then holds n messages.
func deliverAndReadN(t *testing.T, s *e2e.Server, rcpt, login, password string, n int) {
	t.Helper()
	l, err := e2e.DialLMTP(s.LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	msg := []byte("From: a@example.com\r\nTo: " + rcpt + "\r\nSubject: userdb e2e\r\n\r\nhello " + rcpt + "\r\n")
	if err := l.Deliver1("a@example.com", rcpt, msg); err != nil {
		t.Fatalf("LMTP to %s: %v", rcpt, err)
	}
	c, err := e2e.DialRaw(s.IMAPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(login, password); err != nil {
		t.Fatalf("LOGIN %s: %v", login, err)
	}
	u, err := c.MustOK("SELECT INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("* %d EXISTS", n); !containsLine(u, want) {
		t.Fatalf("SELECT INBOX for %s: %q, want %s", login, u, want)
	}
}

func containsLine(lines [][]byte, want string) bool {
	for _, l := range lines {
		if strings.TrimSpace(string(l)) == want {
			return true
		}
	}
	return false
}

// loginFails checks that LOGIN gets a tagged NO starting with want.
func loginFails(t *testing.T, s *e2e.Server, user, pw, want string) {
	t.Helper()
	c, err := e2e.DialRaw(s.IMAPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, tagged, err := c.Cmd("LOGIN "+e2e.Quote(user)+" "+e2e.Quote(pw), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(tagged), want) {
		t.Fatalf("LOGIN %s = %q, want %q...", user, tagged, want)
	}
}

// rcptFails checks the reply to RCPT TO for rcpt.
func rcptFails(t *testing.T, s *e2e.Server, rcpt string, code int, enh smtp.EnhancedCode) {
	t.Helper()
	l, err := e2e.DialLMTP(s.LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = l.Deliver("a@example.com", []string{rcpt}, []byte("Subject: x\r\n\r\nx\r\n"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != code || se.EnhancedCode != enh {
		t.Fatalf("delivery to %s: %v, want %d %v", rcpt, err, code, enh)
	}
}

// TestUserDBPasswdFile: a passwd-file with doveadm-made hashes logs in and
// receives mail; user add says read-only; edits are seen at once; a file
// that disappears gives NO [UNAVAILABLE] and 451 4.3.0.
func TestUserDBPasswdFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	content := fmt.Sprintf("# Dovecot passwd-file\n"+
		"alice@example.org:%s:8:8::/var/mail/alice::userdb_quota_rule=*:bytes=10M\n"+
		"Bob@Example.org:%s:8:8::/var/mail/bob::\n"+
		"carol@example.org:%s:8:8::/var/mail/carol::nologin\n",
		doveadmPw(t, "SHA512-CRYPT", "alice pw"), doveadmPw(t, "BLF-CRYPT", "bob-pw"), doveadmPw(t, "ARGON2ID", "carol-pw"))
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	s := launch(t, "--userdb", "passwd-file:"+path)
	deliverAndRead(t, s, "alice+news@example.org", "alice@example.org", "alice pw")
	deliverAndRead(t, s, "BOB@example.org", "bob@example.org", "bob-pw")
	loginFails(t, s, "alice@example.org", "bob-pw", "NO [AUTHENTICATIONFAILED]")
	loginFails(t, s, "carol@example.org", "carol-pw", "NO [AUTHENTICATIONFAILED]")
	rcptFails(t, s, "nobody@example.org", 550, smtp.EnhancedCode{5, 1, 1})

	_, errOut, err := s.RunErr("pw\n", "user", "add", "dan@example.org", "--password-stdin")
	if e2e.ExitCode(err) != 1 || !strings.Contains(errOut, "backend is read-only") {
		t.Fatalf("user add on passwd-file: exit %d, stderr %q; want 1 and \"backend is read-only\"", e2e.ExitCode(err), errOut)
	}

	// An edit (new hash made by our own pw command) takes effect without a restart.
	out, errOut2, code := runBin(t, "", "pw", "-s", "SHA256-CRYPT", "-p", "dan pw")
	if code != 0 {
		t.Fatalf("pw: %d %s", code, errOut2)
	}
	if err := os.WriteFile(path, []byte(content+"dan@example.org:"+strings.TrimSpace(out)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deliverAndRead(t, s, "dan@example.org", "dan@example.org", "dan pw")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	loginFails(t, s, "alice@example.org", "alice pw", "NO [UNAVAILABLE]")
	rcptFails(t, s, "alice@example.org", 451, smtp.EnhancedCode{4, 3, 0})
}

// TestPwMatchesDoveadm: hashes printed by `bucketmail pw` verify with
// `doveadm pw -t`, and doveadm's with `bucketmail pw -t`.
func TestPwMatchesDoveadm(t *testing.T) {
	doveadm := e2e.LookTool(t, "doveadm", "dovecot-core")
	for _, scheme := range []string{"ARGON2ID", "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "PLAIN"} {
		out := mustRun(t, "pässword ✓\n", "pw", "-s", scheme)
		hash := strings.TrimSpace(out)
		if !strings.HasPrefix(hash, "{"+scheme+"}") {
			t.Errorf("pw -s %s = %q", scheme, hash)
			continue
		}
		if b, err := exec.Command(doveadm, "pw", "-t", hash, "-p", "pässword ✓").CombinedOutput(); err != nil || !strings.Contains(string(b), "(verified)") {
			t.Errorf("doveadm pw -t %s: %v %s", hash, err, b)
		}
		if _, _, code := runBin(t, "", "pw", "-t", hash, "-p", "password ✓"); code != 1 {
			t.Errorf("pw -t with a wrong password: exit %d, want 1", code)
		}
		d := doveadmPw(t, scheme, "pässword ✓")
		if got := mustRun(t, "", "pw", "-t", d, "-p", "pässword ✓"); got != d+" (verified)\n" {
			t.Errorf("pw -t %s = %q", d, got)
		}
	}
	if _, errOut, code := runBin(t, "", "pw", "-s", "NOPE", "-p", "x"); code != 2 || !strings.Contains(errOut, "can generate ARGON2ID, BLF-CRYPT") {
		t.Errorf("pw -s NOPE: exit %d, %q", code, errOut)
	}
}

// Shared database servers for this package's tests.
var (
	pgOnce sync.Once
	pgSrv  *pg.Server
	pgErr  error
	myOnce sync.Once
	mySrv  *mysql.Server
	myErr  error
)

// dbProxy forwards a port to a database; down closes it.
type dbProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newDBProxy(t *testing.T, target string) *dbProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dbProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(p.down)
	return p
}

func (p *dbProxy) down() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// TestUserDBSQL: on PostgreSQL and MariaDB, a PostfixAdmin mailbox table
// with doveadm {SHA512-CRYPT} and {BLF-CRYPT} hashes serves logins and
// deliveries through [userdb] queries (and is read-only); the default
// schema is managed with `bucketmail user`; a database that goes away
// gives NO [UNAVAILABLE] and 451 4.3.0.
func TestUserDBSQL(t *testing.T) {
	kinds := []struct {
		name  string
		table string
		setup func(t *testing.T) (dbURL func(addr string) string, addr string, run func(string))
	}{
		{"postgres", `CREATE TABLE mailbox (username varchar(255) NOT NULL PRIMARY KEY, password varchar(255) NOT NULL,
  name varchar(255) NOT NULL DEFAULT '', maildir varchar(255) NOT NULL, quota bigint NOT NULL DEFAULT 0,
  local_part varchar(255) NOT NULL, domain varchar(255) NOT NULL, created timestamptz DEFAULT now(),
  modified timestamptz DEFAULT now(), active boolean NOT NULL DEFAULT true);`,
			func(t *testing.T) (func(string) string, string, func(string)) {
				pgOnce.Do(func() {
					if pgSrv, pgErr = pg.Start(); pgErr == nil {
						atExit(pgSrv.Stop)
					}
				})
				if pgErr != nil {
					pg.Skip(t, pgErr)
				}
				name, err := pgSrv.CreateDB(t.Context(), "e2e")
				if err != nil {
					t.Fatal(err)
				}
				return func(addr string) string { return "postgres://postgres@" + addr + "/" + name + "?sslmode=disable" }, pgSrv.Addr(),
					func(sql string) {
						if _, err := pgSrv.Psql(t.Context(), name, sql); err != nil {
							t.Fatal(err)
						}
					}
			}},
		{"mysql", `CREATE TABLE mailbox (username varchar(255) NOT NULL, password varchar(255) NOT NULL,
  name varchar(255) NOT NULL DEFAULT '', maildir varchar(255) NOT NULL, quota bigint(20) NOT NULL DEFAULT 0,
  local_part varchar(255) NOT NULL, domain varchar(255) NOT NULL, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00', active tinyint(1) NOT NULL DEFAULT 1,
  PRIMARY KEY (username), KEY domain (domain)) DEFAULT CHARSET=utf8mb4;`,
			func(t *testing.T) (func(string) string, string, func(string)) {
				myOnce.Do(func() {
					if mySrv, myErr = mysql.Start(); myErr == nil {
						atExit(mySrv.Stop)
					}
				})
				if myErr != nil {
					mysql.Skip(t, myErr)
				}
				name, err := mySrv.CreateDB(t.Context(), "e2e")
				if err != nil {
					t.Fatal(err)
				}
				return func(addr string) string { return "mysql://root@" + addr + "/" + name }, mySrv.Addr(),
					func(sql string) {
						if _, err := mySrv.SQL(t.Context(), name, sql); err != nil {
							t.Fatal(err)
						}
					}
			}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			dbURL, dbAddr, run := k.setup(t)
			sha := doveadmPw(t, "SHA512-CRYPT", "alice pw")
			blf := doveadmPw(t, "BLF-CRYPT", "bob-pw")
			run(k.table + fmt.Sprintf(`
INSERT INTO mailbox (username, password, maildir, quota, local_part, domain, active) VALUES
 ('alice@example.org', '%s', 'example.org/alice/', 10485760, 'alice', 'example.org', '1'),
 ('bob@example.org', '%s', 'example.org/bob/', 0, 'bob', 'example.org', '1'),
 ('carol@example.org', '%s', 'example.org/carol/', 0, 'carol', 'example.org', '0');`, sha, blf, sha))

			p := newDBProxy(t, dbAddr)
			cfg := filepath.Join(t.TempDir(), "bucketmail.toml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`[userdb]
url = %q
password_query = "SELECT username AS user, password FROM mailbox WHERE username = '%%u' AND active = '1'"
user_query = "SELECT username AS user, quota, active FROM mailbox WHERE username = '%%u'"
`, dbURL(p.ln.Addr().String()))), 0o600); err != nil {
				t.Fatal(err)
			}
			s := launch(t, "--config", cfg)
			deliverAndRead(t, s, "alice+tag@example.org", "Alice@example.org", "alice pw")
			deliverAndRead(t, s, "bob@example.org", "bob@example.org", "bob-pw")
			loginFails(t, s, "bob@example.org", "alice pw", "NO [AUTHENTICATIONFAILED]")
			loginFails(t, s, "carol@example.org", "alice pw", "NO [AUTHENTICATIONFAILED]")
			rcptFails(t, s, "nobody@example.org", 550, smtp.EnhancedCode{5, 1, 1})
			_, errOut, err := s.RunErr("", "user", "list")
			if e2e.ExitCode(err) != 1 || !strings.Contains(errOut, "backend is read-only") {
				t.Fatalf("user list with custom queries: exit %d, %q", e2e.ExitCode(err), errOut)
			}

			// Default schema, managed by the CLI, on the same database.
			s2 := launch(t, "--userdb", dbURL(dbAddr))
			s2.AddUser(t, "Dan@Example.org", "dan pw")
			if got := s2.Run(t, "", "user", "list"); got != "dan@example.org\n" {
				t.Fatalf("user list = %q", got)
			}
			deliverAndRead(t, s2, "dan+x@example.org", "dan@example.org", "dan pw")
			s2.Run(t, "new pw\n", "user", "passwd", "dan@example.org", "--password-stdin")
			loginFails(t, s2, "dan@example.org", "dan pw", "NO [AUTHENTICATIONFAILED]")

			// The database goes away under the first server.
			p.down()
			loginFails(t, s, "alice@example.org", "alice pw", "NO [UNAVAILABLE]")
			rcptFails(t, s, "alice@example.org", 451, smtp.EnhancedCode{4, 3, 0})
		})
	}
}

var (
	atExitMu sync.Mutex
	atExitFn []func()
)

// atExit runs f after all tests (TestMain).
func atExit(f func()) {
	atExitMu.Lock()
	atExitFn = append(atExitFn, f)
	atExitMu.Unlock()
}

func runAtExit() {
	atExitMu.Lock()
	defer atExitMu.Unlock()
	for i := len(atExitFn) - 1; i >= 0; i-- {
		atExitFn[i]()
	}
}

// TestUserDBKeyValue: Redis and DynamoDB (dynalite) through the binary:
// user add (creating the DynamoDB table), list, LMTP in, IMAP login, and
// NO [UNAVAILABLE] / 451 4.3.0 once the server is stopped.
func TestUserDBKeyValue(t *testing.T) {
	kinds := []struct {
		name  string
		start func(t *testing.T) (url string, stop func())
	}{
		{"redis", func(t *testing.T) (string, func()) {
			r := redissrv.Start(t)
			return r.URL, r.Stop
		}},
		{"dynamodb", func(t *testing.T) (string, func()) {
			d := dynalite.Start(t)
			d.Setenv(t)
			return "dynamodb://bucketmail-e2e", d.Stop
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			url, stop := k.start(t)
			s := launch(t, "--userdb", url)
			s.AddUser(t, "Erin@Example.org", "erin pw")
			s.AddUser(t, "frank@example.org", "frank pw")
			if got := s.Run(t, "", "user", "list"); got != "erin@example.org\nfrank@example.org\n" {
				t.Fatalf("user list = %q", got)
			}
			deliverAndRead(t, s, "erin+tag@example.org", "ERIN@example.org", "erin pw")
			loginFails(t, s, "frank@example.org", "erin pw", "NO [AUTHENTICATIONFAILED]")
			rcptFails(t, s, "nobody@example.org", 550, smtp.EnhancedCode{5, 1, 1})
			stop()
			loginFails(t, s, "erin@example.org", "erin pw", "NO [UNAVAILABLE]")
			rcptFails(t, s, "erin@example.org", 451, smtp.EnhancedCode{4, 3, 0})
		})
	}
}

// TestAuthCache: with [auth] cache_max_entries set, a user who logged in
// (and an address delivered to) is still served from the cache after the
// user database stops; a user not in the cache gets NO [UNAVAILABLE].
func TestAuthCache(t *testing.T) {
	r := redissrv.Start(t)
	cfg := filepath.Join(t.TempDir(), "bucketmail.toml")
	if err := os.WriteFile(cfg, []byte("[auth]\ncache_max_entries = 100\ncache_ttl = \"1h\"\n"+
		// user add opens a consistency window for the address (reads
		// bypass the cache); keep it short so the logins below are cached.
		"[cluster]\nconsistency_window = \"1ms\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := launch(t, "--config", cfg, "--userdb", r.URL)
	s.AddUser(t, "gina@example.org", "gina pw")
	s.AddUser(t, "hal@example.org", "hal pw")
	deliverAndRead(t, s, "gina@example.org", "gina@example.org", "gina pw")
	r.Stop()
	deliverAndReadN(t, s, "gina@example.org", "gina@example.org", "gina pw", 2)
	loginFails(t, s, "hal@example.org", "hal pw", "NO [UNAVAILABLE]")
	rcptFails(t, s, "hal@example.org", 451, smtp.EnhancedCode{4, 3, 0})
}

// TestUserDBDownAtStart: serve starts with a SQL user database that does
// not answer and defers (NO [UNAVAILABLE], 451 4.3.0); the user command
// fails at once.
func TestUserDBDownAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, url := range []string{"postgres://u@" + addr + "/db?sslmode=disable", "mysql://u@" + addr + "/db"} {
		s := launch(t, "--userdb", url)
		loginFails(t, s, "alice@example.org", "pw", "NO [UNAVAILABLE]")
		rcptFails(t, s, "alice@example.org", 451, smtp.EnhancedCode{4, 3, 0})
		_, errOut, err := s.RunErr("", "user", "list")
		if e2e.ExitCode(err) != 1 || !strings.Contains(errOut, "backend unavailable") {
			t.Errorf("user list with %s down: exit %d, %q", url, e2e.ExitCode(err), errOut)
		}
	}
}

// TestAddressPolicyKeep: with auth.local_part_case = "keep" the CLI,
// LOGIN and LMTP all compare local parts as written (the domain stays
// case-insensitive); the default folds them.
func TestAddressPolicyKeep(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bucketmail.toml")
	if err := os.WriteFile(cfg, []byte("[auth]\nlocal_part_case = \"keep\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := launch(t, "--config", cfg)
	s.AddUser(t, "Ida@Example.org", "ida pw")
	if out := s.Run(t, "", "user", "list", "--config", cfg); out != "Ida@example.org\n" {
		t.Fatalf("user list = %q, want the local part as written, the domain folded", out)
	}
	deliverAndRead(t, s, "Ida@EXAMPLE.org", "Ida@example.ORG", "ida pw")
	loginFails(t, s, "ida@example.org", "ida pw", "NO [AUTHENTICATIONFAILED]")
	rcptFails(t, s, "ida@example.org", 550, smtp.EnhancedCode{5, 1, 1})

	d := launch(t)
	d.AddUser(t, "Jo@Example.org", "jo pw")
	if out := d.Run(t, "", "user", "list"); out != "jo@example.org\n" {
		t.Fatalf("user list (default policy) = %q, want jo@example.org", out)
	}
	deliverAndRead(t, d, "JO@example.org", "jO@Example.org", "jo pw")
}
