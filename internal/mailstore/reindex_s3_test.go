package mailstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/bucketmail/bucketmail/internal/blob"
	blobs3 "github.com/bucketmail/bucketmail/internal/blob/s3"
	"github.com/bucketmail/bucketmail/internal/journal"
	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
	"github.com/bucketmail/bucketmail/internal/testutil/s3gw"
)

// TestReindexScenarioS3 is the reindex scenario against versitygw
// with the S3 store: deliver the corpus (a slice with -short or -race),
// set flags and keywords, COPY, MOVE, EXPUNGE,
// rename a mailbox to a non-ASCII name, wait one flush interval, stop,
// delete the whole data dir, reindex, reopen, and compare every mailbox,
// UID, UIDVALIDITY, flag and INTERNALDATE with the state before. The
// gateway must see no GET of a message object during the reindex.
func TestReindexScenarioS3(t *testing.T) {
	g := s3gw.Start(t)
	bucket := g.CreateBucket("reindex")
	st, err := blobs3.New(context.Background(), blobs3.Config{
		Endpoint: g.Endpoint, Region: g.Region, Bucket: bucket, PathStyle: true,
		Credentials:    credentials.NewStaticCredentialsProvider(g.AccessKey, g.SecretKey, ""),
		ConnectTimeout: time.Second, IdleTimeout: 5 * time.Second, MaxAttempts: 3, MaxBackoff: 50 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const interval = 200 * time.Millisecond
	rec := &readRecorder{Store: st}
	e := newJEnv(t, rec, interval, DefaultSnapshotAfter)
	ctx := context.Background()
	const account = "zoë@example.org"
	a := e.account(account)

	// The corpus without its large files; a slice with -short or under
	// the race detector (REINDEX_FULL_CORPUS=1 takes it all anyway;
	// REINDEX_FULL_CORPUS=all takes the large files too, for measuring).
	limit := 1 << 30
	if (testing.Short() || raceEnabled) && os.Getenv("REINDEX_FULL_CORPUS") == "" {
		limit = 120
	}
	var msgs [][]byte
	corpus.Walk(t, "", func(m corpus.Message) {
		if len(msgs) < limit && (!corpus.Large(m.ID) || os.Getenv("REINDEX_FULL_CORPUS") == "all") {
			msgs = append(msgs, m.Raw)
		}
	})
	if len(msgs) < 20 {
		t.Fatalf("corpus has %d messages", len(msgs))
	}
	deliverStart := time.Now()
	beforeDeliver := st.Stats()
	for i, raw := range msgs {
		in, err := e.s.Spool(ctx, bytes.NewReader(raw), true, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Append(ctx, "INBOX", in, nil, msgDate(i)); err != nil {
			t.Fatal(err)
		}
		in.Close()
	}
	deliverStats := diffStats(beforeDeliver, st.Stats())
	deliverTime := time.Since(deliverStart)
	mutate(t, a)
	before := dumpAccount(t, a)
	time.Sleep(2 * interval) // one flush interval, and then some
	e.crash()

	e.open()
	g.Mark()
	rec.reset()
	beforeReindex := st.Stats()
	start := time.Now()
	rs, err := e.s.Reindex(ctx, account, false)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	reqs := g.Requests()
	rstats := diffStats(beforeReindex, st.Stats())
	var msgGets int
	byMethod := map[string]int{}
	for _, r := range reqs {
		byMethod[r.Method]++
		if r.Method == "GET" && strings.Contains(r.Path, "/msg/") {
			msgGets++
		}
	}
	if msgGets != 0 || rs.Gets != 0 || rs.Heads != 0 || len(rs.NewValidity) != 0 {
		t.Errorf("reindex made %d GETs of message objects; stats %+v", msgGets, rs)
	}
	// The same, counted in process (the gateway's log is parsed, and a
	// line it garbles would hide a GET): the store read no message object.
	reads := rec.keys()
	for _, k := range reads {
		if strings.Contains(k, "/msg/") {
			t.Errorf("reindex read message object %s", k)
		}
	}
	if len(reads) == 0 {
		t.Errorf("reindex read no object at all; the journal and snapshot must have been read")
	}
	after := dumpAccount(t, e.account(account))
	if after != before {
		t.Errorf("state after reindex differs:\n--- before\n%s--- after\n%s", before, after)
	}
	if n := strings.Count(before, "  uid="); n != len(msgs) {
		t.Errorf("%d messages before the rebuild, want %d", n, len(msgs))
	}
	if !testing.Short() && !raceEnabled {
		// The worst case, for the record: the journal and snapshots lost
		// too; every object is placed from its metadata and re-parsed.
		prefix := accountPrefix(account)
		var keys []string
		st.List(ctx, prefix, func(at blob.Attrs) error {
			if _, _, ok := journal.ParseKey(prefix, at.Key); ok {
				keys = append(keys, at.Key)
			}
			return nil
		})
		for _, k := range keys {
			st.Delete(ctx, k)
		}
		before := st.Stats()
		start := time.Now()
		ws, err := e.s.Reindex(ctx, account, true)
		if err != nil {
			t.Fatal(err)
		}
		if ws.Placed != ws.Objects || ws.Gets != ws.Objects || ws.Messages != ws.Objects || len(ws.NewValidity) != 0 {
			t.Errorf("reindex without a journal: %+v", ws)
		}
		t.Logf("reindex without journal or snapshot (dry run): %d objects placed from metadata in %s, S3 requests %s",
			ws.Placed, time.Since(start).Round(time.Millisecond), fmtStats(diffStats(before, st.Stats())))
	}
	t.Logf("delivered %d messages in %s; S3 requests per delivered message: %s", len(msgs),
		deliverTime.Round(time.Millisecond), perMessage(deliverStats, len(msgs)))
	t.Logf("reindex of %d messages (%d objects, snapshot %d, %d journal objects): %s, S3 requests %s, gateway saw %v",
		rs.Messages, rs.Objects, rs.Snapshot, rs.Journals, took.Round(time.Millisecond), fmtStats(rstats), byMethod)
}

func diffStats(a, b map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range b {
		if strings.HasSuffix(k, ".requests") && v > a[k] {
			out[strings.TrimSuffix(k, ".requests")] = v - a[k]
		}
	}
	return out
}

func fmtStats(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func perMessage(m map[string]uint64, n int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%.2f", k, float64(m[k])/float64(n)))
	}
	return strings.Join(parts, " ")
}

// readRecorder is the blob store the mail store sees in the reindex
// scenario: it records the key of every read.
type readRecorder struct {
	blob.Store
	mu    sync.Mutex
	reads []string
}

func (r *readRecorder) NewRangeReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	r.mu.Lock()
	r.reads = append(r.reads, key)
	r.mu.Unlock()
	return r.Store.NewRangeReader(ctx, key, offset, length)
}

func (r *readRecorder) reset() {
	r.mu.Lock()
	r.reads = nil
	r.mu.Unlock()
}

func (r *readRecorder) keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reads...)
}
