package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/s3gw"
)

// errNoVersitygw: versitygw is not installed (outside CI the S3 column
// is then n/a; under CI=true the column fails instead).
var errNoVersitygw = errors.New("versitygw not installed")

const gwHealth = "/_bench_health"

// versitygw is a local S3 gateway (versitygw posix backend, as in
// internal/testutil/s3gw), with a counting reverse proxy in front for the
// bucketmail subcommands (reindex): they talk to the proxy (endpoint),
// which counts each request by method and forwards it unchanged (the Host
// header too, so signatures hold). `bucketmail serve` talks to versitygw
// directly (gwURL: the proxy's hop would be counted against it) and
// counts its own requests (bucketmail_s3_requests_total on /metrics).
// versitygw's own request log is not used: under concurrent requests its
// lines interleave (seen here: methods like "PUT17:10:52").
type versitygw struct {
	endpoint string // the counting proxy, http://127.0.0.1:PORT
	gwURL    string // versitygw itself
	dir      string
	cmd      *exec.Cmd
	done     chan struct{}
	client   *http.Client
	proxy    *http.Server

	mu      sync.Mutex
	counts  map[string]int64 // method to requests
	stderrB strings.Builder
}

// startVersitygw starts versitygw on a port from env.Ports with a fresh
// posix root holding bucket s3gw.Bucket.
func startVersitygw(ctx context.Context, env *runEnv) (*versitygw, error) {
	bin := s3gw.Binary()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			return nil, fmt.Errorf("versitygw not installed (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
		}
		return nil, errNoVersitygw
	}
	dir, err := os.MkdirTemp("", "bmbench-s3-")
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, s3gw.Bucket), 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr, err := env.Ports.Addr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	paddr, err := env.Ports.Addr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	g := &versitygw{gwURL: "http://" + addr, dir: dir, counts: map[string]int64{},
		client: &http.Client{Timeout: 5 * time.Second}, done: make(chan struct{})}
	g.cmd = exec.Command(bin, "--port", addr, "--health", gwHealth, "posix", dir)
	g.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s3gw.AccessKey, "ROOT_SECRET_KEY="+s3gw.SecretKey)
	g.cmd.Stdout = io.Discard
	g.cmd.Stderr = &lockedBuilder{g: g}
	if err := g.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("versitygw: %w", err)
	}
	go func() {
		g.cmd.Wait()
		close(g.done)
	}()
	target, _ := url.Parse(g.gwURL)
	rp := httputil.NewSingleHostReverseProxy(target) // keeps the client's Host header
	ln, err := net.Listen("tcp", paddr)
	if err != nil {
		g.Stop()
		return nil, err
	}
	g.endpoint = "http://" + paddr
	g.proxy = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.counts[r.Method]++
		g.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go g.proxy.Serve(ln)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-g.done:
			g.Stop()
			return nil, fmt.Errorf("versitygw exited at start: %s", g.stderr())
		default:
		}
		if resp, err := g.client.Get(g.gwURL + gwHealth); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			g.Stop()
			return nil, fmt.Errorf("versitygw on %s did not answer within 20 s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedBuilder struct{ g *versitygw }

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.g.mu.Lock()
	defer l.g.mu.Unlock()
	if l.g.stderrB.Len() < 64<<10 {
		l.g.stderrB.Write(p)
	}
	return len(p), nil
}

func (g *versitygw) stderr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return tailString(g.stderrB.String(), 2000)
}

// Requests returns the request counts by method so far (every request
// the proxy received; a caller that saw its responses sees them counted).
func (g *versitygw) Requests(ctx context.Context) (map[string]int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]int64, len(g.counts))
	for k, v := range g.counts {
		out[k] = v
	}
	return out, nil
}

// Stop stops versitygw and removes its data.
func (g *versitygw) Stop() {
	if g.proxy != nil {
		g.proxy.Close()
	}
	if g.cmd != nil && g.cmd.Process != nil {
		g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(10 * time.Second):
			g.cmd.Process.Kill()
			<-g.done
		}
	}
	removeLater(g.dir)
}

// bucketmailS3 is `bucketmail serve` in S3 mode against a versitygw.
type bucketmailS3 struct {
	*bucketmail
	gw      *versitygw
	flags   []string // --data-dir and the S3 flags (through the proxy), for the other subcommands
	metrics string   // serve's --metrics-listen address
}

