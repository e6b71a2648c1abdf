package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/blob/s3"
	"github.com/bucketmail/bucketmail/internal/journal"
	"github.com/bucketmail/bucketmail/internal/testutil/s3gw"
)

// s3Setup starts versitygw, puts its credentials in the environment (the
// binary reads $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY) and returns the
// gateway, the [s3] config section for serve (short timeouts, so a
// delivery fails in about a second while the gateway is down) and the
// --s3-* flags for the other subcommands.
func s3Setup(t *testing.T) (g *s3gw.Gateway, section string, flags []string) {
	g = s3gw.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", g.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", g.SecretKey)
	section = fmt.Sprintf(`[s3]
endpoint = %q
bucket = %q
region = %q
path_style = true
connect_timeout = "1s"
idle_timeout = "2s"
max_attempts = 2
max_backoff = "100ms"
`, g.Endpoint, g.Bucket, g.Region)
	flags = []string{"--s3-endpoint", g.Endpoint, "--s3-bucket", g.Bucket, "--s3-region", g.Region, "--s3-path-style"}
	return g, section, flags
}

// bucketStore opens the gateway's bucket directly, as the test's view of
// what is really stored.
func bucketStore(t *testing.T, g *s3gw.Gateway) *s3.Store {
	t.Helper()
	st, err := s3.New(context.Background(), s3.Config{
		Endpoint: g.Endpoint, Region: g.Region, Bucket: g.Bucket, PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(g.AccessKey, g.SecretKey, ""),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// messageObjects returns the message objects in the bucket ("…/msg/…"),
// with their metadata.
func messageObjects(t *testing.T, st *s3.Store) []blob.Attrs {
	t.Helper()
	ctx := context.Background()
	var out []blob.Attrs
	err := st.List(ctx, "", func(a blob.Attrs) error {
		if path.Base(path.Dir(a.Key)) == "msg" {
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range out {
		a, err := st.Stat(ctx, out[i].Key)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = a
	}
	return out
}

// lmtpTry delivers one message to one recipient and returns the reply to
// the end of data (or to RCPT if it was refused). Safe in a goroutine: it
// reports failures as errors.
func lmtpTry(addr, rcpt, data string) (string, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	read := func() (string, error) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			line = strings.TrimRight(line, "\r\n")
			if len(line) < 4 || line[3] != '-' {
				return line, nil
			}
		}
	}
	steps := []struct{ send, want string }{
		{"", "220"},
		{"LHLO test.example\r\n", "250"},
		{"MAIL FROM:<carol@example.net>\r\n", "250"},
		{"RCPT TO:<" + rcpt + ">\r\n", "250"},
		{"DATA\r\n", "354"},
	}
	for _, s := range steps {
		if s.send != "" {
			if _, err := conn.Write([]byte(s.send)); err != nil {
				return "", err
			}
		}
		l, err := read()
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(l, s.want) {
			return l, nil
		}
	}
	if _, err := conn.Write([]byte(data + ".\r\n")); err != nil {
		return "", err
	}
	l, err := read()
	conn.Write([]byte("QUIT\r\n"))
	return l, err
}

func outageMsg(subject string) string {
	return "From: carol@example.net\r\nTo: alice@example.org\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n"
}

// imapLogin logs alice in and selects INBOX.
func imapLogin(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	ic, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ic.Close() })
	if err := ic.Login("alice@example.org", "pw").Wait(); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT: %v", err)
	}
	return ic
}

// fetchAll returns subject -> BODY[] of every message in the selected
// mailbox.
func fetchAll(t *testing.T, ic *imapclient.Client) map[string]string {
	t.Helper()
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := ic.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
		Envelope: true, BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		t.Fatalf("FETCH 1:*: %v", err)
	}
	out := map[string]string{}
	for _, m := range msgs {
		out[m.Envelope.Subject] = string(m.FindBodySection(section))
	}
	return out
}

type lmtpResult struct {
	subject string
	reply   string
	err     error
	took    time.Duration
	at      time.Time
}

