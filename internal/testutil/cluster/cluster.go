// Package cluster starts a bucketmail cluster for end-to-end tests (issue
// 6): one PostgreSQL (metadata database and user database in the same
// database, the default sqldb schema), one nats-server (unless the bus is
// PostgreSQL LISTEN/NOTIFY), one versitygw bucket, and N `bucketmail
// serve` processes (package internal/testutil/e2e) with their own node
// names, data dirs and loopback ports, all sharing them.
//
// Each node gets a TOML file with the [cluster], [auth] cache and
// [metrics] settings of Options, and the flags
//
//	--config FILE --metadb postgres://… --userdb URL --bus URL --node-name NAME
//	--s3-endpoint URL --s3-bucket mail --s3-region us-east-1 --s3-path-style
//
// which Node.Run passes to every other subcommand too (user, fsck), so
// `bucketmail user passwd` run "on node A" publishes with A's bus and
// name. S3 credentials come from $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY,
// set with t.Setenv: tests using Start must not call t.Parallel.
//
// PostgreSQL starts once per test process (one to three seconds) and
// stops in e2e.Main's AtExit; every cluster gets a fresh database.
// nats-server and versitygw are per cluster and stop at t.Cleanup.
// Missing programs skip the test, or fail it when CI=true.
//
// Also: AddNode starts one more node (e.g. on a new, empty metadata
// database after setting Cluster.MetaDB: a rebuild from the bucket);
// Spy records the events on the cluster's bus; Watcher (imap.go) is a
// go-imap v2 client that records EXISTS, EXPUNGE and FETCH responses with
// their arrival times, for latency measurements.
package cluster

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
	"github.com/bucketmail/bucketmail/internal/testutil/natsd"
	"github.com/bucketmail/bucketmail/internal/testutil/pg"
	"github.com/bucketmail/bucketmail/internal/testutil/s3gw"
)

// Bus kinds for Options.Bus.
const (
	BusNATS     = "nats"
	BusPostgres = "postgres"
)

// Options describe a cluster. The zero value is two nodes on a NATS bus
// with the servers' defaults for everything else.
type Options struct {
	// Nodes is the number of serve processes (default 2), named
	// node-a, node-b, node-c, ….
	Nodes int
	// Bus is BusNATS (default) or BusPostgres (the metadata database's
	// LISTEN/NOTIFY).
	Bus string
	// PollInterval and ConsistencyWindow go to [cluster] poll_interval
	// and consistency_window; 0 leaves the server default.
	PollInterval      time.Duration
	ConsistencyWindow time.Duration
	// AuthCacheTTL > 0 turns the auth cache on ([auth] cache_max_entries
	// = 1000) with this cache_ttl and cache_negative_ttl.
	AuthCacheTTL time.Duration
	// AuthThrottleMaxDelay is [auth] throttle_max_delay (negative: no
	// growing delay after failed logins, for tests that expect NO
	// several times); 0 leaves the default.
	AuthThrottleMaxDelay time.Duration
	// Metrics gives every node a --metrics-listen address ([metrics]
	// listen; Node.MetricsAddr).
	Metrics bool
	// UserDB is the --userdb URL; "" means the metadata database itself
	// (postgres://…, default sqldb schema). For dynamodb://TABLE set the
	// dynalite environment first (dynalite.Server.Setenv).
	UserDB string
	// LogLevel is [log] level; "" leaves the default (info).
	LogLevel string
}

// Cluster is a running cluster.
type Cluster struct {
	PG     *pg.Server
	DBName string // the cluster's database on PG
	MetaDB string // postgres://… URL of DBName (--metadb)
	UserDB string // --userdb
	NATS   *natsd.Server
	S3     *s3gw.Gateway
	BusURL string // --bus
	Nodes  []*Node

	opts Options
	bin  string
}

// Node is one `bucketmail serve` of the cluster.
type Node struct {
	*e2e.Server
	Name        string // --node-name
	MetricsAddr string // 127.0.0.1:port, "" unless Options.Metrics
	ConfigPath  string
}

var shared struct {
	once sync.Once
	pg   *pg.Server
	err  error
}

// SharedPG returns the PostgreSQL server shared by the test process,
// starting it on first use (it stops in e2e.Main's AtExit). It skips
// the test when PostgreSQL is missing (fails it when CI=true).
func SharedPG(t testing.TB) *pg.Server {
	t.Helper()
	shared.once.Do(func() {
		shared.pg, shared.err = pg.Start()
		if shared.err == nil {
			s := shared.pg
			e2e.AtExit(s.Stop)
		}
	})
	if shared.err != nil {
		pg.Skip(t, shared.err)
	}
	return shared.pg
}

