package sqldb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/bucketmail/bucketmail/internal/testutil/mysql"
	"github.com/bucketmail/bucketmail/internal/testutil/pg"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
	"github.com/bucketmail/bucketmail/internal/userdb/userdbtest"
)

var ctx = context.Background()

// One server of each kind per test binary, started on first use.
var (
	pgOnce   sync.Once
	pgSrv    *pg.Server
	pgErr    error
	myOnce   sync.Once
	mySrv    *mysql.Server
	myErr    error
	stopOnce []func()
	stopMu   sync.Mutex
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopMu.Lock()
	for _, f := range stopOnce {
		f()
	}
	stopMu.Unlock()
	os.Exit(code)
}

func atExit(f func()) {
	stopMu.Lock()
	stopOnce = append(stopOnce, f)
	stopMu.Unlock()
}

func pgServer(t *testing.T) *pg.Server {
	t.Helper()
	pgOnce.Do(func() {
		pgSrv, pgErr = pg.Start()
		if pgErr == nil {
			atExit(pgSrv.Stop)
		}
	})
	if pgErr != nil {
		pg.Skip(t, pgErr)
	}
	return pgSrv
}

func myServer(t *testing.T) *mysql.Server {
	t.Helper()
	myOnce.Do(func() {
		mySrv, myErr = mysql.Start()
		if myErr == nil {
			atExit(mySrv.Stop)
		}
	})
	if myErr != nil {
		mysql.Skip(t, myErr)
	}
	return mySrv
}

// proxy forwards a loopback port to the database server; Down closes it
// and every connection through it, so the server looks gone to the
// backend (connection refused).
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	down  bool
}

func newProxy(t *testing.T, target string) *proxy { return newProxyAt(t, "127.0.0.1:0", target) }

func newProxyAt(t *testing.T, listen, target string) *proxy {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
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
			if p.down {
				p.mu.Unlock()
				c.Close()
				s.Close()
				return
			}
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(p.Down)
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

// backend is a DB with a Down switch for the conformance suite.
type backend struct {
	*DB
	p *proxy
}

func (b backend) Down(t *testing.T) { b.p.Down() }

// readOnly hides the Manager methods (custom queries).
type readOnly struct {
	userdb.PassDB
	userdb.UserDB
	p *proxy
}

func (b readOnly) Down(t *testing.T) { b.p.Down() }

func cheapHash(pw string) (string, error) { return password.HashScheme("SHA256-CRYPT", pw) }

// kind abstracts the two servers for the tests.
type kind struct {
	name    string
	dialect Dialect
	// newDB creates a fresh database and returns a URL to it through a
	// proxy, the proxy, and a function running SQL in it.
	newDB func(t *testing.T) (string, *proxy, func(sql string) string)
}

var kinds = []kind{
	{"postgres", Postgres, func(t *testing.T) (string, *proxy, func(string) string) {
		s := pgServer(t)
		name, err := s.CreateDB(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		p := newProxy(t, s.Addr())
		run := func(sql string) string {
			t.Helper()
			out, err := s.Psql(ctx, name, sql)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.Addr(), name), p, run
	}},
	{"mysql", MySQL, func(t *testing.T) (string, *proxy, func(string) string) {
		s := myServer(t)
		name, err := s.CreateDB(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		p := newProxy(t, s.Addr())
		run := func(sql string) string {
			t.Helper()
			out, err := s.SQL(ctx, name, sql)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		return fmt.Sprintf("mysql://root@%s/%s", p.Addr(), name), p, run
	}},
}

func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// TestConformance: the default schema, written through the Manager.
func TestConformance(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			userdbtest.Run(t, func(t *testing.T, seed []userdbtest.Seed) userdbtest.Backend {
				url, p, run := k.newDB(t)
				d, err := OpenWith(ctx, url, Options{Hasher: cheapHash}, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { d.Close() })
				for _, s := range seed {
					if err := d.AddUser(ctx, s.Address, s.Password); err != nil {
						t.Fatal(err)
					}
					if s.QuotaBytes != 0 || s.Disabled {
						run(fmt.Sprintf("UPDATE bucketmail_users SET quota_bytes = %d, disabled = %v WHERE address = %s",
							s.QuotaBytes, s.Disabled, sqlQuote(userdb.Normalize(s.Address))))
					}
				}
				return backend{d, p}
			})
		})
	}
}

// TestPolicies: the default schema under each address policy (issue 5
// item 4); MySQL's utf8mb4_bin column keeps Alice@ and alice@ apart.
func TestPolicies(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			userdbtest.RunPolicies(t, func(t *testing.T, p userdb.AddressPolicy, seed []userdbtest.Seed) userdbtest.Backend {
				url, _, _ := k.newDB(t)
				d, err := OpenWith(ctx, url, Options{Hasher: cheapHash, Policy: p}, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { d.Close() })
				for _, s := range seed {
					if err := d.AddUser(ctx, s.Address, s.Password); err != nil {
						t.Fatal(err)
					}
				}
				return d
			})
		})
	}
}

