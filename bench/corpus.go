package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
)

// repoRoot returns the module root: the directory holding go.mod, found
// from this source file (go run keeps its path) or the working directory.
func repoRoot() string {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, d := range starts {
		for dir := d; ; dir = filepath.Dir(dir) {
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
				bytes.Contains(b, []byte("module github.com/bucketmail/bucketmail\n")) {
				return dir
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	return "."
}

// corpusDir returns $CORPUS_DIR or shared/corpus beside the repository.
func corpusDir() (string, error) {
	if d := os.Getenv("CORPUS_DIR"); d != "" {
		return d, nil
	}
	d := filepath.Join(filepath.Dir(repoRoot()), "shared", "corpus")
	if _, err := os.Stat(filepath.Join(d, "real")); err != nil {
		return "", fmt.Errorf("corpus: not found at %s (set CORPUS_DIR): %w", d, err)
	}
	return d, nil
}

// maxCorpusMessage leaves out the few very large corpus messages so that
// a phase's time is not decided by one of them.
const maxCorpusMessage = 4 << 20

// loadCorpus returns the messages of corpus/real in a stable order, each
// with CRLF line ends (what both servers store for an LMTP delivery), and
// at most max of them (0 for all).
func loadCorpus(max int) ([][]byte, error) {
	root, err := corpusDir()
	if err != nil {
		return nil, err
	}
	var files []string
	err = filepath.WalkDir(filepath.Join(root, "real"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(p); ext == ".eml" || ext == ".mbox" {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	sort.Strings(files)
	var out [][]byte
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("corpus: %w", err)
		}
		msgs := [][]byte{data}
		if filepath.Ext(p) == ".mbox" {
			msgs = splitMbox(data)
		}
		for _, m := range msgs {
			if len(m) == 0 || len(m) > maxCorpusMessage {
				continue
			}
			out = append(out, crlf(m))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("corpus: no messages under %s/real", root)
	}
	// Interleave the sources (mailing lists, MIME torture, attachments)
	// so that any prefix of the list has a realistic mix of sizes.
	mixed := make([][]byte, 0, len(out))
	const stride = 97
	for start := 0; start < stride; start++ {
		for i := start; i < len(out); i += stride {
			mixed = append(mixed, out[i])
		}
	}
	if max > 0 && len(mixed) > max {
		mixed = mixed[:max]
	}
	return mixed, nil
}

// smallMessages returns the messages of at most n bytes (for APPEND).
func smallMessages(msgs [][]byte, n int) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		if len(m) <= n {
			out = append(out, m)
		}
	}
	return out
}

// splitMbox splits at lines starting with "From " at the start of the
// file or after an empty line, dropping that line (shared/corpus/README.md).
func splitMbox(data []byte) [][]byte {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var out [][]byte
	var cur []byte
	started, prevBlank := false, true
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if prevBlank && bytes.HasPrefix(line, []byte("From ")) {
			if started {
				out = append(out, cur)
			}
			cur, started = []byte{}, true
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

// crlf turns every bare LF into CRLF and makes the message end in CRLF.
func crlf(raw []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(raw) + len(raw)/40 + 2)
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(c)
	}
	out := b.Bytes()
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}
