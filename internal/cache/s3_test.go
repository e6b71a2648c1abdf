package cache_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/blob/s3"
	"github.com/bucketmail/bucketmail/internal/cache"
	"github.com/bucketmail/bucketmail/internal/testutil/s3gw"
)

// ranges records the ranges asked of a real S3 store (the gateway's log
// has no Range header).
type ranges struct {
	blob.Store
	mu  sync.Mutex
	got [][2]int64
}

func (r *ranges) NewRangeReader(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	r.mu.Lock()
	r.got = append(r.got, [2]int64{off, n})
	r.mu.Unlock()
	return r.Store.NewRangeReader(ctx, key, off, n)
}

func read(t *testing.T, s blob.Store, key string, off, n int64) string {
	t.Helper()
	r, err := s.NewRangeReader(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("NewRangeReader(%q, %d, %d): %v", key, off, n, err)
	}
	defer r.Close()
	var b bytes.Buffer
	if _, err := io.Copy(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestS3 runs the cache in front of versitygw and counts the gateway's
// requests: a second whole read, and a read after a write-through Put,
// make no GET; a ranged read on a miss is one ranged GET.
func TestS3(t *testing.T) {
	g := s3gw.Start(t)
	ctx := context.Background()
	st, err := s3.New(ctx, s3.Config{
		Endpoint:       g.Endpoint,
		Region:         g.Region,
		Bucket:         g.Bucket,
		PathStyle:      true,
		Credentials:    credentials.NewStaticCredentialsProvider(g.AccessKey, g.SecretKey, ""),
		ConnectTimeout: time.Second,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	inner := &ranges{Store: st}
	c, err := cache.Open(ctx, cache.Config{Dir: t.TempDir()}, inner, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	msg := strings.Repeat("Subject: hello\r\n\r\nbody line\r\n", 4000) // 116000 bytes
	if err := st.Put(ctx, "a/cold", strings.NewReader(msg), int64(len(msg)), nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "a/part", strings.NewReader(msg), int64(len(msg)), nil); err != nil {
		t.Fatal(err)
	}

	g.Mark()
	if got := read(t, c, "a/cold", 0, -1); got != msg {
		t.Fatalf("first read: %d bytes", len(got))
	}
	if n := g.Count("GET", 200); n != 1 {
		t.Fatalf("first read: %d GETs, want 1: %v", n, g.Requests())
	}
	g.Mark()
	if got := read(t, c, "a/cold", 0, -1); got != msg {
		t.Fatalf("second read: %d bytes", len(got))
	}
	if got := read(t, c, "a/cold", 18, 9); got != "body line" {
		t.Fatalf("ranged hit = %q", got)
	}
	if reqs := g.Requests(); len(reqs) != 0 {
		t.Fatalf("second read made requests: %v", reqs)
	}

	// Write-through: delivered through the cache, read without a GET.
	if err := c.Put(ctx, "a/new", strings.NewReader(msg), int64(len(msg)), blob.Metadata{"uid": "7"}); err != nil {
		t.Fatal(err)
	}
	g.Mark()
	if got := read(t, c, "a/new", 0, -1); got != msg {
		t.Fatalf("read after put: %d bytes", len(got))
	}
	if reqs := g.Requests(); len(reqs) != 0 {
		t.Fatalf("read after write-through made requests: %v", reqs)
	}

	// A part read on a miss asks for the part only.
	g.Mark()
	if got := read(t, c, "a/part", 29000, 1000); got != msg[29000:30000] {
		t.Fatalf("part read: %d bytes", len(got))
	}
	if n := g.Count("GET", 0); n != 1 {
		t.Fatalf("part read: %d GETs, want 1", n)
	}
	inner.mu.Lock()
	got := inner.got
	inner.mu.Unlock()
	if len(got) != 2 || got[0] != [2]int64{0, -1} || got[1] != [2]int64{29000, 1000} {
		t.Fatalf("ranges asked of S3 = %v, want [[0 -1] [29000 1000]]", got)
	}

	// BODY[] as the IMAP engine asks for it, [0, size): one GET, then none.
	g.Mark()
	for range 2 {
		if got := read(t, c, "a/part", 0, int64(len(msg))); got != msg {
			t.Fatalf("BODY[] read: %d bytes", len(got))
		}
	}
	if n := g.Count("GET", 0); n != 1 {
		t.Fatalf("two BODY[] reads: %d GETs, want 1", n)
	}
	s := c.Stats()
	if s.Hits != 4 || s.Misses != 3 || s.Objects != 3 {
		t.Fatalf("stats = %+v", s)
	}
}
