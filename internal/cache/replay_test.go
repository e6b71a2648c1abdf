package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
)

// TestStatsScripted checks every Stats number after a scripted replay.
func TestStatsScripted(t *testing.T) {
	inner := newInner(t)
	c := openCache(t, Config{Dir: t.TempDir()}, inner)
	putString(t, inner.Store, "cold", "0123456789")
	for _, k := range []string{"a", "b", "c", "d"} {
		putString(t, c, k, k+k+k) // 3 bytes + 21 of header = 24 on disk
	}
	for _, r := range []struct {
		key      string
		off, len int64
	}{
		{"a", 0, -1}, {"a", 1, 1}, {"a", 0, -1}, {"b", 0, -1}, {"b", 0, 2},
		{"c", 0, -1}, {"a", 0, -1}, {"a", 2, -1},
		{"cold", 2, 3}, {"cold", 0, -1}, {"cold", 0, -1},
	} {
		readAll(t, c, r.key, r.off, r.len)
	}
	got := c.Stats()
	want := Stats{
		Hits: 9, Misses: 2, HitRatio: 9.0 / 11, Bytes: 4*24 + 34, MaxBytes: 1 << 30, Objects: 5,
		Histogram: []Bucket{
			{Min: 0, Max: 0, Objects: 1, Bytes: 24}, // d
			{Min: 1, Max: 1, Objects: 1, Bytes: 24}, // c
			{Min: 2, Max: 2, Objects: 2, Bytes: 58}, // b, cold (one fill + one hit)
			{Min: 3, Max: 4, Objects: 0, Bytes: 0},  //
			{Min: 5, Max: 8, Objects: 1, Bytes: 24}, // a
		},
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("Stats =\n%+v\nwant\n%+v", got, want)
	}
}

// TestCorpusReplay measures the hit ratio on the corpus: every message is
// read once and every tenth again. Its log is the closing note's number
// (go test -run TestCorpusReplay -v ./internal/cache).
//
//   - cold: the cache starts empty (say after a purge or on a new host),
//     messages were delivered before it existed: the first reads miss.
//   - delivered: messages are delivered through the cache (write-through)
//     and read later; the corpus fits in the default cap.
func TestCorpusReplay(t *testing.T) {
	type msg struct {
		key  string
		size int
	}
	var msgs []msg
	var total int64
	// The inner store is in memory: this measures the cache, and a
	// filesystem store's fsyncs would make the test slow for nothing.
	inner := &counting{Store: newMemStore()}
	corpus.Walk(t, "", func(m corpus.Message) {
		k := fmt.Sprintf("m/%05d", len(msgs))
		if err := inner.Store.Put(context.Background(), k, bytes.NewReader(m.Raw), int64(len(m.Raw)), nil); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, msg{k, len(m.Raw)})
		total += int64(len(m.Raw))
	})
	n := len(msgs)
	again := (n + 9) / 10
	replay := func(c *Cache) {
		for _, m := range msgs {
			r, err := c.NewRangeReader(context.Background(), m.key, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			if k, err := io.Copy(io.Discard, r); err != nil || k != int64(m.size) {
				t.Fatalf("%s: read %d bytes (%v), want %d", m.key, k, err, m.size)
			}
			r.Close()
		}
		for i := 0; i < n; i += 10 {
			r, err := c.NewRangeReader(context.Background(), msgs[i].key, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, r)
			r.Close()
		}
	}
	var report strings.Builder
	fmt.Fprintf(&report, "corpus: %d messages, %d bytes; replay reads each once and %d again\n", n, total, again)

	t.Run("cold", func(t *testing.T) {
		c := openCache(t, Config{Dir: t.TempDir()}, inner)
		before := len(inner.calls())
		replay(c)
		s := c.Stats()
		if s.Misses != uint64(n) || s.Hits != uint64(again) || len(inner.calls())-before != n {
			t.Fatalf("cold: stats %+v, inner reads %d; want %d misses, %d hits", s, len(inner.calls())-before, n, again)
		}
		fmt.Fprintf(&report, "cold cache, cap 1 GiB:           hit ratio %5.1f%% (%d hits, %d misses)\n", 100*s.HitRatio, s.Hits, s.Misses)
	})
	t.Run("delivered", func(t *testing.T) {
		c := openCache(t, Config{Dir: t.TempDir()}, inner)
		for _, m := range msgs { // deliver through the cache
			r, err := inner.Store.NewRangeReader(context.Background(), m.key, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Put(context.Background(), m.key, r, int64(m.size), nil)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		before := len(inner.calls())
		replay(c)
		s := c.Stats()
		if s.Hits != uint64(n+again) || s.Misses != 0 || len(inner.calls()) != before {
			t.Fatalf("all fit: stats %+v, want %d hits and no inner read", s, n+again)
		}
		fmt.Fprintf(&report, "delivered through it, cap 1 GiB: hit ratio %5.1f%% (%d hits, %d misses)\n", 100*s.HitRatio, s.Hits, s.Misses)
	})
	t.Log("\n" + report.String())
}

// memStore is a minimal blob.Store in memory for the replay measurement
// (Put, NewRangeReader; the conformance suite is not its business).
type memStore struct {
	blob.Store // nil: other methods are not used
	mu         sync.Mutex
	m          map[string][]byte
}

func newMemStore() *memStore { return &memStore{m: make(map[string][]byte)} }

func (s *memStore) Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.Metadata) error {
	var b bytes.Buffer
	if n, err := b.ReadFrom(io.LimitReader(r, size+1)); err != nil {
		return err
	} else if n != size {
		return blob.ErrSizeMismatch
	}
	s.mu.Lock()
	s.m[key] = b.Bytes()
	s.mu.Unlock()
	return nil
}

func (s *memStore) NewRangeReader(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.mu.Lock()
	b, ok := s.m[key]
	s.mu.Unlock()
	if !ok {
		return nil, blob.ErrNotFound
	}
	b = b[min(off, int64(len(b))):]
	if n >= 0 && n < int64(len(b)) {
		b = b[:n]
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}