// doveadmHashes hashes each seed's password once with doveadm pw,
// alternating SHA512-CRYPT and BLF-CRYPT.
var (
	hashOnce sync.Once
	hashes   map[string]string
	hashErr  error
)

func doveadmHash(t *testing.T, scheme, pw string) string {
	t.Helper()
	doveadm, err := exec.LookPath("doveadm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("doveadm not installed (Debian dovecot-core)")
		}
		t.Skip("doveadm not installed (Debian dovecot-core)")
	}
	out, err := exec.Command(doveadm, "pw", "-s", scheme, "-p", pw).Output()
	if err != nil {
		t.Fatalf("doveadm pw -s %s: %v", scheme, err)
	}
	return strings.TrimSpace(string(out))
}

func seedHashes(t *testing.T) map[string]string {
	hashOnce.Do(func() {
		hashes = map[string]string{}
		for i, s := range userdbtest.Seeds {
			scheme := "SHA512-CRYPT"
			if i%2 == 1 {
				scheme = "BLF-CRYPT"
			}
			hashes[s.Address] = doveadmHash(t, scheme, s.Password)
		}
	})
	return hashes
}

// PostfixAdmin's mailbox table (the columns Dovecot's queries use; types
// as in PostfixAdmin's MySQL and PostgreSQL schemas).
const (
	postfixAdminMySQL = `CREATE TABLE mailbox (
  username varchar(255) NOT NULL, password varchar(255) NOT NULL, name varchar(255) NOT NULL DEFAULT '',
  maildir varchar(255) NOT NULL, quota bigint(20) NOT NULL DEFAULT 0, local_part varchar(255) NOT NULL,
  domain varchar(255) NOT NULL, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00', active tinyint(1) NOT NULL DEFAULT 1,
  PRIMARY KEY (username), KEY domain (domain)) DEFAULT CHARSET=utf8mb4`
	postfixAdminPG = `CREATE TABLE mailbox (
  username varchar(255) NOT NULL PRIMARY KEY, password varchar(255) NOT NULL, name varchar(255) NOT NULL DEFAULT '',
  maildir varchar(255) NOT NULL, quota bigint NOT NULL DEFAULT 0, local_part varchar(255) NOT NULL,
  domain varchar(255) NOT NULL, created timestamp with time zone DEFAULT now(),
  modified timestamp with time zone DEFAULT now(), active boolean NOT NULL DEFAULT true)`
)

// PostfixAdminOptions are the queries for PostfixAdmin's mailbox table
// (also in docs).
var PostfixAdminOptions = Options{
	PasswordQuery: "SELECT username AS user, password FROM mailbox WHERE username = '%u' AND active = '1'",
	UserQuery:     "SELECT username AS user, quota, active, maildir FROM mailbox WHERE username = '%u'",
}

// TestPostfixAdmin: the conformance suite on a PostfixAdmin mailbox
// table with doveadm-made {SHA512-CRYPT} and {BLF-CRYPT} hashes.
func TestPostfixAdmin(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			userdbtest.Run(t, func(t *testing.T, seed []userdbtest.Seed) userdbtest.Backend {
				h := seedHashes(t)
				url, p, run := k.newDB(t)
				var b strings.Builder
				if k.dialect == MySQL {
					b.WriteString(postfixAdminMySQL + ";\n")
				} else {
					b.WriteString(postfixAdminPG + ";\n")
				}
				for _, s := range seed {
					addr := userdb.Normalize(s.Address)
					local, domain, _ := strings.Cut(addr, "@")
					active := "1"
					if s.Disabled {
						active = "0"
					}
					fmt.Fprintf(&b, "INSERT INTO mailbox (username, password, maildir, quota, local_part, domain, active) VALUES (%s, %s, %s, %d, %s, %s, '%s');\n",
						sqlQuote(addr), sqlQuote(h[s.Address]), sqlQuote(domain+"/"+local+"/"), s.QuotaBytes, sqlQuote(local), sqlQuote(domain), active)
				}
				run(b.String())
				d, err := OpenWith(ctx, url, PostfixAdminOptions, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { d.Close() })
				if err := d.AddUser(ctx, "x@example.org", "pw"); !errors.Is(err, userdb.ErrReadOnly) {
					t.Fatalf("AddUser with custom queries = %v, want ErrReadOnly", err)
				}
				return readOnly{d, d, p}
			})
		})
	}
}

