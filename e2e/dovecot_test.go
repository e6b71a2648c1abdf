package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
	"github.com/bucketmail/bucketmail/internal/testutil/dovecot"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

const differencesFile = "testdata/dovecot-differences.txt"

// knownDifference is one line of testdata/dovecot-differences.txt.
type knownDifference struct {
	id, item, why string
	line          int
	seen          bool
}

// matches reports whether the entry covers item ("BODY[1.2]"); an entry
// item ending in "*" is a prefix.
func (k *knownDifference) matches(item string) bool {
	if p, ok := strings.CutSuffix(k.item, "*"); ok {
		return strings.HasPrefix(item, p)
	}
	return k.item == item
}

// loadDifferences reads the list of tolerated differences: lines of
// "corpus-id<TAB>item<TAB>justification", '#' comments, blank lines.
func loadDifferences(t *testing.T) map[string][]*knownDifference {
	t.Helper()
	f, err := os.Open(differencesFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]*knownDifference{}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.SplitN(line, "\t", 3)
		if len(f) != 3 || f[0] == "" || f[1] == "" || strings.TrimSpace(f[2]) == "" {
			t.Fatalf("%s:%d: want corpus-id<TAB>item<TAB>justification, got %q", differencesFile, n, line)
		}
		out[f[0]] = append(out[f[0]], &knownDifference{id: f[0], item: f[1], why: f[2], line: n})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDovecotDifferential compares bucketmail with Debian's Dovecot on the
// same stored messages: every corpus message as delivered over LMTP to
// bucketmail (the shared corpus server: trace fields, then the message
// with bare LF made CRLF) is APPENDed with exactly those bytes to
// Dovecot. Then it compares, message by message, RFC822.SIZE, ENVELOPE,
// BODYSTRUCTURE, BODY and the sections BODY[], BODY[HEADER], BODY[TEXT]
// and BODY[p], BODY[p.MIME] for every part p of Dovecot's BODYSTRUCTURE,
// BODY[p.HEADER] and BODY[p.TEXT] for every encapsulated message p.
// Values are compared parsed (a string sent quoted or as a literal is the
// same string); sections byte for byte. Only differences listed in
// testdata/dovecot-differences.txt are tolerated, and a listed difference
// that no longer occurs is an error too, so the list stays true.
func TestDovecotDifferential(t *testing.T) {
	known := loadDifferences(t)
	ref := dovecot.Start(t)
	srv, msgs := corpusServer(t)

	var mu sync.Mutex // guards unexpected and known[*].seen
	var unexpected []string
	report := func(id, item, detail string) {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range known[id] {
			if k.matches(item) {
				k.seen = true
				return
			}
		}
		unexpected = append(unexpected, fmt.Sprintf("%s\t%s\t%s", id, item, detail))
	}

	// Compare workers, each with its own connection to both servers, take
	// every workers-th message.
	const workers = 4
	type pair struct{ our, their uint32 } // UIDs; zero when not both stored
	pairs := make([]pair, len(msgs))
	var appended, sections atomic.Int64
	run := func(phase string, fn func(w int, ours, theirs *e2e.RawIMAP) error) {
		t.Helper()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ours, err := e2e.DialRaw(srv.IMAPAddr)
				if err != nil {
					errs[w] = fmt.Errorf("bucketmail: %w", err)
					return
				}
				defer ours.Close()
				theirs, err := e2e.DialRaw(ref.IMAPAddr)
				if err != nil {
					errs[w] = fmt.Errorf("dovecot: %w", err)
					return
				}
				defer theirs.Close()
				if err := ours.Login(user, password); err != nil {
					errs[w] = fmt.Errorf("bucketmail: %w", err)
					return
				}
				if err := theirs.Login(ref.User, ref.Password); err != nil {
					errs[w] = fmt.Errorf("dovecot: %w", err)
					return
				}
				errs[w] = fn(w, ours, theirs)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", phase, err)
			}
		}
		t.Logf("%s: %v", phase, time.Since(start).Round(time.Millisecond))
	}

	// The bytes bucketmail stored: BODY[] serves NUL as 0x80, so rebuild
	// them from the trace fields it served and the delivered message.
	start := time.Now()
	stored, err := storedMessages(srv.IMAPAddr, msgs)
	if err != nil {
		t.Fatalf("bucketmail: %v", err)
	}
	their, err := appendAll(ref.IMAPAddr, ref.User, ref.Password, stored)
	if err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	for i, m := range msgs {
		if their[i].err != nil {
			report(m.ID, "APPEND", fmt.Sprintf("dovecot refuses (%v), bucketmail stored it", their[i].err))
			continue
		}
		pairs[i] = pair{uint32(i + 1), their[i].uid}
		appended.Add(1)
	}
	t.Logf("read %d messages from bucketmail and APPENDed them to dovecot in %v", appended.Load(), time.Since(start).Round(time.Millisecond))

	fetch := func(c *e2e.RawIMAP, uid uint32, items string) (map[string]e2e.Value, error) {
		u, err := c.MustOK(fmt.Sprintf("UID FETCH %d (%s)", uid, items))
		if err != nil {
			return nil, err
		}
		all := map[string]e2e.Value{}
		for _, r := range u {
			if !bytes.HasPrefix(r, []byte("* ")) || !bytes.Contains(r[:min(len(r), 40)], []byte(" FETCH (")) {
				continue
			}
			_, it, _, err := e2e.FetchItems(r)
			if err != nil {
				return nil, err
			}
			for k, v := range it {
				all[k] = v
			}
		}
		return all, nil
	}

	run("compare", func(w int, ours, theirs *e2e.RawIMAP) error {
		for _, c := range []*e2e.RawIMAP{ours, theirs} {
			if _, err := c.MustOK("SELECT INBOX"); err != nil {
				return err
			}
		}
		for i := w; i < len(msgs); i += workers {
			p := pairs[i]
			if p.our == 0 {
				continue
			}
			id := msgs[i].ID
			const top = "RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY"
			tv, err := fetch(theirs, p.their, top)
			if err != nil {
				return fmt.Errorf("%s: dovecot: %w", id, err)
			}
			ov, err := fetch(ours, p.our, top)
			if err != nil {
				report(id, "FETCH", fmt.Sprintf("bucketmail: %v", err))
				continue
			}
			for _, item := range strings.Fields(top) {
				a, b := ov[item], tv[item]
				if !e2e.Equal(a, b) {
					report(id, item, fmt.Sprintf("\n  bucketmail: %s\n  dovecot:    %s", clip(a.String()), clip(b.String())))
				}
			}
			secs := []string{"", "HEADER", "TEXT"}
			for _, part := range e2e.PartPaths(tv["BODYSTRUCTURE"]) {
				secs = append(secs, part, part+".MIME")
			}
			for _, part := range e2e.MessageParts(tv["BODYSTRUCTURE"]) {
				secs = append(secs, part+".HEADER", part+".TEXT")
			}
			for lo := 0; lo < len(secs); lo += 50 {
				batch := secs[lo:min(lo+50, len(secs))]
				var q []string
				for _, s := range batch {
					q = append(q, "BODY.PEEK["+s+"]")
				}
				items := strings.Join(q, " ")
				tv, err := fetch(theirs, p.their, items)
				if err != nil {
					return fmt.Errorf("%s: dovecot: %w", id, err)
				}
				ov, err := fetch(ours, p.our, items)
				if err != nil {
					report(id, "FETCH BODY[...]", fmt.Sprintf("bucketmail: %v", err))
					continue
				}
				for _, s := range batch {
					key := "BODY[" + s + "]"
					sections.Add(1)
					a, aok := ov[key]
					b, bok := tv[key]
					switch {
					case !bok:
						return fmt.Errorf("%s: dovecot sent no %s", id, key)
					case !aok:
						report(id, key, "bucketmail sent no "+key)
					case !e2e.Equal(a, b):
						report(id, key, sectionDiff(a, b))
					}
				}
			}
		}
		return nil
	})
	t.Logf("compared %d messages, %d sections", appended.Load(), sections.Load())

	tested := map[string]bool{}
	for _, m := range msgs {
		tested[m.ID] = true
	}
	var stale []string
	for id, ks := range known {
		for _, k := range ks {
			if tested[id] && !k.seen {
				stale = append(stale, fmt.Sprintf("%s:%d: %s %s: listed, but bucketmail and dovecot now agree: remove the line", differencesFile, k.line, id, k.item))
			}
		}
	}
	sort.Strings(stale)
	for _, s := range stale {
		t.Error(s)
	}
	if len(unexpected) > 0 {
		max := 200
		for i, u := range unexpected {
			if i == max {
				t.Errorf("... and %d more", len(unexpected)-max)
				break
			}
			t.Errorf("unlisted difference: %s", u)
		}
		t.Errorf("%d differences from Dovecot are not in %s (corpus-id<TAB>item<TAB>RFC-based justification)", len(unexpected), differencesFile)
	}
}

