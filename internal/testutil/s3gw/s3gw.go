// Package s3gw starts a real S3 server for tests: versitygw
// (github.com/versity/versitygw, Apache-2.0) with its posix backend in a
// test temp dir, on a free 127.0.0.1 port, path-style, plain HTTP.
//
// The binary is found at $VERSITYGW, else at $(go env GOPATH)/bin/versitygw.
// Install it with
//
//	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// When it is missing, Start skips the test, or fails it when CI=true.
//
// The gateway logs one line per request on stdout
// ("time | vgw | status | latency | ip | method | path | error | query");
// Requests returns them parsed, so tests can count requests by operation.
// Stop and Restart (same port, same directory) are for failure tests.
package s3gw

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Fixed settings of every gateway started here.
const (
	Bucket    = "mail"
	AccessKey = "bucketmail-test"
	SecretKey = "bucketmail-test-secret"
	Region    = "us-east-1"
	// healthPath answers 200 without auth; Requests uses it to know that
	// every earlier log line has been read.
	healthPath = "/_s3gw_health"
)

// Request is one line of the gateway's request log.
type Request struct {
	Status int
	Method string // GET, PUT, HEAD, DELETE, POST
	Path   string // "/bucket/key", as logged (not unescaped)
	Query  string // query parameters, e.g. "list-type=2&prefix=a"; may be empty
	Error  string // the gateway's error text; empty on success
}

// Gateway is a running versitygw.
type Gateway struct {
	Endpoint  string // "http://127.0.0.1:PORT"
	Bucket    string // "mail", created at start
	AccessKey string
	SecretKey string
	Region    string
	Dir       string // posix backend root; each top-level directory is a bucket
	CAFile    string // StartTLS: PEM of the gateway's self-signed certificate

	t       testing.TB
	bin     string
	addr    string       // "127.0.0.1:PORT"
	keyFile string       // StartTLS: the certificate's key
	client  *http.Client // for health requests

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited and its output is read
	stderr  bytes.Buffer
	log     []Request
	mark    int // index into log where Requests starts
	health  int // health lines seen
	healthC *sync.Cond
}

// Binary returns the versitygw path, or "" when none is installed.
func Binary() string {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err != nil {
			return ""
		}
		gopath = strings.TrimSpace(string(out))
	}
	p := filepath.Join(strings.Split(gopath, string(os.PathListSeparator))[0], "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// Start starts a gateway for the test and stops it in t.Cleanup. It skips
// the test when versitygw is not installed (fails it when CI=true).
// Requests counts from the end of start-up.
func Start(t testing.TB) *Gateway {
	t.Helper()
	return start(t, false)
}

// StartTLS is Start with https: the gateway gets a fresh self-signed
// certificate for 127.0.0.1, whose PEM is in g.CAFile.
func StartTLS(t testing.TB) *Gateway {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, withTLS bool) *Gateway {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "versitygw not installed: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 (or set $VERSITYGW)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, Bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	g := &Gateway{
		Bucket:    Bucket,
		AccessKey: AccessKey,
		SecretKey: SecretKey,
		Region:    Region,
		Dir:       dir,
		t:         t,
		bin:       bin,
	}
	g.healthC = sync.NewCond(&g.mu)
	g.client = &http.Client{Timeout: 5 * time.Second}
	scheme := "http://"
	if withTLS {
		scheme = "https://"
		g.CAFile, g.keyFile = selfSigned(t)
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(g.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(pem)
		g.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		t.Cleanup(g.client.CloseIdleConnections)
	}
	var err error
	for range 5 { // another process may take the free port before we bind it
		g.addr, err = freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		g.Endpoint = scheme + g.addr
		if err = g.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("s3gw: %v", err)
	}
	g.Endpoint = scheme + g.addr
	t.Cleanup(g.Stop)
	g.Mark() // start-up requests (versitygw over TLS sends itself a GET /) do not count
	return g
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs the process on g.addr and waits until it answers.
func (g *Gateway) start() error {
	args := []string{"--port", g.addr, "--health", healthPath}
	if g.CAFile != "" {
		args = append(args, "--cert", g.CAFile, "--key", g.keyFile)
	}
	cmd := exec.Command(g.bin, append(args, "posix", g.Dir)...)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+g.AccessKey, "ROOT_SECRET_KEY="+g.SecretKey)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.stderr.Reset()
	g.mu.Unlock()
	cmd.Stderr = &lockedWriter{mu: &g.mu, w: &g.stderr}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", g.bin, err)
	}
	done := make(chan struct{})
	g.mu.Lock()
	g.cmd, g.done = cmd, done
	g.mu.Unlock()
	go func() {
		g.readLog(stdout)
		cmd.Wait()
		close(done)
	}()

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			g.mu.Lock()
			defer g.mu.Unlock()
			return fmt.Errorf("versitygw on %s exited at start: %s", g.addr, strings.TrimSpace(g.stderr.String()))
		default:
		}
		if resp, err := g.client.Get(g.Endpoint + healthPath); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			g.kill()
			return fmt.Errorf("versitygw on %s did not answer within 20s", g.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// readLog parses request lines from the gateway's stdout until it closes.
func (g *Gateway) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		req, ok := ParseLine(sc.Text())
		if !ok {
			continue
		}
		g.mu.Lock()
		if req.Path == healthPath {
			g.health++
			g.healthC.Broadcast()
		} else {
			g.log = append(g.log, req)
		}
		g.mu.Unlock()
	}
	g.mu.Lock()
	g.healthC.Broadcast()
	g.mu.Unlock()
}