// Start starts a cluster for the test. Everything stops at t.Cleanup;
// when the test failed, the last lines of every node's log are logged.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Nodes == 0 {
		o.Nodes = 2
	}
	if o.Bus == "" {
		o.Bus = BusNATS
	}
	bin := e2e.Binary(t)
	start := time.Now()
	p := SharedPG(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := p.CreateDB(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{PG: p, DBName: db, MetaDB: p.URL(db), UserDB: o.UserDB}
	if c.UserDB == "" {
		c.UserDB = c.MetaDB
	}
	switch o.Bus {
	case BusNATS:
		c.NATS = natsd.Start(t)
		c.BusURL = c.NATS.URL
	case BusPostgres:
		c.BusURL = c.MetaDB
	default:
		t.Fatalf("cluster: unknown bus %q", o.Bus)
	}
	c.S3 = s3gw.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", c.S3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", c.S3.SecretKey)

	c.opts, c.bin = o, bin
	for range o.Nodes {
		c.AddNode(t)
	}
	t.Logf("cluster: %d nodes on bus %s started in %v", len(c.Nodes), o.Bus, time.Since(start).Round(time.Millisecond))
	return c
}

// AddNode starts one more node (node-a, node-b, … in order) with the
// cluster's options and its current MetaDB, UserDB and BusURL, and
// returns it. Nodes start one after the other, so the first one runs the
// schema migrations. It stops at t.Cleanup.
func (c *Cluster) AddNode(t testing.TB) *Node {
	t.Helper()
	o := c.opts
	name := "node-" + string(rune('a'+len(c.Nodes)))
	dir := t.TempDir()
	n := &Node{Name: name, ConfigPath: filepath.Join(dir, "bucketmail.toml")}
	var cfg strings.Builder
	if o.LogLevel != "" {
		fmt.Fprintf(&cfg, "[log]\nlevel = %q\n", o.LogLevel)
	}
	fmt.Fprintf(&cfg, "[cluster]\n")
	if o.PollInterval > 0 {
		fmt.Fprintf(&cfg, "poll_interval = %q\n", o.PollInterval.String())
	}
	if o.ConsistencyWindow > 0 {
		fmt.Fprintf(&cfg, "consistency_window = %q\n", o.ConsistencyWindow.String())
	}
	if o.AuthCacheTTL > 0 || o.AuthThrottleMaxDelay != 0 {
		fmt.Fprintf(&cfg, "[auth]\n")
	}
	if o.AuthCacheTTL > 0 {
		fmt.Fprintf(&cfg, "cache_max_entries = 1000\ncache_ttl = %q\ncache_negative_ttl = %q\n",
			o.AuthCacheTTL.String(), o.AuthCacheTTL.String())
	}
	if o.AuthThrottleMaxDelay != 0 {
		fmt.Fprintf(&cfg, "throttle_max_delay = %q\n", o.AuthThrottleMaxDelay.String())
	}
	if o.Metrics {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		n.MetricsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		fmt.Fprintf(&cfg, "[metrics]\nlisten = %q\n", n.MetricsAddr)
	}
	if err := os.WriteFile(n.ConfigPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", n.ConfigPath, "--metadb", c.MetaDB, "--userdb", c.UserDB,
		"--bus", c.BusURL, "--node-name", name,
		"--s3-endpoint", c.S3.Endpoint, "--s3-bucket", c.S3.Bucket, "--s3-region", c.S3.Region, "--s3-path-style"}
	srv, err := e2e.LaunchArgs(c.bin, dir, args...)
	if err != nil {
		t.Fatalf("cluster: start %s: %v", name, err)
	}
	n.Server = srv
	c.Nodes = append(c.Nodes, n)
	t.Cleanup(func() {
		if srv.Running() {
			if err := srv.Shutdown(); err != nil {
				t.Errorf("cluster: %s: %v", name, err)
			}
		}
		if t.Failed() {
			t.Logf("%s: serve log, last lines:\n%s", name, LastLines(srv.Log(), 40))
		}
	})
	return n
}

// AddUser adds a user through the first node (`bucketmail user add
// --password-stdin` with its flags).
func (c *Cluster) AddUser(t testing.TB, addr, password string) {
	t.Helper()
	c.Nodes[0].AddUser(t, addr, password)
}

// Psql runs SQL in the cluster's database and returns psql's unaligned,
// tuples-only output (fields separated by "|", one row per line).
func (c *Cluster) Psql(t testing.TB, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.PG.Psql(ctx, c.DBName, sql)
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	return strings.TrimRight(out, "\n")
}

// Metric fetches http://MetricsAddr/metrics and returns the value of the
// first sample whose name (with labels, as exposed) is name, and whether
// it was there. An endpoint that does not answer is an error.
func (n *Node) Metric(name string) (float64, bool, error) {
	if n.MetricsAddr == "" {
		return 0, false, fmt.Errorf("cluster: %s: no metrics address", n.Name)
	}
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + n.MetricsAddr + "/metrics")
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("cluster: %s: GET /metrics: %s", n.Name, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, " ")
		if !ok || k != name {
			continue
		}
		if i := strings.IndexByte(v, ' '); i >= 0 { // a timestamp follows
			v = v[:i]
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, false, fmt.Errorf("cluster: %s: %s: %w", n.Name, line, err)
		}
		return f, true, nil
	}
	return 0, false, sc.Err()
}

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string {
	end := len(s)
	for i := len(s) - 1; i >= 0 && n > 0; i-- {
		if s[i] == '\n' && i != len(s)-1 {
			n--
			if n == 0 {
				return s[i+1 : end]
			}
		}
	}
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