func TestParseQuery(t *testing.T) {
	tests := []struct {
		in      string
		pg, my  string
		args    []param
		wantErr bool
	}{
		{"SELECT password FROM t WHERE u = '%u'", "SELECT password FROM t WHERE u = $1", "SELECT password FROM t WHERE u = ?", []param{pUser}, false},
		{"SELECT a FROM t WHERE l = '%n' AND d = '%d'", "SELECT a FROM t WHERE l = $1 AND d = $2", "SELECT a FROM t WHERE l = ? AND d = ?", []param{pLocal, pDomain}, false},
		{"SELECT a FROM t WHERE u = %Lu", "SELECT a FROM t WHERE u = $1", "SELECT a FROM t WHERE u = ?", []param{pUser}, false},
		{"SELECT a FROM t WHERE u = :user AND d=:domain AND l = :local", "SELECT a FROM t WHERE u = $1 AND d=$2 AND l = $3", "SELECT a FROM t WHERE u = ? AND d=? AND l = ?", []param{pUser, pDomain, pLocal}, false},
		{"SELECT a::text FROM t WHERE x = ':user' AND y = '%x''s' AND u = :user", "SELECT a::text FROM t WHERE x = ':user' AND y = '%x''s' AND u = $1", "SELECT a::text FROM t WHERE x = ':user' AND y = '%x''s' AND u = ?", []param{pUser}, false},
		{"SELECT a FROM t WHERE u = :username", "SELECT a FROM t WHERE u = :username", "SELECT a FROM t WHERE u = :username", nil, false},
		{"SELECT a FROM t WHERE u = '%u", "", "", nil, true},
		{"SELECT a FROM t WHERE u = %x", "", "", nil, true},
	}
	for _, tc := range tests {
		for _, d := range []Dialect{Postgres, MySQL} {
			q, err := parseQuery(tc.in, d)
			if tc.wantErr {
				if err == nil {
					t.Errorf("parseQuery(%q) succeeded", tc.in)
				}
				continue
			}
			want := tc.pg
			if d == MySQL {
				want = tc.my
			}
			if err != nil || q.sql != want || fmt.Sprint(q.args) != fmt.Sprint(tc.args) {
				t.Errorf("parseQuery(%q, %d) = %q %v, %v; want %q %v", tc.in, d, q.sql, q.args, err, want, tc.args)
			}
		}
	}
	q, _ := parseQuery("x '%u' '%n' '%d'", MySQL)
	if got := fmt.Sprint(q.values("a.b@example.org")); got != "[a.b@example.org a.b example.org]" {
		t.Errorf("values = %s", got)
	}
	// %L forms lower-case (they matter with local_part_case = keep).
	q, _ = parseQuery("x %Lu '%Ln' %n %Ld :user", Postgres)
	if got := fmt.Sprint(q.values("Al.Ice@example.org")); got != "[al.ice@example.org al.ice Al.Ice example.org Al.Ice@example.org]" {
		t.Errorf("values with %%L = %s", got)
	}
}

func TestMySQLConfig(t *testing.T) {
	tests := []struct{ in, net, addr, user, pw, db string }{
		{"mysql://root@127.0.0.1:3307/mail", "tcp", "127.0.0.1:3307", "root", "", "mail"},
		{"mysql://u:p%40ss@db.example/mail", "tcp", "db.example:3306", "u", "p@ss", "mail"},
		{"mysql://u@/mail?socket=/run/mysqld/mysqld.sock", "unix", "/run/mysqld/mysqld.sock", "u", "", "mail"},
		{"mysql://u@[::1]/mail", "tcp", "[::1]:3306", "u", "", "mail"},
	}
	for _, tc := range tests {
		c, err := mysqlConfig(tc.in)
		if err != nil || c.Net != tc.net || c.Addr != tc.addr || c.User != tc.user || c.Passwd != tc.pw || c.DBName != tc.db || !c.ClientFoundRows {
			t.Errorf("mysqlConfig(%q) = %+v, %v", tc.in, c, err)
		}
	}
}