func startBucketmailS3(ctx context.Context, env *runEnv) (Target, error) {
	bin, err := env.binary(ctx)
	if err != nil {
		return nil, err
	}
	gw, err := startVersitygw(ctx, env)
	if err != nil {
		if errors.Is(err, errNoVersitygw) {
			return nil, fmt.Errorf("%w: %w", errNotBuilt, err)
		}
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bmbench-bucketmail-s3-")
	if err != nil {
		gw.Stop()
		return nil, err
	}
	data := filepath.Join(dir, "data")
	b := &bucketmailS3{bucketmail: &bucketmail{dir: dir, bin: bin}, gw: gw}
	b.flags = []string{"--data-dir", data, "--s3-endpoint", gw.endpoint, "--s3-bucket", s3gw.Bucket,
		"--s3-region", s3gw.Region, "--s3-path-style"}
	b.env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+s3gw.AccessKey, "AWS_SECRET_ACCESS_KEY="+s3gw.SecretKey)
	if err := provisionBucketmailWith(ctx, env, bin, data, b.flags, b.env); err != nil {
		b.Stop(ctx)
		return nil, err
	}
	if b.imap, err = env.Ports.Addr(); err != nil {
		b.Stop(ctx)
		return nil, err
	}
	if b.lmtp, err = env.Ports.Addr(); err != nil {
		b.Stop(ctx)
		return nil, err
	}
	if b.logFile, err = os.Create(filepath.Join(dir, "serve.log")); err != nil {
		b.Stop(ctx)
		return nil, err
	}
	if b.metrics, err = env.Ports.Addr(); err != nil {
		b.Stop(ctx)
		return nil, err
	}
	b.args = []string{"serve", "--imap-listen", b.imap, "--lmtp-listen", b.lmtp, "--metrics-listen", b.metrics,
		"--data-dir", data, "--s3-endpoint", gw.gwURL, "--s3-bucket", s3gw.Bucket,
		"--s3-region", s3gw.Region, "--s3-path-style"}
	if env.Profile {
		if b.pprof, err = env.Ports.Addr(); err != nil {
			b.Stop(ctx)
			return nil, err
		}
		b.env = append(b.env, "BUCKETMAIL_BENCH_PPROF="+b.pprof)
	}
	if err := b.start(ctx); err != nil {
		b.Stop(ctx)
		return nil, err
	}
	return b, nil
}

// s3Methods maps the S3 operations serve counts to HTTP methods.
var s3Methods = map[string]string{
	"PutObject": "PUT", "GetObject": "GET", "ListObjectsV2": "GET",
	"HeadObject": "HEAD", "HeadBucket": "HEAD", "DeleteObject": "DELETE",
}

// S3Requests implements S3Counter from serve's own counters
// (bucketmail_s3_requests_total{operation} on /metrics: HTTP requests,
// retries included), by HTTP method. They start at zero when serve
// starts; callers take differences within one run of serve.
func (b *bucketmailS3) S3Requests(ctx context.Context) (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.metrics+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("serve /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("serve /metrics: %s", resp.Status)
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	const prefix = `bucketmail_s3_requests_total{operation="`
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		op, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return nil, fmt.Errorf("serve /metrics: %q: %w", sc.Text(), err)
		}
		m := s3Methods[op]
		if m == "" {
			m = op
		}
		out[m] += int64(n)
	}
	return out, sc.Err()
}

// DropCache implements S3Counter: stop serve, `bucketmail cache purge`,
// start serve again.
func (b *bucketmailS3) DropCache(ctx context.Context) error {
	if err := b.stopProcess(); err != nil {
		return err
	}
	if err := b.run(ctx, "cache", "purge"); err != nil {
		return err
	}
	return b.Restart(ctx)
}

// Reindex implements Reindexer: stop serve, `bucketmail reindex --user
// user` (timed, its S3 requests counted), start serve again.
func (b *bucketmailS3) Reindex(ctx context.Context, user string) (time.Duration, map[string]int64, error) {
	if err := b.stopProcess(); err != nil {
		return 0, nil, err
	}
	before, err := b.gw.Requests(ctx)
	if err != nil {
		return 0, nil, err
	}
	t0 := time.Now()
	if err := b.run(ctx, "reindex", "--user", user); err != nil {
		return 0, nil, err
	}
	d := time.Since(t0)
	after, err := b.gw.Requests(ctx)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range before {
		after[k] -= v
	}
	return d, after, b.Restart(ctx)
}

// run runs a bucketmail subcommand on the same data and bucket.
func (b *bucketmailS3) run(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, b.bin, append(args, b.flags...)...)
	cmd.Env = b.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bucketmail %s: %v\n%s", strings.Join(args, " "), err, tailString(string(out), 2000))
	}
	return nil
}

// Stop stops serve and versitygw and removes their data.
func (b *bucketmailS3) Stop(ctx context.Context) error {
	err := b.bucketmail.Stop(ctx)
	b.gw.Stop()
	return err
}
