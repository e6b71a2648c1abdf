package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/bucketmail/bucketmail/internal/testutil/dynalite"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
	"github.com/bucketmail/bucketmail/internal/userdb/userdbtest"
)

var cheap = func(pw string) (string, error) {
	return password.HashArgon2ID(pw, password.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1})
}

var tables atomic.Int64

// open makes a fresh table on srv (whose endpoint is in the environment).
func open(t *testing.T, o Options) *DB {
	t.Helper()
	if o.Hasher == nil {
		o.Hasher = cheap
	}
	ctx := context.Background()
	d, err := OpenOptions(ctx, fmt.Sprintf("dynamodb://users-%d", tables.Add(1)), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
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

type withServer struct {
	*DB
	srv *dynalite.Server
}

func (w withServer) Down(t *testing.T) { w.srv.Stop() }

// The tests use t.Setenv for the endpoint: not parallel.

func TestConformance(t *testing.T) {
	shared := dynalite.Start(t)
	shared.Setenv(t)
	userdbtest.Run(t, func(t *testing.T, s []userdbtest.Seed) userdbtest.Backend {
		if t.Name() == "TestConformance/Down" {
			srv := dynalite.Start(t)
			srv.Setenv(t)
			d := open(t, Options{})
			seed(t, d, s)
			return withServer{d, srv}
		}
		d := open(t, Options{})
		seed(t, d, s)
		return d
	})
}

// TestPolicies: partition keys under each address policy (issue 5 item 4).
func TestPolicies(t *testing.T) {
	srv := dynalite.Start(t)
	srv.Setenv(t)
	userdbtest.RunPolicies(t, func(t *testing.T, p userdb.AddressPolicy, s []userdbtest.Seed) userdbtest.Backend {
		d := open(t, Options{Policy: p})
		seed(t, d, s)
		return d
	})
}

// TestTableLayout writes items as an operator's tool would and reads them
// back, and checks what AddUser writes.
func TestTableLayout(t *testing.T) {
	srv := dynalite.Start(t)
	srv.Setenv(t)
	d := open(t, Options{})
	ctx := context.Background()
	// doveadm pw -s SHA512-CRYPT -p secret
	const hash = "{SHA512-CRYPT}$6$xGEgTpLjDK209TQZ$SR.oK/kpqO6MYqk4a9MIdq/LApsJXY5YMHC/JCgbuzG6vGBw0.XI4.i21uKzvFjKm6B.l2qcdnZWKS5B9PdzS."
	put := func(item map[string]types.AttributeValue) {
		t.Helper()
		if _, err := d.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(d.Table()), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	put(map[string]types.AttributeValue{"address": s("ops@example.org"), "password": s(hash), "account": s("acct-7"),
		"quota_bytes": &types.AttributeValueMemberN{Value: "5000"}, "disabled": &types.AttributeValueMemberBOOL{Value: false}})
	put(map[string]types.AttributeValue{"address": s("off@example.org"), "password": s("{PLAIN}x"), "disabled": &types.AttributeValueMemberN{Value: "1"}})
	put(map[string]types.AttributeValue{"address": s("nopw@example.org"), "account": s("nopw"), "quota_bytes": s("12")})

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
		t.Fatalf("no password attribute: %v", err)
	}
	// Addresses DynamoDB cannot store as a key are unknown, not a backend error.
	for _, a := range []string{"\xffalice@example.org", strings.Repeat("a", 2049) + "@example.org"} {
		if _, err := d.Lookup(ctx, a); !errors.Is(err, userdb.ErrNotFound) {
			t.Errorf("Lookup(%.20q) = %v, want ErrNotFound", a, err)
		}
		if _, err := d.Authenticate(ctx, a, "pw"); !errors.Is(err, userdb.ErrAuthFailed) {
			t.Errorf("Authenticate(%.20q) = %v, want ErrAuthFailed", a, err)
		}
		if err := d.SetQuota(ctx, a, 1); !errors.Is(err, userdb.ErrNotFound) {
			t.Errorf("SetQuota(%.20q) = %v, want ErrNotFound", a, err)
		}
		if err := d.DeleteUser(ctx, a); !errors.Is(err, userdb.ErrNotFound) {
			t.Errorf("DeleteUser(%.20q) = %v, want ErrNotFound", a, err)
		}
	}
	// Consistent reads on demand and by option give the same answers.
	if u, err := d.Lookup(WithConsistentRead(ctx), "nopw@example.org"); err != nil || *u != (userdb.User{Address: "nopw@example.org", Account: "nopw", QuotaBytes: 12}) {
		t.Fatalf("consistent Lookup = %+v, %v", u, err)
	}

	if err := d.AddUser(ctx, "New@Example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	out, err := d.client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(d.Table()), Key: key("new@example.org"), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	it := out.Item
	if len(it) != 5 || str(it["account"]) != "new@example.org" || !strings.HasPrefix(str(it["password"]), "{ARGON2ID}$argon2id$") {
		t.Fatalf("AddUser wrote %v", it)
	}
	if q, ok := it["quota_bytes"].(*types.AttributeValueMemberN); !ok || q.Value != "0" {
		t.Fatalf("quota_bytes = %#v, want N 0", it["quota_bytes"])
	}
	if b, ok := it["disabled"].(*types.AttributeValueMemberBOOL); !ok || b.Value {
		t.Fatalf("disabled = %#v, want BOOL false", it["disabled"])
	}
	list, err := d.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range list {
		got = append(got, fmt.Sprintf("%s=%s/%d/%v", u.Address, u.Account, u.QuotaBytes, u.Disabled))
	}
	want := "new@example.org=new@example.org/0/false nopw@example.org=nopw/12/false off@example.org=off@example.org/0/true ops@example.org=acct-7/5000/false"
	if strings.Join(got, " ") != want {
		t.Fatalf("ListUsers = %q\nwant %q", strings.Join(got, " "), want)
	}
	// CreateTable of an existing table is fine.
	if err := d.CreateTable(ctx); err != nil {
		t.Fatalf("second CreateTable: %v", err)
	}
}

func TestMissingTable(t *testing.T) {
	srv := dynalite.Start(t)
	srv.Setenv(t)
	ctx := context.Background()
	d, err := Open(ctx, "dynamodb://no-such-table", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(ctx, "a@example.org", "pw"); !errors.Is(err, userdb.ErrUnavailable) || errors.Is(err, userdb.ErrAuthFailed) {
		t.Fatalf("Authenticate on a missing table = %v, want ErrUnavailable", err)
	}
	if _, err := d.Lookup(ctx, "a@example.org"); !errors.Is(err, userdb.ErrUnavailable) || errors.Is(err, userdb.ErrNotFound) {
		t.Fatalf("Lookup on a missing table = %v, want ErrUnavailable", err)
	}
}

func TestParseDSN(t *testing.T) {
	for _, c := range []struct{ dsn, table string }{
		{"dynamodb://users", "users"},
		{"dynamodb://bucketmail.users-2_x", "bucketmail.users-2_x"},
		{"dynamodb://ab", ""},
		{"dynamodb://", ""},
		{"dynamodb://a/b", ""},
		{"dynamo://users", ""},
		{"users", ""},
		{"dynamodb://" + strings.Repeat("a", 256), ""},
	} {
		table, err := ParseDSN(c.dsn)
		if c.table == "" {
			if !errors.Is(err, ErrConfig) {
				t.Errorf("ParseDSN(%q) = %q, %v; want ErrConfig", c.dsn, table, err)
			}
			continue
		}
		if err != nil || table != c.table {
			t.Errorf("ParseDSN(%q) = %q, %v; want %q", c.dsn, table, err, c.table)
		}
	}
}

// recordReads makes d's client note the ConsistentRead of every GetItem.
func recordReads(d *DB) func() []bool {
	var (
		mu   sync.Mutex
		seen []bool
	)
	d.client = dynamodb.New(d.client.Options(), func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("recordReads",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if g, ok := in.Parameters.(*dynamodb.GetItemInput); ok {
						mu.Lock()
						seen = append(seen, aws.ToBool(g.ConsistentRead))
						mu.Unlock()
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
		})
	})
	return func() []bool {
		mu.Lock()
		defer mu.Unlock()
		return append([]bool(nil), seen...)
	}
}

func TestConsistentRead(t *testing.T) {
	srv := dynalite.Start(t)
	srv.Setenv(t)
	ctx := context.Background()
	d := open(t, Options{})
	seed(t, d, userdbtest.Seeds[:1])
	reads := recordReads(d)
	calls := []func() error{
		func() error { _, err := d.Lookup(ctx, "alice@example.org"); return err },
		func() error { _, err := d.Lookup(WithConsistentRead(ctx), "alice@example.org"); return err },
		func() error {
			_, err := d.Authenticate(WithConsistentRead(ctx), "alice@example.org", "correct horse battery staple")
			return err
		},
		func() error {
			_, err := d.Authenticate(ctx, "alice@example.org", "correct horse battery staple")
			return err
		},
	}
	for i, c := range calls {
		if err := c(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if got := fmt.Sprint(reads()); got != "[false true true false]" {
		t.Fatalf("ConsistentRead per GetItem = %s, want [false true true false]", got)
	}
	always, err := OpenOptions(ctx, "dynamodb://"+d.Table(), Options{ConsistentRead: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reads = recordReads(always)
	if _, err := always.Lookup(ctx, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(reads()); got != "[true]" {
		t.Fatalf("Options.ConsistentRead: ConsistentRead = %s, want [true]", got)
	}
}

// TestStats: the read counters the cluster tests assert on, with the
// generic userdb.WithConsistentRead and this package's alias.
func TestStats(t *testing.T) {
	srv := dynalite.Start(t)
	srv.Setenv(t)
	ctx := context.Background()
	d := open(t, Options{})
	seed(t, d, userdbtest.Seeds[:1])
	if s := d.Stats(); s != (Stats{}) {
		t.Fatalf("Stats after writes only = %+v, want zero", s)
	}
	reads := recordReads(d)
	d.Lookup(ctx, "alice@example.org")
	d.Lookup(userdb.WithConsistentRead(ctx), "alice@example.org")
	d.Authenticate(userdb.WithConsistentRead(ctx), "alice@example.org", "wrong")
	d.Lookup(WithConsistentRead(ctx), "nobody@example.org")
	d.Authenticate(ctx, "nobody@example.org", "x")
	if s := d.Stats(); s != (Stats{ConsistentReads: 3, EventualReads: 2}) {
		t.Errorf("Stats = %+v, want 3 consistent, 2 eventual", s)
	}
	if got := fmt.Sprint(reads()); got != "[false true true true false]" {
		t.Errorf("ConsistentRead per GetItem = %s", got)
	}
	if _, err := d.ListUsers(ctx); err != nil {
		t.Fatal(err)
	}
	if s := d.Stats(); s != (Stats{ConsistentReads: 3, EventualReads: 2}) {
		t.Errorf("ListUsers counted as a read: %+v", s)
	}
	always := open(t, Options{ConsistentRead: true})
	always.Lookup(ctx, "alice@example.org")
	if s := always.Stats(); s != (Stats{ConsistentReads: 1}) {
		t.Errorf("Options.ConsistentRead: Stats = %+v, want 1 consistent", s)
	}
}

// TestEndpointEnv: the generic AWS_ENDPOINT_URL works when the
// DynamoDB-specific variable is not set.
func TestEndpointEnv(t *testing.T) {
	srv := dynalite.Start(t)
	srv.Setenv(t)
	d := open(t, Options{})
	seed(t, d, userdbtest.Seeds[:1])
	t.Setenv("AWS_ENDPOINT_URL", srv.Endpoint)
	os.Unsetenv("AWS_ENDPOINT_URL_DYNAMODB") // t.Setenv above restores it
	ctx := context.Background()
	g, err := Open(ctx, "dynamodb://"+d.Table(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := g.Lookup(ctx, "alice@example.org"); err != nil || u.Address != "alice@example.org" {
		t.Fatalf("Lookup via AWS_ENDPOINT_URL = %+v, %v", u, err)
	}
}

// TestHungEndpoint: an endpoint that accepts connections and never
// answers is ErrUnavailable after Options.Timeout, not a hung login.
func TestHungEndpoint(t *testing.T) {
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
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://"+l.Addr().String())
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	ctx := context.Background()
	d, err := OpenOptions(ctx, "dynamodb://users", Options{Timeout: 200 * time.Millisecond, MaxAttempts: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = d.Authenticate(ctx, "alice@example.org", "pw")
	if !errors.Is(err, userdb.ErrUnavailable) {
		t.Fatalf("Authenticate against a hung endpoint = %v, want ErrUnavailable", err)
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 3*time.Second {
		t.Fatalf("gave up after %v, want about 200ms", el)
	}
}

// TestRecovery: the same DB works again once the endpoint is back.
func TestRecovery(t *testing.T) {
	srv := dynalite.Start(t)
	srv.Setenv(t)
	ctx := context.Background()
	d := open(t, Options{MaxAttempts: 1})
	seed(t, d, userdbtest.Seeds[:1])
	srv.Stop()
	if _, err := d.Authenticate(ctx, "alice@example.org", "correct horse battery staple"); !errors.Is(err, userdb.ErrUnavailable) {
		t.Fatalf("server stopped: %v", err)
	}
	srv.Restart(t) // in memory: the table is gone
	if _, err := d.Lookup(ctx, "alice@example.org"); !errors.Is(err, userdb.ErrUnavailable) {
		t.Fatalf("table missing after restart: Lookup = %v, want ErrUnavailable", err)
	}
	if err := d.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	seed(t, d, userdbtest.Seeds[:1])
	if _, err := d.Authenticate(ctx, "alice@example.org", "correct horse battery staple"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}