// TestServeS3Outage: serve with its mail in versitygw, LMTP deliveries
// running while the gateway is stopped and restarted. Every reply is 250
// or 451 4.x and comes within seconds; IMAP APPEND during the outage
// answers NO [UNAVAILABLE]; a cached message is still served; the server
// recovers by itself; afterwards every 250'd message (and no other) is in
// INBOX and readable from the bucket (cache emptied), and fsck finds no
// index row pointing at a missing object.
func TestServeS3Outage(t *testing.T) {
	g, section, s3Flags := s3Setup(t)
	data := filepath.Join(t.TempDir(), "data")
	s := startServe(t, data, section)
	imapAddr, lmtpAddr := s.addr("imap"), s.addr("lmtp")
	mustRun(t, "pw\n", append([]string{"user", "add", "alice@example.org", "--password-stdin", "--data-dir", data}, s3Flags...)...)

	if r, err := lmtpTry(lmtpAddr, "alice@example.org", outageMsg("pre")); err != nil || !strings.HasPrefix(r, "250 ") {
		t.Fatalf("delivery before the outage: %q, %v", r, err)
	}
	ic := imapLogin(t, imapAddr)
	section1 := &imap.FetchItemBodySection{Peek: true}
	fetch1 := func() (string, error) {
		msgs, err := ic.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section1}}).Collect()
		if err != nil || len(msgs) != 1 {
			return "", fmt.Errorf("FETCH 1: %v (%d messages)", err, len(msgs))
		}
		return string(msgs[0].FindBodySection(section1)), nil
	}
	pre, err := fetch1()
	if err != nil || !strings.HasSuffix(pre, outageMsg("pre")) {
		t.Fatalf("FETCH before the outage: %q, %v", pre, err)
	}

	var (
		mu   sync.Mutex
		done []lmtpResult
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			d := lmtpResult{subject: fmt.Sprintf("m%03d", i), at: time.Now()}
			d.reply, d.err = lmtpTry(lmtpAddr, "alice@example.org", outageMsg(d.subject))
			d.took = time.Since(d.at)
			mu.Lock()
			done = append(done, d)
			mu.Unlock()
			time.Sleep(30 * time.Millisecond)
		}
	}()
	// waitFor waits until cond holds for the deliveries so far.
	waitFor := func(what string, cond func([]lmtpResult) bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			mu.Lock()
			ok := cond(done)
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("no %s within 30 s; deliveries %+v", what, done)
			}
		}
	}
	count := func(ds []lmtpResult, after time.Time, prefix string) int {
		n := 0
		for _, d := range ds {
			if d.at.After(after) && strings.HasPrefix(d.reply, prefix) {
				n++
			}
		}
		return n
	}
	waitFor("3 deliveries", func(ds []lmtpResult) bool { return count(ds, time.Time{}, "250 ") >= 3 })

	g.Stop()
	stopped := time.Now()
	waitFor("3 deferrals", func(ds []lmtpResult) bool { return count(ds, stopped, "451 4.") >= 3 })

	// IMAP during the outage: APPEND is deferred, the cached message is
	// served.
	msg := outageMsg("appended")
	cmd := ic.Append("INBOX", int64(len(msg)), nil)
	cmd.Write([]byte(msg))
	cmd.Close()
	_, err = cmd.Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeUnavailable {
		t.Errorf("APPEND during the outage = %v, want NO [UNAVAILABLE]", err)
	}
	if got, err := fetch1(); err != nil || got != pre {
		t.Errorf("FETCH of a cached message during the outage = %q, %v; want it served", got, err)
	}

	g.Restart()
	restarted := time.Now()
	waitFor("3 deliveries after the restart", func(ds []lmtpResult) bool { return count(ds, restarted, "250 ") >= 3 })
	close(stop)
	wg.Wait()

	accepted := []string{"pre"}
	deferred := 0
	for _, d := range done {
		switch {
		case d.err != nil:
			t.Errorf("%s: %v after %v", d.subject, d.err, d.took)
		case strings.HasPrefix(d.reply, "250 "):
			accepted = append(accepted, d.subject)
		case strings.HasPrefix(d.reply, "451 4."):
			deferred++
		default:
			t.Errorf("%s: reply %q, want 250 or 451 4.x", d.subject, d.reply)
		}
		if d.took > 5*time.Second {
			t.Errorf("%s: reply %q took %v, want a few seconds at most", d.subject, d.reply, d.took)
		}
	}
	t.Logf("%d deliveries: %d accepted, %d deferred", len(done), len(accepted)-1, deferred)

	// Every accepted message and no other is in INBOX.
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got := fetchAll(t, ic)
	var subjects []string
	for sub := range got {
		subjects = append(subjects, sub)
	}
	sort.Strings(subjects)
	sort.Strings(accepted)
	if !slices.Equal(subjects, accepted) {
		t.Errorf("INBOX holds %q, want the accepted %q", subjects, accepted)
	}
	ic.Logout().Wait()
	s.stop()

	// Every one of them is readable from the bucket itself: restart with
	// the cache thrown away.
	if err := os.RemoveAll(filepath.Join(data, "cache")); err != nil {
		t.Fatal(err)
	}
	st := bucketStore(t, g)
	// One object per accepted message; a deferred delivery whose PUT the
	// gateway completed just as it was killed may leave an orphan (fsck's
	// business), never less.
	if objs := messageObjects(t, st); len(objs) < len(accepted) {
		t.Errorf("bucket holds %d message objects, want at least %d (one per accepted message)", len(objs), len(accepted))
	} else if len(objs) > len(accepted) {
		t.Logf("bucket holds %d message objects for %d accepted messages (orphans of deferred deliveries)", len(objs), len(accepted))
	}
	g.Mark()
	s = startServe(t, data, section)
	ic = imapLogin(t, s.addr("imap"))
	got = fetchAll(t, ic)
	for _, sub := range accepted {
		if !strings.HasSuffix(got[sub], outageMsg(sub)) {
			t.Errorf("%s after the restart without cache: %q", sub, got[sub])
		}
	}
	t.Logf("reading %d messages with an empty cache: %d GETs answered 200, %d answered 206", len(accepted), g.Count("GET", 200), g.Count("GET", 206))
	if n := g.Count("GET", 0); n < len(accepted) {
		t.Errorf("reading %d messages with an empty cache made %d GETs, want at least one each", len(accepted), n)
	}
	ic.Logout().Wait()
	s.stop()
	out, errOut, code := runBin(t, "", append([]string{"fsck", "--data-dir", data}, s3Flags...)...)
	if code != 0 || !strings.Contains(out, "; 0 missing;") {
		t.Errorf("fsck: exit %d\n%s%s", code, out, errOut)
	}
}

