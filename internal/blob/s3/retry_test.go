package s3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/testutil/s3gw"
)

// faultProxy forwards to the gateway, but answers the next n[method]
// requests of a method with 503 SlowDown (after reading the body, as S3
// does).
type faultProxy struct {
	mu   sync.Mutex
	fail map[string]int
	next http.Handler
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	inject := p.fail[r.Method] > 0
	if inject {
		p.fail[r.Method]--
	}
	p.mu.Unlock()
	if !inject {
		p.next.ServeHTTP(w, r)
		return
	}
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusServiceUnavailable)
	if r.Method != http.MethodHead {
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
	}
}

func (p *faultProxy) set(method string, n int) {
	p.mu.Lock()
	p.fail[method] = n
	p.mu.Unlock()
}

// TestRetries: 503 SlowDown is retried up to MaxAttempts; a Put is
// retried only when its reader can be rewound.
func TestRetries(t *testing.T) {
	g := s3gw.Start(t)
	target, _ := url.Parse(g.Endpoint)
	p := &faultProxy{fail: map[string]int{}, next: httputil.NewSingleHostReverseProxy(target)}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	cfg := testConfig(g, g.Bucket)
	cfg.Endpoint = srv.URL
	cfg.MaxAttempts = 3
	s := newTestStore(t, cfg)
	ctx := context.Background()
	mustPut(t, s, "r/1", "data", nil)
	delta := func(before map[string]uint64, key string) uint64 { return s.Stats()[key] - before[key] }

	// Two failures, then success on the third try.
	p.set("HEAD", 2)
	before := s.Stats()
	g.Mark()
	if _, err := s.Stat(ctx, "r/1"); err != nil {
		t.Fatalf("Stat after 2 SlowDowns = %v", err)
	}
	if n := delta(before, "HeadObject.requests"); n != 3 {
		t.Errorf("HeadObject requests = %d, want 3", n)
	}
	if n := g.Count("HEAD", 200); n != 1 {
		t.Errorf("gateway saw %d HEADs, want 1", n)
	}

	// Three failures: MaxAttempts used up.
	p.set("HEAD", 3)
	before = s.Stats()
	_, err := s.Stat(ctx, "r/1")
	if !errors.Is(err, blob.ErrUnavailable) || !strings.Contains(err.Error(), "StatusCode: 503") {
		t.Errorf("Stat after 3 SlowDowns = %v, want ErrUnavailable (503)", err)
	}
	if n, e := delta(before, "HeadObject.requests"), delta(before, "HeadObject.errors"); n != 3 || e != 1 {
		t.Errorf("HeadObject requests %d errors %d, want 3 and 1", n, e)
	}

	// A seekable Put body is sent again.
	p.set("PUT", 1)
	before = s.Stats()
	g.Mark()
	if err := s.Put(ctx, "r/2", strings.NewReader("second"), 6, blob.Metadata{"a": "b"}); err != nil {
		t.Fatalf("seekable Put after one SlowDown = %v", err)
	}
	if n := delta(before, "PutObject.requests"); n != 2 {
		t.Errorf("PutObject requests = %d, want 2", n)
	}
	if got := read(t, s, "r/2", 0, -1); got != "second" {
		t.Errorf("r/2 = %q", got)
	}
	// A file (the mail spool) is seekable too.
	f := filepath.Join(t.TempDir(), "spool")
	os.WriteFile(f, []byte("from a file"), 0o600)
	fh, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	p.set("PUT", 1)
	if err := s.Put(ctx, "r/file", fh, 11, nil); err != nil {
		t.Fatalf("file Put after one SlowDown = %v", err)
	}
	if got := read(t, s, "r/file", 0, -1); got != "from a file" {
		t.Errorf("r/file = %q", got)
	}

	// So is an unseekable one without a known SHA-256: over plain http
	// it is spooled to a file first.
	p.set("PUT", 1)
	before = s.Stats()
	if err := s.Put(ctx, "r/spooled", iotest.OneByteReader(strings.NewReader("spooled")), 7, nil); err != nil {
		t.Fatalf("spooled Put after one SlowDown = %v", err)
	}
	if n := delta(before, "PutObject.requests"); n != 2 {
		t.Errorf("spooled PutObject requests = %d, want 2", n)
	}
	if got := read(t, s, "r/spooled", 0, -1); got != "spooled" {
		t.Errorf("r/spooled = %q", got)
	}

	// An unseekable one with its SHA-256 known is sent as it is read, so
	// it is not retried: one request, ErrUnavailable, no object.
	p.set("PUT", 1)
	before = s.Stats()
	sum := sha256.Sum256([]byte("third"))
	err = s.Put(ctx, "r/3", iotest.OneByteReader(strings.NewReader("third")), 5, blob.Metadata{MetaSHA256: hex.EncodeToString(sum[:])})
	if !errors.Is(err, blob.ErrUnavailable) {
		t.Errorf("unseekable Put after one SlowDown = %v, want ErrUnavailable", err)
	}
	if n := delta(before, "PutObject.requests"); n != 1 {
		t.Errorf("PutObject requests = %d, want 1", n)
	}
	if _, err := s.Stat(ctx, "r/3"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat(r/3) = %v, want ErrNotFound", err)
	}
}

// TestCredentials: a credentials file works and wins over the
// environment; wrong keys are refused with an error that is not
// ErrUnavailable and does not show the secret.
func TestCredentials(t *testing.T) {
	g := s3gw.Start(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "credentials")
	os.WriteFile(file, []byte("[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong-secret\n\n[bm]\naws_access_key_id = "+
		g.AccessKey+"\naws_secret_access_key = "+g.SecretKey+"\n"), 0o600)
	t.Setenv("AWS_ACCESS_KEY_ID", "env-wrong")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-wrong-secret")
	cfg := testConfig(g, g.Bucket)
	cfg.Credentials = nil
	cfg.CredentialsFile, cfg.CredentialsProfile = file, "bm"
	s := newTestStore(t, cfg)
	mustPut(t, s, "c", "creds", nil)

	cfg.CredentialsProfile = "" // [default]: wrong keys
	_, err := New(context.Background(), cfg, nil)
	if err == nil || errors.Is(err, blob.ErrUnavailable) || strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("New with wrong file keys = %v, want a refusal, not ErrUnavailable, without the secret", err)
	}
	cfg.CredentialsProfile = "nosuch"
	if _, err := New(context.Background(), cfg, nil); err == nil {
		t.Error("New with a missing profile succeeded")
	}
	cfg.CredentialsFile, cfg.CredentialsProfile = filepath.Join(dir, "missing"), ""
	if _, err := New(context.Background(), cfg, nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New with a missing file = %v, want ErrNotExist", err)
	}

	// No file: the environment.
	cfg.CredentialsFile = ""
	if _, err := New(context.Background(), cfg, nil); err == nil || errors.Is(err, blob.ErrUnavailable) {
		t.Errorf("New with wrong env keys = %v, want a refusal", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", g.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", g.SecretKey)
	e := newTestStore(t, cfg)
	if got := read(t, e, "c", 0, -1); got != "creds" {
		t.Errorf("read with env credentials = %q", got)
	}
}
