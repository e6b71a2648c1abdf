package main

import (
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
// internal/testutil/s3gw) behind a counting reverse proxy: bucketmail
// talks to the proxy (endpoint), which counts each request by method and
// forwards it unchanged (the Host header too, so signatures hold).
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
	os.RemoveAll(g.dir)
}

// bucketmailS3 is `bucketmail serve` in S3 mode against a versitygw.
type bucketmailS3 struct {
	*bucketmail
	gw    *versitygw
	flags []string // --data-dir and the S3 flags, for the other subcommands
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
	b.args = append([]string{"serve", "--imap-listen", b.imap, "--lmtp-listen", b.lmtp}, b.flags...)
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

// S3Requests implements S3Counter from versitygw's request log.
func (b *bucketmailS3) S3Requests(ctx context.Context) (map[string]int64, error) {
	return b.gw.Requests(ctx)
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