// TestFsckS3: an object deleted from the bucket behind the index and an
// object no row refers to. fsck reports both (the orphan only past the
// grace period), --repair deletes the orphan and still reports the
// missing object with exit status 1. FETCH of the message whose object is
// missing answers NO; the others are still served on the same connection.
func TestFsckS3(t *testing.T) {
	g, section, s3Flags := s3Setup(t)
	data := filepath.Join(t.TempDir(), "data")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	s := startServe(t, data, section, "--metrics-listen", metricsAddr)
	mustRun(t, "pw\n", append([]string{"user", "add", "alice@example.org", "--password-stdin", "--data-dir", data}, s3Flags...)...)
	lmtpAddr := s.addr("lmtp")
	puts := func() float64 {
		t.Helper()
		return scrapeMetric(t, metricsAddr, `bucketmail_s3_requests_total{operation="PutObject"}`)
	}
	putsBefore := puts()
	for _, sub := range []string{"f1", "f2", "f3"} {
		if r, err := lmtpTry(lmtpAddr, "alice@example.org", outageMsg(sub)); err != nil || !strings.HasPrefix(r, "250 ") {
			t.Fatalf("delivery %s: %q, %v", sub, r, err)
		}
	}
	// /metrics has the S3 store's own request counters: one PUT per
	// delivered message (the journal is written later, DESIGN §3).
	if got := puts() - putsBefore; got != 3 {
		t.Errorf("bucketmail_s3_requests_total{operation=\"PutObject\"} grew by %v over 3 deliveries, want 3", got)
	}
	s.stop()
	// serve logs its S3 request counters when it stops.
	st3 := s.waitLog("s3 requests", func(m map[string]any) bool { return m["msg"] == "s3 requests" })
	if n, _ := st3["PutObject.ops"].(float64); n < 3 {
		t.Errorf("s3 requests log line %v: PutObject.ops %v, want at least one per delivery (3)", st3, st3["PutObject.ops"])
	}
	// The S3 secret (from the environment) is never logged.
	s.mu.Lock()
	for _, m := range s.lines {
		if b, _ := json.Marshal(m); strings.Contains(string(b), g.SecretKey) {
			t.Errorf("the S3 secret key is in the log: %s", b)
		}
	}
	s.mu.Unlock()
	fsck := func(args ...string) (string, int) {
		out, errOut, code := runBin(t, "", append(append([]string{"fsck", "--data-dir", data}, s3Flags...), args...)...)
		t.Logf("fsck %q: exit %d\n%s%s", args, code, out, errOut)
		if strings.Contains(out+errOut, g.SecretKey) {
			t.Errorf("fsck printed the S3 secret key")
		}
		return out, code
	}
	if out, code := fsck(); code != 0 || !strings.HasSuffix(out, "fsck: 1 accounts, 3 objects referenced by the index checked; 0 missing; 0 orphans older than 24h0m0s (0 deleted); 0 accounts not in the index\n") {
		t.Fatalf("fsck on a sound store: exit %d, %q", code, out)
	}

	ctx := context.Background()
	st := bucketStore(t, g)
	objs := messageObjects(t, st)
	if len(objs) != 3 {
		t.Fatalf("bucket holds %d message objects, want 3", len(objs))
	}
	var lost blob.Attrs
	for _, o := range objs {
		if o.Meta["uid"] == "2" {
			lost = o
		}
	}
	if lost.Key == "" {
		t.Fatalf("no object with uid 2 among %+v", objs)
	}
	if err := st.Delete(ctx, lost.Key); err != nil {
		t.Fatal(err)
	}
	orphan := path.Dir(lost.Key) + "/01JDZ8Q2V3N6K4W5X7Y8Z9A0BC"
	if err := st.Put(ctx, orphan, strings.NewReader("orphan"), 6, nil); err != nil {
		t.Fatal(err)
	}
	// Mail of an account neither the index nor the user database knows
	// (a user deleted while its mail could not all be deleted): orphans.
	ghost := journal.AccountPrefix("ghost@example.org") + "msg/01JDZ8Q2V3N6K4W5X7Y8Z9A0BD"
	if err := st.Put(ctx, ghost, strings.NewReader("ghost"), 5, nil); err != nil {
		t.Fatal(err)
	}
	missingLine := fmt.Sprintf("missing alice@example.org %s %d 1\n", lost.Key, lost.Size)

	// Within the grace period the orphan is not reported.
	out, code := fsck()
	if code != 1 || !strings.Contains(out, missingLine) || strings.Contains("\n"+out, "\norphan ") {
		t.Errorf("fsck: exit %d, %q; want 1, the missing object, no orphan", code, out)
	}
	out, code = fsck("--grace", "0s")
	if code != 1 || !strings.Contains(out, missingLine) || !strings.Contains(out, "orphan "+orphan+" 6 ") ||
		!strings.Contains(out, "orphan "+ghost+" 5 ") || strings.Contains(out, "deleted orphan") {
		t.Errorf("fsck --grace 0s: exit %d, %q; want 1, both problems", code, out)
	}
	out, code = fsck("--repair", "--grace", "0s")
	if code != 1 || !strings.Contains(out, missingLine) || !strings.Contains(out, "deleted orphan "+orphan+"\n") ||
		!strings.Contains(out, "deleted orphan "+ghost+"\n") ||
		!strings.HasSuffix(out, "fsck: 2 accounts, 3 objects referenced by the index checked; 1 missing; 2 orphans older than 0s (2 deleted); 0 accounts not in the index\n") {
		t.Errorf("fsck --repair: exit %d, %q; want 1, orphan deleted, missing reported", code, out)
	}
	if _, err := st.Stat(ctx, orphan); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("orphan after --repair: %v, want ErrNotFound", err)
	}
	if _, err := st.Stat(ctx, objs[0].Key); err != nil && objs[0].Key != lost.Key {
		t.Errorf("a referenced object went away: %v", err)
	}

	// FETCH: a clear NO for the message without its object (cache thrown
	// away, so the bucket is asked), the others still served.
	if err := os.RemoveAll(filepath.Join(data, "cache")); err != nil {
		t.Fatal(err)
	}
	s = startServe(t, data, section)
	ic := imapLogin(t, s.addr("imap"))
	section1 := &imap.FetchItemBodySection{Peek: true}
	for _, c := range []struct {
		seq  uint32
		want string // "" for NO
	}{{2, ""}, {1, outageMsg("f1")}, {3, outageMsg("f3")}} {
		msgs, err := ic.Fetch(imap.SeqSetNum(c.seq), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section1}}).Collect()
		if c.want == "" {
			var ie *imap.Error
			if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo {
				t.Errorf("FETCH %d (object missing) = %v, want NO", c.seq, err)
			} else {
				t.Logf("FETCH %d (object missing): %v", c.seq, err)
			}
			continue
		}
		if err != nil || len(msgs) != 1 || !strings.HasSuffix(string(msgs[0].FindBodySection(section1)), c.want) {
			t.Errorf("FETCH %d = %v, %d messages; want it served", c.seq, err, len(msgs))
		}
	}
	ic.Logout().Wait()
	s.stop()
}