type appendResult struct {
	uid uint32
	err error // the server's refusal
}

// storedMessages returns the bytes bucketmail stored for messages 1..n of
// INBOX: the trace fields it serves in front of msgs[i] followed by the
// message as delivered (e2e.Wire, NUL included).
func storedMessages(addr string, msgs []corpus.Message) ([][]byte, error) {
	c, err := e2e.DialRaw(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login(user, password); err != nil {
		return nil, err
	}
	if _, err := c.MustOK("EXAMINE INBOX"); err != nil {
		return nil, err
	}
	out := make([][]byte, len(msgs))
	for lo := 0; lo < len(msgs); lo += 200 {
		hi := min(lo+200, len(msgs))
		u, err := c.MustOK(fmt.Sprintf("FETCH %d:%d (BODY.PEEK[])", lo+1, hi))
		if err != nil {
			return nil, err
		}
		for _, r := range u {
			if !bytes.Contains(r[:min(len(r), 40)], []byte(" FETCH (")) {
				continue
			}
			seq, items, _, err := e2e.FetchItems(r)
			if err != nil {
				return nil, err
			}
			if seq < 1 || int(seq) > len(msgs) {
				return nil, fmt.Errorf("FETCH: unexpected sequence number %d", seq)
			}
			body := items["BODY[]"].Str
			raw := msgs[seq-1].Raw
			served := e2e.Served(raw)
			if !bytes.HasSuffix(body, served) {
				return nil, fmt.Errorf("%s: BODY[] does not end with the delivered message (TestCorpusRoundTrip says more)", msgs[seq-1].ID)
			}
			out[seq-1] = append(body[:len(body)-len(served):len(body)-len(served)], e2e.Wire(raw)...)
		}
	}
	for i := range out {
		if out[i] == nil {
			return nil, fmt.Errorf("FETCH: no BODY[] for message %d (%s)", i+1, msgs[i].ID)
		}
	}
	return out, nil
}

// appendAll APPENDs every message to INBOX over one connection and
// returns the UIDs (APPENDUID) or refusals.
func appendAll(addr, user, pass string, msgs [][]byte) ([]appendResult, error) {
	c, err := e2e.DialRaw(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login(user, pass); err != nil {
		return nil, err
	}
	out := make([]appendResult, len(msgs))
	for i, m := range msgs {
		out[i].uid, out[i].err = c.Append("INBOX", m)
		if out[i].err != nil && !strings.HasPrefix(out[i].err.Error(), "APPEND: ") {
			return nil, fmt.Errorf("message %d: %w", i+1, out[i].err) // connection trouble, not a refusal
		}
	}
	return out, nil
}

func clip(s string) string {
	if len(s) > 700 {
		return s[:700] + "..."
	}
	return s
}

// sectionDiff describes how two section values differ.
func sectionDiff(a, b e2e.Value) string {
	if a.Kind != b.Kind {
		return fmt.Sprintf("bucketmail %s, dovecot %s", clip(a.String()), clip(b.String()))
	}
	x, y := a.Str, b.Str
	i := 0
	for i < len(x) && i < len(y) && x[i] == y[i] {
		i++
	}
	lo := max(0, i-16)
	return fmt.Sprintf("bucketmail %d octets, dovecot %d; first difference at %d: bucketmail %q, dovecot %q",
		len(x), len(y), i, x[lo:min(len(x), i+16)], y[lo:min(len(y), i+16)])
}
