package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"
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

// TestDovecotDifferential APPENDs every corpus message (bare LF turned
// into CRLF, as LMTP delivery stores it) to bucketmail and to Debian's
// Dovecot, then compares, message by message, RFC822.SIZE, ENVELOPE,
// BODYSTRUCTURE, BODY and the sections BODY[], BODY[HEADER], BODY[TEXT]
// and BODY[p], BODY[p.MIME] for every part p of Dovecot's BODYSTRUCTURE.
// Values are compared parsed (a string sent quoted or as a literal is the
// same string); sections byte for byte. Only differences listed in
// testdata/dovecot-differences.txt are tolerated, and a listed difference
// that no longer occurs is an error too, so the list stays true.
func TestDovecotDifferential(t *testing.T) {
	known := loadDifferences(t)
	ref := dovecot.Start(t)
	srv := e2e.Start(t)
	srv.AddUser(t, user, password)

	msgs := corpusMessages(t)
	ours, err := e2e.DialRaw(srv.IMAPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	theirs, err := e2e.DialRaw(ref.IMAPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	if err := ours.Login(user, password); err != nil {
		t.Fatalf("bucketmail: %v", err)
	}
	if err := theirs.Login(ref.User, ref.Password); err != nil {
		t.Fatalf("dovecot: %v", err)
	}

	var unexpected []string
	report := func(id, item, detail string) {
		for _, k := range known[id] {
			if k.matches(item) {
				k.seen = true
				return
			}
		}
		unexpected = append(unexpected, fmt.Sprintf("%s\t%s\t%s", id, item, detail))
	}

	type pair struct {
		m          corpus.Message
		our, their uint32 // UIDs
	}
	var pairs []pair
	start := time.Now()
	for _, m := range msgs {
		data := corpus.CRLF(m.Raw)
		tu, terr := theirs.Append("INBOX", data)
		ou, oerr := ours.Append("INBOX", data)
		switch {
		case terr != nil && oerr != nil:
			t.Logf("%s: both refuse APPEND (dovecot: %v; bucketmail: %v)", m.ID, terr, oerr)
		case terr != nil:
			report(m.ID, "APPEND", fmt.Sprintf("dovecot refuses (%v), bucketmail accepts", terr))
		case oerr != nil:
			report(m.ID, "APPEND", fmt.Sprintf("bucketmail refuses (%v), dovecot accepts", oerr))
		default:
			pairs = append(pairs, pair{m, ou, tu})
		}
	}
	t.Logf("APPENDed %d messages to both in %v", len(pairs), time.Since(start).Round(time.Millisecond))
	for _, c := range []*e2e.RawIMAP{ours, theirs} {
		if _, err := c.MustOK("SELECT INBOX"); err != nil {
			t.Fatal(err)
		}
	}

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

	start = time.Now()
	sections := 0
	for _, p := range pairs {
		id := p.m.ID
		const top = "RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY"
		tv, err := fetch(theirs, p.their, top)
		if err != nil {
			t.Fatalf("%s: dovecot: %v", id, err)
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
		for lo := 0; lo < len(secs); lo += 50 {
			batch := secs[lo:min(lo+50, len(secs))]
			var q []string
			for _, s := range batch {
				q = append(q, "BODY.PEEK["+s+"]")
			}
			items := strings.Join(q, " ")
			tv, err := fetch(theirs, p.their, items)
			if err != nil {
				t.Fatalf("%s: dovecot: %v", id, err)
			}
			ov, err := fetch(ours, p.our, items)
			if err != nil {
				report(id, "FETCH BODY[...]", fmt.Sprintf("bucketmail: %v", err))
				continue
			}
			for _, s := range batch {
				key := "BODY[" + s + "]"
				sections++
				a, aok := ov[key]
				b, bok := tv[key]
				switch {
				case !bok:
					t.Fatalf("%s: dovecot sent no %s", id, key)
				case !aok:
					report(id, key, "bucketmail sent no "+key)
				case !e2e.Equal(a, b):
					report(id, key, sectionDiff(a, b))
				}
			}
		}
	}
	t.Logf("compared %d messages, %d sections in %v", len(pairs), sections, time.Since(start).Round(time.Millisecond))

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