// TestServeS3Hung: a gateway that accepts connections but answers nothing
// (SIGSTOP). A delivery answers 451 4.x after about max_attempts *
// idle_timeout (here 2 * 1s), not minutes; APPEND answers NO
// [UNAVAILABLE]; once the gateway runs again deliveries succeed without
// a restart, and the deferred message is not in INBOX.
func TestServeS3Hung(t *testing.T) {
	g, section, _ := s3Setup(t)
	section = strings.Replace(section, `idle_timeout = "2s"`, `idle_timeout = "1s"`, 1)
	data := filepath.Join(t.TempDir(), "data")
	s := startServe(t, data, section)
	imapAddr, lmtpAddr := s.addr("imap"), s.addr("lmtp")
	mustRun(t, "pw\n", "user", "add", "alice@example.org", "--password-stdin", "--data-dir", data,
		"--s3-endpoint", g.Endpoint, "--s3-bucket", g.Bucket, "--s3-region", g.Region, "--s3-path-style")
	if r, err := lmtpTry(lmtpAddr, "alice@example.org", outageMsg("before")); err != nil || !strings.HasPrefix(r, "250 ") {
		t.Fatalf("delivery before: %q, %v", r, err)
	}
	ic := imapLogin(t, imapAddr)

	g.Pause()
	start := time.Now()
	r, err := lmtpTry(lmtpAddr, "alice@example.org", outageMsg("hung"))
	took := time.Since(start)
	if err != nil || !strings.HasPrefix(r, "451 4.") {
		t.Errorf("delivery to a hung bucket: %q, %v after %v; want 451 4.x", r, err, took)
	}
	if took > 8*time.Second {
		t.Errorf("delivery to a hung bucket took %v, want a few seconds", took)
	}
	t.Logf("delivery to a hung bucket: %q after %v", r, took)
	msg := outageMsg("appended")
	cmd := ic.Append("INBOX", int64(len(msg)), nil)
	cmd.Write([]byte(msg))
	cmd.Close()
	_, err = cmd.Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeUnavailable {
		t.Errorf("APPEND to a hung bucket = %v, want NO [UNAVAILABLE]", err)
	}
	g.Resume()

	// Recovery without a restart (the first try may still meet the retry
	// budget the outage used up, so allow a few).
	var after string
	for i := 0; i < 20; i++ {
		if after, err = lmtpTry(lmtpAddr, "alice@example.org", outageMsg("after")); err == nil && strings.HasPrefix(after, "250 ") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.HasPrefix(after, "250 ") {
		t.Fatalf("delivery after Resume: %q, %v", after, err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got := fetchAll(t, ic)
	var subjects []string
	for sub := range got {
		subjects = append(subjects, sub)
	}
	sort.Strings(subjects)
	if want := []string{"after", "before"}; !slices.Equal(subjects, want) {
		t.Errorf("INBOX holds %q, want %q", subjects, want)
	}
	ic.Logout().Wait()
	s.stop()
}

// scrapeMetric reads one sample (name with its labels, as /metrics
// prints it) from the server's metrics endpoint; 0 when absent.
func scrapeMetric(t *testing.T, addr, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %s: %v", sc.Text(), err)
			}
			return f
		}
	}
	return 0
}
