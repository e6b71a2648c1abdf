// Package corpus walks the shared mail test corpus (../shared/corpus, see
// its README) for tests. It splits mbox files the way the README says: at
// lines starting with "From " that begin the file or follow an empty line,
// dropping the "From " line itself.
package corpus

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Dir returns the corpus root: $CORPUS_DIR, or shared/corpus beside the
// repository. It skips the test when neither exists outside CI and fails
// it in CI.
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("CORPUS_DIR"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	// file is <repo>/internal/testutil/corpus/corpus.go
	repo := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(file))))
	d := filepath.Join(filepath.Dir(repo), "shared", "corpus")
	if _, err := os.Stat(d); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("corpus not found at %s (set CORPUS_DIR)", d)
		}
		t.Skipf("corpus not found at %s (set CORPUS_DIR)", d)
	}
	return d
}

// Message is one corpus message.
type Message struct {
	ID  string // path relative to the corpus root, with "#n" for the n-th message of an mbox
	Raw []byte // exact bytes (mbox: after the From line)
}

// Large reports whether the file is one the README lists as over 1 MB
// (skip under -short).
func Large(id string) bool {
	for _, s := range []string{"enclosed-endless", "torture.mbox", "m0004", "m0005", "m0010",
		"large_text", "outofmemory", "jwz-mbox-mailcore2/6.eml", "apache-sling-mail-archive", "apache-ponymail-unit-tests"} {
		if strings.Contains(id, s) {
			return true
		}
	}
	return false
}

// Walk calls fn for every message under root/sub ("real", "edge" or ""
// for both), in a stable order. With testing.Short, large files are left
// out. .mmdf and .mailbox files are skipped.
func Walk(t testing.TB, sub string, fn func(m Message)) {
	t.Helper()
	root := Dir(t)
	err := filepath.WalkDir(filepath.Join(root, sub), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if testing.Short() && Large(rel) {
			return nil
		}
		switch filepath.Ext(p) {
		case ".eml":
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fn(Message{ID: rel, Raw: data})
		case ".mbox":
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for i, m := range SplitMbox(data) {
				fn(Message{ID: fmt.Sprintf("%s#%d", rel, i), Raw: m})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// SplitMbox splits mbox bytes into messages (see the package doc).
func SplitMbox(data []byte) [][]byte {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var out [][]byte
	var cur []byte
	started := false
	prevBlank := true
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if prevBlank && bytes.HasPrefix(line, []byte("From ")) {
			if started {
				out = append(out, cur)
			}
			cur = []byte{}
			started = true
		} else if started {
			cur = append(cur, line...)
		}
		prevBlank = len(bytes.TrimRight(line, "\r\n")) == 0
	}
	if started {
		out = append(out, cur)
	}
	return out
}

// CRLF returns raw with every bare LF turned into CRLF: what LMTP delivery
// stores for a message sent with bare LF line ends.
func CRLF(raw []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(raw) + len(raw)/40)
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(c)
	}
	return b.Bytes()
}
