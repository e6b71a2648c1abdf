package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	redistest "github.com/bucketmail/bucketmail/internal/testutil/redis"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
	"github.com/bucketmail/bucketmail/internal/userdb/userdbtest"
)

var cheap = func(pw string) (string, error) {
	return password.HashArgon2ID(pw, password.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1})
}

// withServer is a DB whose server the suite can stop.
type withServer struct {
	*DB
	srv *redistest.Server
}

func (w withServer) Down(t *testing.T) { w.srv.Stop() }

func open(t *testing.T, srv *redistest.Server, o Options) *DB {
	t.Helper()
	if o.Hasher == nil {
		o.Hasher = cheap
	}
	d, err := OpenOptions(context.Background(), srv.URL, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func seed(t *testing.T, d *DB, seed []userdbtest.Seed) {
	t.Helper()
	ctx := context.Background()
	for _, s := range seed {
		if err := d.AddUser(ctx, s.Address, s.Password); err != nil {
			t.Fatal(err)
		}
		if s.Disabled {
			if err := d.SetDisabled(ctx, s.Address, true); err != nil {
				t.Fatal(err)
			}
		}
		if s.QuotaBytes != 0 {
			if err := d.SetQuota(ctx, s.Address, s.QuotaBytes); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestConformance(t *testing.T) {
	shared := redistest.Start(t)
	db := 0
	userdbtest.Run(t, func(t *testing.T, s []userdbtest.Seed) userdbtest.Backend {
		if t.Name() == "TestConformance/Down" {
			srv := redistest.Start(t)
			d := open(t, srv, Options{})
			seed(t, d, s)
			return withServer{d, srv}
		}
		// One server, a fresh key prefix per subtest.
		db++
		d := open(t, shared, Options{KeyTemplate: "t" + string(rune('a'+db)) + ":user:{address}"})
		seed(t, d, s)
		return d
	})
}

// TestPolicies: keys under each address policy (issue 5 item 4).
func TestPolicies(t *testing.T) {
	srv := redistest.Start(t)
	n := 0
	userdbtest.RunPolicies(t, func(t *testing.T, p userdb.AddressPolicy, s []userdbtest.Seed) userdbtest.Backend {
		n++
		d := open(t, srv, Options{KeyTemplate: fmt.Sprintf("p%d:user:{address}", n), Policy: p})
		seed(t, d, s)
		return d
	})
}

// TestKeyLayout writes hashes as an operator's script would (redis-cli
// HSET) and reads them back, and checks what AddUser writes.
func TestKeyLayout(t *testing.T) {
	srv := redistest.Start(t)
	d := open(t, srv, Options{KeyTemplate: "mail/{address}/auth"})
	ctx := context.Background()
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer rc.Close()
	// doveadm pw -s SHA512-CRYPT -p secret
	const hash = "{SHA512-CRYPT}$6$xGEgTpLjDK209TQZ$SR.oK/kpqO6MYqk4a9MIdq/LApsJXY5YMHC/JCgbuzG6vGBw0.XI4.i21uKzvFjKm6B.l2qcdnZWKS5B9PdzS."
	if err := rc.HSet(ctx, "mail/ops@example.org/auth", "password", hash, "account", "acct-7", "quota_bytes", "5000", "disabled", "").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.HSet(ctx, "mail/off@example.org/auth", "password", "{PLAIN}x", "disabled", "true").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.HSet(ctx, "mail/nopw@example.org/auth", "account", "nopw").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Set(ctx, "mail/other", "x", 0).Err(); err != nil { // not a user: wrong suffix
		t.Fatal(err)
	}
	u, err := d.Lookup(ctx, "OPS@example.org")
	if err != nil || *u != (userdb.User{Address: "ops@example.org", Account: "acct-7", QuotaBytes: 5000}) {
		t.Fatalf("Lookup = %+v, %v", u, err)
	}
	if u, err := d.Authenticate(ctx, "ops@example.org", "secret"); err != nil || u.Account != "acct-7" {
		t.Fatalf("Authenticate = %+v, %v", u, err)
	}
	if _, err := d.Authenticate(ctx, "off@example.org", "x"); !errors.Is(err, userdb.ErrAuthFailed) {
		t.Fatalf("disabled: %v", err)
	}
	if u, err := d.Lookup(ctx, "off@example.org"); err != nil || *u != (userdb.User{Address: "off@example.org", Account: "off@example.org", Disabled: true}) {
		t.Fatalf("Lookup disabled = %+v, %v", u, err)
	}
	if _, err := d.Authenticate(ctx, "nopw@example.org", ""); !errors.Is(err, userdb.ErrAuthFailed) {
		t.Fatalf("no password field: %v", err)
	}
	if err := d.AddUser(ctx, "New@Example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	m, err := rc.HGetAll(ctx, "mail/new@example.org/auth").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 4 || m["account"] != "new@example.org" || m["quota_bytes"] != "0" || m["disabled"] != "0" || !strings.HasPrefix(m["password"], "{ARGON2ID}$argon2id$") {
		t.Fatalf("AddUser wrote %v", m)
	}
	list, err := d.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range list {
		got = append(got, u.Address+"="+u.Account)
	}
	if want := "new@example.org=new@example.org nopw@example.org=nopw off@example.org=off@example.org ops@example.org=acct-7"; strings.Join(got, " ") != want {
		t.Fatalf("ListUsers = %q, want %q", strings.Join(got, " "), want)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		dsn  string
		tmpl string
	}{
		{"postgres://x", ""},
		{"redis://127.0.0.1:1/0", "no-placeholder"},
		{"redis://127.0.0.1:1/0", "{address}:{address}"},
	} {
		if _, err := OpenOptions(ctx, c.dsn, Options{KeyTemplate: c.tmpl}, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("OpenOptions(%q, %q) = %v, want ErrConfig", c.dsn, c.tmpl, err)
		}
	}
	// Nothing listens: Open succeeds, use is ErrUnavailable.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d, err := Open(ctx, "redis://"+addr+"/0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Authenticate(ctx, "a@example.org", "pw"); !errors.Is(err, userdb.ErrUnavailable) {
		t.Fatalf("Authenticate with no server = %v", err)
	}
}

// TestHungServer: a server that accepts connections and never answers is
// ErrUnavailable after Options.Timeout (go-redis does not retry a read
// timeout), not a hung login.
func TestHungServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	ctx := context.Background()
	d, err := OpenOptions(ctx, "redis://"+l.Addr().String()+"/0", Options{Timeout: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	start := time.Now()
	if _, err := d.Lookup(ctx, "alice@example.org"); !errors.Is(err, userdb.ErrUnavailable) {
		t.Fatalf("Lookup against a hung server = %v, want ErrUnavailable", err)
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 3*time.Second {
		t.Fatalf("gave up after %v, want about 200ms", el)
	}
}

// TestRecovery: the same DB works again once its server is back.
func TestRecovery(t *testing.T) {
	srv := redistest.Start(t)
	d := open(t, srv, Options{})
	ctx := context.Background()
	seed(t, d, userdbtest.Seeds[:1])
	srv.Stop()
	if _, err := d.Authenticate(ctx, "alice@example.org", "correct horse battery staple"); !errors.Is(err, userdb.ErrUnavailable) {
		t.Fatalf("server stopped: %v", err)
	}
	srv.Restart(t) // empty: nothing is saved
	if _, err := d.Lookup(ctx, "alice@example.org"); !errors.Is(err, userdb.ErrNotFound) {
		t.Fatalf("after restart Lookup = %v, want ErrNotFound", err)
	}
	seed(t, d, userdbtest.Seeds[:1])
	if _, err := d.Authenticate(ctx, "alice@example.org", "correct horse battery staple"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

// TestServerPassword: a password and a database number in the dsn are
// used; a wrong password is ErrUnavailable (a configuration problem, not
// a login failure).
func TestServerPassword(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	ctx := context.Background()
	d, err := OpenOptions(ctx, "redis://:s3cret@"+srv.Addr+"/3", Options{Hasher: cheap}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	seed(t, d, userdbtest.Seeds[:1])
	if _, err := d.Authenticate(ctx, "alice@example.org", "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Password: "s3cret", DB: 3})
	defer rc.Close()
	if n, err := rc.Exists(ctx, "bucketmail:user:alice@example.org").Result(); err != nil || n != 1 {
		t.Fatalf("user not in database 3: %d, %v", n, err)
	}
	bad, err := Open(ctx, "redis://:wrong@"+srv.Addr+"/3", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_, err = bad.Authenticate(ctx, "alice@example.org", "correct horse battery staple")
	if !errors.Is(err, userdb.ErrUnavailable) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong server password: %v", err)
	}
}

func TestLogAdapter(t *testing.T) {
	var buf strings.Builder
	a := LogAdapter{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))}
	goredis.SetLogger(a) // compiles only if LogAdapter is a go-redis logger
	t.Cleanup(func() { goredis.SetLogger(noLog{}) })
	a.Printf(context.Background(), "pool: failed to dial after %d attempts", 1)
	if got, want := buf.String(), "level=WARN msg=\"redis: pool: failed to dial after 1 attempts\" component=userdb\n"; got != want {
		t.Fatalf("logged %q, want %q", got, want)
	}
}

type noLog struct{}

func (noLog) Printf(context.Context, string, ...any) {}
