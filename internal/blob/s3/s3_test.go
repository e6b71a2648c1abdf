package s3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/blob/blobtest"
	"github.com/bucketmail/bucketmail/internal/testutil/s3gw"
)

// testConfig is a config for g with short timeouts.
func testConfig(g *s3gw.Gateway, bucket string) Config {
	return Config{
		Endpoint:       g.Endpoint,
		Region:         g.Region,
		Bucket:         bucket,
		PathStyle:      true,
		Credentials:    credentials.NewStaticCredentialsProvider(g.AccessKey, g.SecretKey, ""),
		ConnectTimeout: time.Second,
		IdleTimeout:    5 * time.Second,
		MaxAttempts:    2,
		MaxBackoff:     20 * time.Millisecond,
	}
}

func newTestStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var bucketSeq atomic.Int64

func TestConformance(t *testing.T) {
	g := s3gw.Start(t)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		b := g.CreateBucket(fmt.Sprintf("conf-%d", bucketSeq.Add(1)))
		return newTestStore(t, testConfig(g, b))
	})
}

func TestConformancePrefix(t *testing.T) {
	g := s3gw.Start(t)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		cfg := testConfig(g, g.Bucket)
		cfg.Prefix = fmt.Sprintf("p%d/sub", bucketSeq.Add(1))
		return newTestStore(t, cfg)
	})
}

func mustPut(t *testing.T, s *Store, key, data string, meta blob.Metadata) {
	t.Helper()
	if err := s.Put(context.Background(), key, strings.NewReader(data), int64(len(data)), meta); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func read(t *testing.T, s *Store, key string, off, n int64) string {
	t.Helper()
	r, err := s.NewRangeReader(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("NewRangeReader(%q, %d, %d): %v", key, off, n, err)
	}
	defer r.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, r); err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b.String()
}

// TestRangeOnTheWire checks in the gateway's log that a range read is one
// GET answered 206 (not a whole-object GET cut on the client), a whole read
// one GET answered 200, a read past the end one GET answered 416, and a
// zero-length read one HEAD.
func TestRangeOnTheWire(t *testing.T) {
	g := s3gw.Start(t)
	s := newTestStore(t, testConfig(g, g.Bucket))
	mustPut(t, s, "msg/1", "0123456789abcdefghij", nil)
	cases := []struct {
		off, n int64
		want   string
		method string
		status int
	}{
		{5, 3, "567", "GET", 206},
		{15, -1, "fghij", "GET", 206},
		{0, -1, "0123456789abcdefghij", "GET", 200},
		{25, 5, "", "GET", 416},
		{3, 0, "", "HEAD", 200},
	}
	for _, c := range cases {
		g.Mark()
		if got := read(t, s, "msg/1", c.off, c.n); got != c.want {
			t.Errorf("range(%d, %d) = %q, want %q", c.off, c.n, got, c.want)
		}
		reqs := g.Requests()
		if len(reqs) != 1 || reqs[0].Method != c.method || reqs[0].Status != c.status || reqs[0].Path != "/mail/msg/1" {
			t.Errorf("range(%d, %d): requests %+v, want one %s /mail/msg/1 answered %d", c.off, c.n, reqs, c.method, c.status)
		}
	}
}