// TestDownAtOpen: an unreachable server fails Open with ErrUnavailable.
func TestDownAtOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, url := range []string{"postgres://u@" + addr + "/db?sslmode=disable", "mysql://u@" + addr + "/db"} {
		if _, err := Open(ctx, url, nil); !errors.Is(err, userdb.ErrUnavailable) {
			t.Errorf("Open(%s) = %v, want ErrUnavailable", url, err)
		}
	}
	if _, err := OpenWith(ctx, "mysql://u@"+addr+"/db", Options{PasswordQuery: "SELECT 1"}, nil); err == nil || errors.Is(err, userdb.ErrUnavailable) {
		t.Errorf("OpenWith with only password_query = %v, want a configuration error", err)
	}
}

// TestStartDown: with StartDown, a database that is unreachable at Open
// gives ErrUnavailable until it answers; then the default schema is
// created and everything works.
func TestStartDown(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			url, p, _ := k.newDB(t)
			target := ""
			if k.dialect == Postgres {
				target = pgServer(t).Addr()
			} else {
				target = myServer(t).Addr()
			}
			addr := p.Addr()
			p.Down()
			d, err := OpenWith(ctx, url, Options{Hasher: cheapHash, StartDown: true}, nil)
			if err != nil {
				t.Fatalf("OpenWith(StartDown) with the server away: %v", err)
			}
			defer d.Close()
			if _, err := d.Lookup(ctx, "a@example.org"); !errors.Is(err, userdb.ErrUnavailable) {
				t.Fatalf("Lookup while away = %v, want ErrUnavailable", err)
			}
			if err := d.AddUser(ctx, "a@example.org", "pw"); !errors.Is(err, userdb.ErrUnavailable) {
				t.Fatalf("AddUser while away = %v, want ErrUnavailable", err)
			}
			newProxyAt(t, addr, target)
			if _, err := d.Lookup(ctx, "a@example.org"); !errors.Is(err, userdb.ErrNotFound) {
				t.Fatalf("Lookup once back = %v, want ErrNotFound", err)
			}
			if err := d.AddUser(ctx, "a@example.org", "pw"); err != nil {
				t.Fatalf("AddUser once back: %v", err)
			}
			if _, err := d.Authenticate(ctx, "a@example.org", "pw"); err != nil {
				t.Fatalf("Authenticate once back: %v", err)
			}
			if _, err := OpenWith(ctx, "postgres://u@"+addr+"x/db", Options{StartDown: true}, nil); err == nil {
				t.Fatal("OpenWith(StartDown) of a malformed URL succeeded")
			}
		})
	}
}

// TestConcurrentSchema: servers starting at once on a fresh database
// all open it (no unique violation from racing CREATE TABLE IF NOT
// EXISTS), and the table works. Round 0 is concurrent OpenWith on a
// fresh database; later rounds drop the table and run the schema setup
// of warmed-up handles at once, which races reliably without the lock.
func TestConcurrentSchema(t *testing.T) {
	const servers, rounds = 6, 4
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			url, _, run := k.newDB(t)
			dbs := make([]*DB, servers)
			errs := make([]error, servers)
			var wg sync.WaitGroup
			for i := range servers {
				wg.Go(func() { dbs[i], errs[i] = OpenWith(ctx, url, Options{Hasher: cheapHash}, nil) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("round 0: OpenWith %d of %d at once: %v", i, servers, err)
				}
				t.Cleanup(func() { dbs[i].Close() })
			}
			for r := 1; r < rounds; r++ {
				run("DROP TABLE bucketmail_users")
				for _, d := range dbs {
					d.schemaDone.Store(false)
					if err := d.db.PingContext(ctx); err != nil {
						t.Fatal(err)
					}
				}
				start := make(chan struct{})
				for i, d := range dbs {
					wg.Go(func() {
						<-start
						errs[i] = d.ensureSchema(ctx)
					})
				}
				close(start)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d: schema setup %d of %d at once: %v", r, i, servers, err)
					}
				}
			}
			for i, d := range dbs {
				if err := d.AddUser(ctx, fmt.Sprintf("u%d@example.org", i), "pw"); err != nil {
					t.Fatal(err)
				}
			}
			if u, err := dbs[0].Lookup(ctx, fmt.Sprintf("u%d@example.org", servers-1)); err != nil || u.Address != fmt.Sprintf("u%d@example.org", servers-1) {
				t.Fatalf("Lookup after concurrent setup = %v, %v", u, err)
			}
			if us, err := dbs[0].ListUsers(ctx); err != nil || len(us) != servers {
				t.Fatalf("ListUsers: %d users, %v; want %d", len(us), err, servers)
			}
		})
	}
}
