package mime

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
)

// dumpEntry is one line of the Dovecot reference dump (see
// notes/dovecot-dump/README.md).
type dumpEntry struct {
	ID             string `json:"id"`
	AppendedSHA256 string `json:"appended_sha256"`
	RFC822Size     int64  `json:"rfc822_size"`
	EnvelopeB64    string `json:"envelope_b64"`
	BodyStructB64  string `json:"bodystructure_b64"`
	BodyB64        string `json:"body_b64"`
	Parts          []string
	Sections       []struct {
		Section string `json:"section"`
		Size    int64  `json:"size"`
		SHA256  string `json:"sha256"`
	} `json:"sections"`
}

func loadDump(t *testing.T) map[string]*dumpEntry {
	t.Helper()
	path := os.Getenv("DOVECOT_DUMP")
	if path == "" {
		path = filepath.Join("..", "..", "..", "notes", "dovecot-dump", "dump.jsonl")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("no Dovecot dump at %s: %v", path, err)
	}
	defer f.Close()
	out := map[string]*dumpEntry{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e dumpEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out[e.ID] = &e
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func b64(t *testing.T, s string) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func parsePath(s string) []int {
	var out []int
	for _, x := range strings.Split(s, ".") {
		n, err := strconv.Atoi(x)
		if err != nil {
			return nil
		}
		out = append(out, n)
	}
	return out
}

// sectionBytes returns what BODY[section] serves from raw for the parsed
// message (section "", HEADER, TEXT, P, P.MIME).
func sectionBytes(m *Message, raw []byte, section string) ([]byte, bool) {
	switch section {
	case "":
		return raw, true
	case "HEADER":
		return raw[m.Root.HeaderStart:m.Root.BodyStart], true
	case "TEXT":
		return raw[m.Root.BodyStart:m.Root.End], true
	}
	mimeSec := strings.HasSuffix(section, ".MIME")
	p := m.Root.Part(parsePath(strings.TrimSuffix(section, ".MIME")))
	if p == nil {
		return nil, false
	}
	if mimeSec {
		return raw[p.HeaderStart:p.BodyStart], true
	}
	return raw[p.BodyStart:p.End], true
}

// TestDovecotDump compares Parse's results with Dovecot's on every corpus
// message (skipped without the dump). Differences justified in
// DIFFERENCES.md are listed in knownDifferences.
func TestDovecotDump(t *testing.T) {
	dump := loadDump(t)
	counts := map[string]int{}
	var details []string
	seen := 0
	corpus.Walk(t, "", func(cm corpus.Message) {
		e := dump[cm.ID]
		if e == nil {
			return
		}
		seen++
		raw := corpus.CRLF(cm.Raw)
		sum := sha256.Sum256(raw)
		if hex.EncodeToString(sum[:]) != e.AppendedSHA256 {
			t.Errorf("%s: CRLF bytes differ from what was appended", cm.ID)
			return
		}
		m, err := Parse(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", cm.ID, err)
		}
		diff := func(kind, got, want string) {
			if got == want {
				return
			}
			if reason, ok := knownDifferences[cm.ID+" "+kind]; ok && reason != "" {
				return
			}
			counts[normKind(kind)]++
			if len(details) < 400 {
				details = append(details, fmt.Sprintf("%s %s\n  got  %q\n  want %q", cm.ID, kind, clip(got), clip(want)))
			}
		}
		diff("size", strconv.FormatInt(m.Size, 10), strconv.FormatInt(e.RFC822Size, 10))
		diff("envelope", m.Root.Envelope, b64(t, e.EnvelopeB64))
		diff("bodystructure", m.Root.BodyStructure(true), b64(t, e.BodyStructB64))
		diff("body", m.Root.BodyStructure(false), b64(t, e.BodyB64))
		served := bytes.ReplaceAll(raw, []byte{0}, []byte{0x80}) // Dovecot serves NUL as 0x80
		for _, s := range e.Sections {
			b, ok := sectionBytes(m, served, s.Section)
			got := "missing"
			if ok {
				h := sha256.Sum256(b)
				got = fmt.Sprintf("%d %x", len(b), h)
			}
			diff("section "+s.Section, got, fmt.Sprintf("%d %s", s.Size, s.SHA256))
		}
	})
	if seen == 0 {
		t.Skip("no corpus message found in the dump")
	}
	if len(counts) > 0 {
		var keys []string
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var sb strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&sb, "%s: %d\n", k, counts[k])
		}
		if os.Getenv("DOVECOT_DIFF_VERBOSE") != "" {
			sb.WriteString(strings.Join(details, "\n"))
		}
		t.Errorf("%d messages compared; differences from Dovecot:\n%s", seen, sb.String())
	}
}

func clip(s string) string {
	if len(s) > 600 {
		return s[:300] + " ... " + s[len(s)-300:]
	}
	return s
}

// knownDifferences maps "corpus-id kind" to the reason (see
// DIFFERENCES.md) for differences from Dovecot that the RFCs justify.
var knownDifferences = map[string]string{
	// message/global is an encapsulated message (RFC 6532 §3.7; RFC 9051
	// §9 media-message requires envelope, body and lines for it, and
	// go-imap's client reads them); Dovecot 2.3 writes it as a leaf.
	"edge/flanker/enclosed-global.eml bodystructure": "message/global",
	"edge/flanker/enclosed-global.eml body":          "message/global",
	// ... and its size then includes the line break after the inner
	// close delimiter, as Dovecot's does for the same message as
	// message/rfc822 (edge/flanker/enclosed.eml).
	"edge/flanker/enclosed-global.eml section 2": "message/global",
}

// normKind turns "section 2.1.MIME" into "section N.N.MIME" for counting.
func normKind(k string) string {
	var b strings.Builder
	inNum := false
	for _, c := range k {
		if c >= '0' && c <= '9' {
			if !inNum {
				b.WriteByte('N')
			}
			inNum = true
			continue
		}
		inNum = false
		b.WriteRune(c)
	}
	return b.String()
}