// TestPrefix checks where objects land with a key prefix and that List
// works on keys without it, skipping objects that are not this store's.
func TestPrefix(t *testing.T) {
	g := s3gw.Start(t)
	cfg := testConfig(g, g.Bucket)
	cfg.Prefix = "tenant/a/" // trailing slash optional
	s := newTestStore(t, cfg)
	other := testConfig(g, g.Bucket)
	other.Prefix = "tenant/ab"
	o := newTestStore(t, other)
	root := testConfig(g, g.Bucket)
	r := newTestStore(t, root)

	mustPut(t, s, "x/1", "one", nil)
	mustPut(t, s, "x/2", "two", nil)
	mustPut(t, o, "x/3", "other tenant", nil)
	mustPut(t, r, "tenant/a/y", "no prefix", nil)
	// Objects land under the prefix.
	for _, f := range []string{"tenant/a/x/1", "tenant/a/x/2", "tenant/ab/x/3", "tenant/a/y"} {
		if _, err := os.Stat(filepath.Join(g.Dir, g.Bucket, filepath.FromSlash(f))); err != nil {
			t.Errorf("object file %s: %v", f, err)
		}
	}
	// A foreign object under the prefix whose name is no valid key.
	if err := os.WriteFile(filepath.Join(g.Dir, g.Bucket, "tenant", "a", "bad name"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := s.List(context.Background(), "", func(a blob.Attrs) error {
		got = append(got, fmt.Sprintf("%s:%d", a.Key, a.Size))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// "tenant/a/y" was written without prefix by r: to s it is key "y".
	if want := "x/1:3 x/2:3 y:9"; strings.Join(got, " ") != want {
		t.Errorf("List = %q, want %q", got, want)
	}
	if got := read(t, s, "y", 0, -1); got != "no prefix" {
		t.Errorf("read y = %q", got)
	}
	if _, err := o.Stat(context.Background(), "x/1"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("other prefix sees x/1: %v", err)
	}
	g.Mark()
	if err := s.Delete(context.Background(), "x/1"); err != nil {
		t.Fatal(err)
	}
	reqs := g.Requests()
	if len(reqs) != 2 || reqs[0].Method != "HEAD" || reqs[1].Method != "DELETE" || reqs[1].Path != "/mail/tenant/a/x/1" {
		t.Errorf("Delete sent %+v, want HEAD then DELETE of /mail/tenant/a/x/1", reqs)
	}
}

// TestPutObject: one PutObject per Put, metadata encoding on the wire,
// size checks.
func TestPutObject(t *testing.T) {
	g := s3gw.Start(t)
	cfg := testConfig(g, g.Bucket)
	s := newTestStore(t, cfg)
	ctx := context.Background()
	meta := blob.Metadata{"plain": "a b", "x-odd": " leading and trailing ", "empty": "", "word": "=?UTF-8?B?eA==?="}
	g.Mark()
	mustPut(t, s, "ab/01", "hello", meta)
	if reqs := g.Requests(); len(reqs) != 1 || reqs[0].Method != "PUT" || reqs[0].Path != "/mail/ab/01" || reqs[0].Status != 200 {
		t.Fatalf("Put sent %+v, want one PUT /mail/ab/01", reqs)
	}
	a, err := s.Stat(ctx, "ab/01")
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != 5 || len(a.Meta) != len(meta) {
		t.Fatalf("Stat = %+v", a)
	}
	for k, v := range meta {
		if a.Meta[k] != v {
			t.Errorf("Meta[%q] = %q, want %q", k, a.Meta[k], v)
		}
	}
	// On the wire: plain values as they are, the others encoded.
	raw, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(g.Bucket), Key: aws.String("ab/01")})
	if err != nil {
		t.Fatal(err)
	}
	wantRaw := map[string]string{
		"plain": "a b",
		"x-odd": "=?UTF-8?B?IGxlYWRpbmcgYW5kIHRyYWlsaW5nIA==?=",
		"empty": "=?UTF-8?B??=",
		"word":  "=?UTF-8?B?PT9VVEYtOD9CP2VBPT0/PQ==?=",
	}
	if fmt.Sprint(raw.Metadata) != fmt.Sprint(wantRaw) {
		t.Errorf("raw metadata = %q, want %q", raw.Metadata, wantRaw)
	}
	if got := read(t, s, "ab/01", 1, 3); got != "ell" {
		t.Errorf("range = %q", got)
	}
	// Size checks before anything reaches the server.
	for _, c := range []struct {
		data string
		size int64
	}{{"short", 10}, {"longer", 3}, {"", 1}, {"x", 0}} {
		err := s.Put(ctx, "ab/sm", strings.NewReader(c.data), c.size, nil)
		if !errors.Is(err, blob.ErrSizeMismatch) {
			t.Errorf("Put(%q, size %d) = %v, want ErrSizeMismatch", c.data, c.size, err)
		}
	}
	if _, err := s.Stat(ctx, "ab/sm"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("after size mismatches Stat = %v, want ErrNotFound", err)
	}
	// 256 metadata keys (2048 bytes in all) pass blob.ValidateMetadata but
	// not S3's 8 KiB request header limit.
	many := blob.Metadata{}
	for i := range 256 {
		many[fmt.Sprintf("k%05d", i)] = "vv"
	}
	err = s.Put(ctx, "ab/many", strings.NewReader("x"), 1, many)
	if !errors.Is(err, blob.ErrInvalidMetadata) {
		t.Errorf("Put with 256 metadata keys = %v, want ErrInvalidMetadata", err)
	}
	// The three mismatches that needed a read (all but size 0) started a
	// PutObject, but the body failed before anything was flushed to the
	// server. (Requests are not checked: the gateway may close the
	// connection on the oversized header before answering, and the SDK
	// then retries.)
	st := s.Stats()
	if st["PutObject.ops"] != 5 || st["PutObject.errors"] != 4 {
		t.Errorf("PutObject stats = ops %d errors %d, want 5 4", st["PutObject.ops"], st["PutObject.errors"])
	}
	for _, r := range g.Requests() {
		if r.Path == "/mail/ab/sm" && r.Method == "PUT" {
			t.Errorf("a size mismatch reached the server: %+v", r)
		}
	}
}

// cutProxy forwards TCP connections to target, passing at most limit
// bytes from the client before closing both sides: a request body cut
// short on the wire.
func cutProxy(t *testing.T, target string, limit int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(c, u)
				io.CopyN(u, c, limit)
				// Let the server see the short body end with the
				// connection, as when a client dies mid-upload.
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestCutShortPutNotStored: a PutObject whose connection closes mid-body
// leaves no object, in every way Put sends a body over plain http (known
// SHA-256, seekable reader hashed by the SDK, unseekable reader spooled).
// versitygw 1.8.0 stores a truncated unverified body; these bodies are
// all signed with their SHA-256, which the gateway checks.
func TestCutShortPutNotStored(t *testing.T) {
	g := s3gw.Start(t)
	direct := newTestStore(t, testConfig(g, g.Bucket))
	u, _ := url.Parse(g.Endpoint)
	cfg := testConfig(g, g.Bucket)
	cfg.Endpoint = cutProxy(t, u.Host, 300<<10)
	cfg.MaxAttempts = 1
	cfg.SpoolDir = t.TempDir()
	s := newTestStore(t, cfg)
	const size = 1 << 20
	data := strings.Repeat("0123456789abcdef", size/16)
	sum := sha256.Sum256([]byte(data))
	cases := []struct {
		name string
		r    io.Reader
		meta blob.Metadata
	}{
		{"known-hash", iotest.HalfReader(strings.NewReader(data)), blob.Metadata{MetaSHA256: hex.EncodeToString(sum[:])}},
		{"seekable", strings.NewReader(data), nil},
		{"spooled", iotest.HalfReader(strings.NewReader(data)), nil},
	}
	for _, c := range cases {
		g.Mark()
		err := s.Put(context.Background(), "cut/"+c.name, c.r, size, c.meta)
		if !errors.Is(err, blob.ErrUnavailable) {
			t.Errorf("%s: Put through a cutting proxy = %v, want ErrUnavailable", c.name, err)
		}
		// The client sees the connection drop before the gateway has
		// finished with the request: wait for its log line, so that the
		// Stat below comes after whatever the gateway did with the body.
		var reqs []s3gw.Request
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if reqs = g.Requests(); len(reqs) > 0 {
				break
			}
		}
		if len(reqs) != 1 || reqs[0].Method != "PUT" || reqs[0].Status == 200 {
			t.Errorf("%s: gateway saw %+v, want one failed PUT", c.name, reqs)
		}
		if _, err := direct.Stat(context.Background(), "cut/"+c.name); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("%s: after the cut Stat = %v, want ErrNotFound", c.name, err)
		}
	}
	if ents, err := os.ReadDir(cfg.SpoolDir); err != nil || len(ents) != 0 {
		t.Errorf("spool dir holds %v (%v), want nothing", ents, err)
	}
	// The same three ways without the proxy: one PUT each, stored whole.
	for _, c := range []struct {
		name string
		r    io.Reader
		meta blob.Metadata
	}{
		{"known-hash", iotest.HalfReader(strings.NewReader(data)), blob.Metadata{MetaSHA256: hex.EncodeToString(sum[:])}},
		{"seekable", strings.NewReader(data), nil},
		{"spooled", iotest.HalfReader(strings.NewReader(data)), nil},
	} {
		g.Mark()
		if err := direct.Put(context.Background(), "ok/"+c.name, c.r, size, c.meta); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if reqs := g.Requests(); len(reqs) != 1 || reqs[0].Method != "PUT" || reqs[0].Status != 200 {
			t.Errorf("%s: gateway saw %+v, want one PUT answered 200", c.name, reqs)
		}
		if got := read(t, direct, "ok/"+c.name, 0, -1); got != data {
			t.Errorf("%s: read back %d bytes, want %d", c.name, len(got), size)
		}
	}
	// A wrong SHA-256 fails safe: the server refuses the object.
	err := direct.Put(context.Background(), "bad-hash", strings.NewReader("abc"), 3, blob.Metadata{MetaSHA256: hex.EncodeToString(sum[:])})
	if err == nil || errors.Is(err, blob.ErrUnavailable) {
		t.Errorf("Put with a wrong sha256 = %v, want a refusal", err)
	}
	if _, err := direct.Stat(context.Background(), "bad-hash"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("after a wrong sha256 Stat = %v, want ErrNotFound", err)
	}
}

var errBroken = errors.New("broken reader")

// TestUnreachable: a closed port gives ErrUnavailable from every
// operation, fast, after MaxAttempts tries each.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := Config{
		Endpoint:       "http://" + addr,
		Bucket:         "mail",
		PathStyle:      true,
		Credentials:    credentials.NewStaticCredentialsProvider("k", "s", ""),
		ConnectTimeout: 200 * time.Millisecond,
		MaxAttempts:    2,
		MaxBackoff:     10 * time.Millisecond,
	}
	ctx := context.Background()
	start := time.Now()
	if _, err := New(ctx, cfg, nil); !errors.Is(err, blob.ErrUnavailable) {
		t.Fatalf("New with bucket check = %v, want ErrUnavailable", err)
	}
	cfg.SkipBucketCheck = true
	s := newTestStore(t, cfg)
	ops := map[string]func() error{
		"Put":  func() error { return s.Put(ctx, "a/b", strings.NewReader("data"), 4, nil) },
		"Get":  func() error { _, err := s.NewRangeReader(ctx, "a/b", 0, -1); return err },
		"Stat": func() error { _, err := s.Stat(ctx, "a/b"); return err },
		"Del":  func() error { return s.Delete(ctx, "a/b") },
		"List": func() error { return s.List(ctx, "a/", func(blob.Attrs) error { return nil }) },
	}
	for name, op := range ops {
		err := op()
		if !errors.Is(err, blob.ErrUnavailable) || !blob.IsTemporary(err) || errors.Is(err, blob.ErrNotFound) {
			t.Errorf("%s = %v, want ErrUnavailable", name, err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v, want well under 3s", d)
	}
	st := s.Stats()
	for _, op := range []string{"PutObject", "GetObject", "HeadObject", "ListObjectsV2"} {
		if st[op+".requests"] != 2*st[op+".ops"] || st[op+".ops"] == 0 || st[op+".errors"] != st[op+".ops"] {
			t.Errorf("%s: ops %d requests %d errors %d, want 2 requests per op, all failed",
				op, st[op+".ops"], st[op+".requests"], st[op+".errors"])
		}
	}
	if st["DeleteObject.ops"] != 0 {
		t.Errorf("DeleteObject sent after the HEAD failed")
	}
}

// TestStalledServer: a server that accepts and never answers fails the
// request after IdleTimeout with ErrUnavailable.
func TestStalledServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // read nothing, answer nothing
		}
	}()
	cfg := Config{
		Endpoint:        "http://" + l.Addr().String(),
		Bucket:          "mail",
		PathStyle:       true,
		Credentials:     credentials.NewStaticCredentialsProvider("k", "s", ""),
		IdleTimeout:     300 * time.Millisecond,
		MaxAttempts:     1,
		SkipBucketCheck: true,
	}
	s := newTestStore(t, cfg)
	start := time.Now()
	_, err = s.Stat(context.Background(), "a")
	if d := time.Since(start); !errors.Is(err, blob.ErrUnavailable) || d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("Stat on a silent server = %v after %v, want ErrUnavailable after about 300ms", err, d)
	}
	// A Put whose body the server never reads stalls once the socket
	// buffers are full, and fails the same way.
	start = time.Now()
	err = s.Put(context.Background(), "a", io.LimitReader(zeros{}, 64<<20), 64<<20, nil)
	if d := time.Since(start); !errors.Is(err, blob.ErrUnavailable) || d > 5*time.Second {
		t.Fatalf("Put to a silent server = %v after %v, want ErrUnavailable", err, d)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestStopRestart: while the gateway is down operations fail with
// ErrUnavailable; after a restart on the same port the store works again.
func TestStopRestart(t *testing.T) {
	g := s3gw.Start(t)
	s := newTestStore(t, testConfig(g, g.Bucket))
	mustPut(t, s, "keep", "kept", nil)
	g.Stop()
	if _, err := s.Stat(context.Background(), "keep"); !errors.Is(err, blob.ErrUnavailable) {
		t.Fatalf("Stat while stopped = %v, want ErrUnavailable", err)
	}
	if err := s.Put(context.Background(), "new", strings.NewReader("x"), 1, nil); !errors.Is(err, blob.ErrUnavailable) {
		t.Fatalf("Put while stopped = %v, want ErrUnavailable", err)
	}
	g.Restart()
	if got := read(t, s, "keep", 0, -1); got != "kept" {
		t.Fatalf("after restart read %q", got)
	}
	mustPut(t, s, "new", "x", nil)
}

// TestTLS: over https the body goes out aws-chunked with a trailing
// CRC32, streamed from an unseekable reader, in one PUT; the certificate
// is checked against CAFile, and refused without it.
func TestTLS(t *testing.T) {
	g := s3gw.StartTLS(t)
	cfg := testConfig(g, g.Bucket)
	if _, err := New(context.Background(), cfg, nil); err == nil || errors.Is(err, blob.ErrUnavailable) {
		t.Fatalf("New without the CA = %v, want a certificate error that is not ErrUnavailable", err)
	}
	insecure := cfg
	insecure.InsecureSkipVerify = true
	newTestStore(t, insecure)
	cfg.CAFile = g.CAFile
	ctx := context.Background()
	const size = 3<<20 + 17
	data := strings.Repeat("0123456789abcdef", size/16+1)[:size]
	s := newTestStore(t, cfg)
	g.Mark()
	if err := s.Put(ctx, "tls/big", iotest.HalfReader(strings.NewReader(data)), size, blob.Metadata{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if reqs := g.Requests(); len(reqs) != 1 || reqs[0].Method != "PUT" || reqs[0].Status != 200 {
		t.Errorf("Put sent %+v, want one PUT answered 200", reqs)
	}
	if got := read(t, s, "tls/big", 0, -1); got != data {
		t.Fatalf("read back %d bytes, want %d", len(got), size)
	}
	if got := read(t, s, "tls/big", size-5, 100); got != data[size-5:] {
		t.Fatalf("tail = %q", got)
	}
	if a, err := s.Stat(ctx, "tls/big"); err != nil || a.Meta["k"] != "v" || a.Size != size {
		t.Fatalf("Stat = %+v, %v", a, err)
	}
	// With the SHA-256 known the payload is signed with it instead.
	sum := sha256.Sum256([]byte(data))
	g.Mark()
	if err := s.Put(ctx, "tls/signed", iotest.HalfReader(strings.NewReader(data)), size, blob.Metadata{MetaSHA256: hex.EncodeToString(sum[:])}); err != nil {
		t.Fatal(err)
	}
	if reqs := g.Requests(); len(reqs) != 1 || reqs[0].Method != "PUT" || reqs[0].Status != 200 {
		t.Errorf("signed Put sent %+v, want one PUT answered 200", reqs)
	}
	if got := read(t, s, "tls/signed", 0, -1); got != data {
		t.Fatalf("signed: read back %d bytes, want %d", len(got), size)
	}
	if err := s.Put(ctx, "tls/wrong", strings.NewReader("abc"), 3, blob.Metadata{MetaSHA256: hex.EncodeToString(sum[:])}); err == nil {
		t.Errorf("Put with a wrong sha256 over https succeeded")
	}
	if _, err := s.Stat(ctx, "tls/wrong"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("after a wrong sha256 over https Stat = %v, want ErrNotFound", err)
	}
}

// TestConformanceTLS runs the suite over https: an aws-chunked body cut
// short lacks its trailing checksum and is not stored.
func TestConformanceTLS(t *testing.T) {
	g := s3gw.StartTLS(t)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		cfg := testConfig(g, g.CreateBucket(fmt.Sprintf("tls-%d", bucketSeq.Add(1))))
		cfg.CAFile = g.CAFile
		return newTestStore(t, cfg)
	})
}

// TestSlowReader: a caller that pauses between Reads longer than
// IdleTimeout (an IMAP client draining a FETCH slowly) still gets the
// whole object.
func TestSlowReader(t *testing.T) {
	g := s3gw.Start(t)
	cfg := testConfig(g, g.Bucket)
	cfg.IdleTimeout = 200 * time.Millisecond
	s := newTestStore(t, cfg)
	data := strings.Repeat("slow", 1<<18) // 1 MiB
	mustPut(t, s, "slow", data, nil)
	r, err := s.NewRangeReader(context.Background(), "slow", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got strings.Builder
	buf := make([]byte, 256<<10)
	for i := 0; ; i++ {
		if i > 0 && i <= 3 {
			time.Sleep(400 * time.Millisecond)
		}
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got.Len(), err)
		}
	}
	if got.String() != data {
		t.Fatalf("read %d bytes, want %d", got.Len(), len(data))
	}
}