// ParseLine parses one request log line
// "time | vgw | status | latency | ip | method | path | error | query".
func ParseLine(line string) (Request, bool) {
	f := strings.Split(line, " | ")
	if len(f) < 7 || strings.TrimSpace(f[1]) != "vgw" {
		return Request{}, false
	}
	status, err := strconv.Atoi(strings.TrimSpace(f[2]))
	if err != nil {
		return Request{}, false
	}
	r := Request{
		Status: status,
		Method: strings.TrimSpace(f[5]),
		Path:   strings.TrimSpace(f[6]),
	}
	if len(f) > 7 {
		r.Error = strings.TrimSpace(f[7])
	}
	if len(f) > 8 {
		r.Query = strings.TrimSpace(strings.Join(f[8:], " | "))
	}
	return r, true
}

// Requests returns the requests logged since start or the last Mark, in
// the order the gateway finished them. It first waits until every
// request answered before the call has been logged.
func (g *Gateway) Requests() []Request {
	g.t.Helper()
	g.sync()
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Request(nil), g.log[g.mark:]...)
}

// Count returns how many requests since the last Mark had this method and
// status (status 0 matches any).
func (g *Gateway) Count(method string, status int) int {
	n := 0
	for _, r := range g.Requests() {
		if r.Method == method && (status == 0 || r.Status == status) {
			n++
		}
	}
	return n
}

// Mark makes Requests start after the requests answered so far.
func (g *Gateway) Mark() {
	g.t.Helper()
	g.sync()
	g.mu.Lock()
	g.mark = len(g.log)
	g.mu.Unlock()
}

// sync sends a health request and waits until its log line is read: the
// gateway logs in request order per connection, and every request the
// caller has seen answered was logged before this one was.
func (g *Gateway) sync() {
	g.t.Helper()
	g.mu.Lock()
	want := g.health + 1
	running := g.cmd != nil
	g.mu.Unlock()
	if !running {
		return
	}
	resp, err := g.client.Get(g.Endpoint + healthPath)
	if err != nil {
		g.t.Fatalf("s3gw: health request: %v", err)
	}
	resp.Body.Close()
	deadline := time.AfterFunc(5*time.Second, func() {
		g.mu.Lock()
		g.healthC.Broadcast()
		g.mu.Unlock()
	})
	defer deadline.Stop()
	start := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.health < want {
		if time.Since(start) > 5*time.Second {
			g.t.Fatalf("s3gw: request log did not show the health request within 5s")
		}
		g.healthC.Wait()
	}
}

// Stop kills the gateway and waits for it to exit. The directory and the
// port number are kept for Restart. Stop on a stopped gateway does nothing.
func (g *Gateway) Stop() {
	g.kill()
}

func (g *Gateway) kill() {
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.cmd = nil
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	cmd.Process.Signal(syscall.SIGCONT) // a paused process dies only once it runs
	<-done
}

// Pause freezes the gateway (SIGSTOP) and waits until it is stopped:
// connections are accepted by the kernel but nothing answers, as with a
// hung server. Resume undoes it; Stop and the test's cleanup also work on
// a paused gateway.
func (g *Gateway) Pause() {
	g.t.Helper()
	pid := g.signal(syscall.SIGSTOP)
	// The signal is asynchronous: wait for state T in /proc (Linux).
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			time.Sleep(100 * time.Millisecond) // no /proc: give it a moment
			return
		}
		// "pid (comm) S ...": the state follows the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
			return
		}
	}
	g.t.Fatalf("s3gw: pause: process %d did not stop within 2s", pid)
}

// Resume lets a paused gateway run again (SIGCONT).
func (g *Gateway) Resume() { g.signal(syscall.SIGCONT) }

func (g *Gateway) signal(sig syscall.Signal) int {
	g.t.Helper()
	g.mu.Lock()
	cmd := g.cmd
	g.mu.Unlock()
	if cmd == nil {
		g.t.Fatalf("s3gw: %v: gateway is not running", sig)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		g.t.Fatalf("s3gw: %v: %v", sig, err)
	}
	return cmd.Process.Pid
}

// Restart starts the gateway again on the same port and directory after
// Stop (or stops it first if it is running), and marks (see Mark).
func (g *Gateway) Restart() {
	g.t.Helper()
	g.kill()
	var err error
	for range 50 { // the port may take a moment to become free
		if err = g.start(); err == nil {
			g.Mark()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("s3gw: restart: %v", err)
}

// CreateBucket makes another bucket (a top-level directory of the posix
// backend) and returns its name. Names must be valid S3 bucket names.
func (g *Gateway) CreateBucket(name string) string {
	g.t.Helper()
	if err := os.Mkdir(filepath.Join(g.Dir, name), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		g.t.Fatal(err)
	}
	return name
}

// selfSigned writes a self-signed ECDSA certificate for 127.0.0.1 and
// localhost, valid for a day, and returns the cert and key file paths.
func selfSigned(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "s3gw test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
