package importer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
)

// dovecotIMAP is Debian's IMAP process; run directly it serves one
// pre-authenticated session on stdin/stdout.
const dovecotIMAP = "/usr/lib/dovecot/imap"

// dovecotMbox lets Dovecot read data as an mbox INBOX (read-only, EXAMINE)
// and returns BODY[] and INTERNALDATE of every message. It skips the test
// when Dovecot is missing or the test is not root (Dovecot runs as the
// mail user), and fails it then in CI.
func dovecotMbox(t *testing.T, data []byte) ([][]byte, []time.Time) {
	t.Helper()
	b, d, err := dovecotMboxErr(t, data)
	if err != nil {
		t.Fatal(err)
	}
	return b, d
}

// dovecotMboxErr is dovecotMbox returning Dovecot's refusal as an error.
func dovecotMboxErr(t *testing.T, data []byte) ([][]byte, []time.Time, error) {
	t.Helper()
	skip := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (CI=true: required)", why)
		}
		t.Skip(why)
	}
	if _, err := os.Stat(dovecotIMAP); err != nil {
		skip("dovecot-imapd not installed")
	}
	if os.Geteuid() != 0 {
		skip("reading an mbox with Dovecot needs root (it runs as user mail)")
	}
	mu, err := user.Lookup("mail")
	if err != nil {
		skip("no system user mail")
	}
	uid, _ := strconv.Atoi(mu.Uid)
	gid, _ := strconv.Atoi(mu.Gid)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	inbox := filepath.Join(dir, "inbox")
	if err := os.WriteFile(inbox, data, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = /dev/null
ssl = no
mail_location = mbox:%[1]s/mail:INBOX=%[2]s:INDEX=MEMORY
mail_uid = %[3]d
mail_gid = %[4]d
first_valid_uid = %[3]d
first_valid_gid = %[4]d
`, dir, inbox, uid, gid)), 0o644)
	for _, d := range []string{"mail", "home", "run", "state"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
		os.Chown(filepath.Join(dir, d), uid, gid)
	}
	cmd := exec.Command(dovecotIMAP, "-c", conf)
	cmd.Env = []string{"USER=ref", "HOME=" + filepath.Join(dir, "home")}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	// Dovecot ends the session at end of input, even in the middle of a
	// FETCH: send LOGOUT only after the FETCH completed.
	io.WriteString(stdin, "a EXAMINE INBOX\r\nb FETCH 1:* (INTERNALDATE BODY.PEEK[])\r\n")
	bodies, dates, err := parseFetch(bufio.NewReader(stdout))
	io.WriteString(stdin, "c LOGOUT\r\n")
	stdin.Close()
	io.Copy(io.Discard, stdout)
	return bodies, dates, err
}

var fetchRE = regexp.MustCompile(`^\* \d+ FETCH \(INTERNALDATE "([^"]+)" BODY\[\] \{(\d+)\}\r\n$`)

// parseFetch reads "* n FETCH (INTERNALDATE "..." BODY[] {len}" responses
// up to the tagged completion of the FETCH ("b").
func parseFetch(br *bufio.Reader) ([][]byte, []time.Time, error) {
	var bodies [][]byte
	var dates []time.Time
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, nil, fmt.Errorf("dovecot: output ended before the FETCH completed: %w", err)
		}
		switch {
		case strings.HasPrefix(line, "b OK"):
			return bodies, dates, nil
		case strings.HasPrefix(line, "a NO"), strings.HasPrefix(line, "a BAD"),
			strings.HasPrefix(line, "b NO"), strings.HasPrefix(line, "b BAD"):
			return nil, nil, fmt.Errorf("dovecot: %s", strings.TrimSpace(line))
		}
		m := fetchRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		d, _ := time.Parse("02-Jan-2006 15:04:05 -0700", m[1])
		n, _ := strconv.Atoi(m[2])
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, nil, err
		}
		bodies = append(bodies, b)
		dates = append(dates, d)
	}
}

// ours splits data with Mbox and converts line ends to CRLF, as Dovecot
// serves them.
func ours(t *testing.T, data []byte) ([][]byte, []time.Time) {
	t.Helper()
	var bodies [][]byte
	var dates []time.Time
	err := Mbox(context.Background(), bytes.NewReader(data), func(msg io.Reader, d time.Time) error {
		var b bytes.Buffer
		io.Copy(&b, msg)
		bodies = append(bodies, corpus.CRLF(b.Bytes()))
		dates = append(dates, d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bodies, dates
}

// TestMboxDovecot compares the split with Dovecot's mbox reader on inputs
// where the two must agree, and pins the known differences.
func TestMboxDovecot(t *testing.T) {
	same := []string{
		"From a@b Mon Jan  2 15:04:05 2006\nSubject: one\n\nbody1\n\nFrom b@c Tue Jan  3 10:00:00 2006\nSubject: two\n\nbody2\n\n",
		"From a@b Mon Jan  2 15:04:05 2006\r\nSubject: crlf\r\n\r\nbody\r\n\r\nFrom b@c Tue Jan  3 10:00:00 2006\r\nSubject: 2\r\n\r\nx\r\n\r\n",
		"From a@b Mon Jan  2 15:04:05 2006\nSubject: q\n\n>From quoted\n>>From deeper\nFrom not after a blank line\n\n",
		"From a@b Mon Jan  2 15:04:05 2006\nSubject: blanks\n\nb\n\n\n\n\nFrom b@c Tue Jan  3 10:00:00 2006\nSubject: 2\n\n\n",
		"From a@b Mon Jan  2 15:04:05 2006\nSubject: empty body\n\n\nFrom b@c Tue Jan  3 10:00:00 2006\nSubject: 2\n\nx\n\n",
	}
	for i, in := range same {
		want, wantDates := dovecotMbox(t, []byte(in))
		got, gotDates := ours(t, []byte(in))
		if len(got) != len(want) {
			t.Errorf("case %d: %d messages, Dovecot %d", i, len(got), len(want))
			continue
		}
		for j := range want {
			if !bytes.Equal(got[j], want[j]) || !gotDates[j].Equal(wantDates[j]) {
				t.Errorf("case %d message %d:\n got %q %v\nwant %q %v", i, j, got[j], gotDates[j], want[j], wantDates[j])
			}
		}
	}

	// Known differences, each pinned so a change on either side shows.
	diffs := []struct {
		name, in      string
		ours, dovecot []string
	}{
		// No blank line at the end of the file: Dovecot drops the last
		// line end as if it were the separator; we keep the bytes.
		{"no final separator", "From a@b Mon Jan  2 15:04:05 2006\nSubject: x\n\nlast\n",
			[]string{"Subject: x\r\n\r\nlast\r\n"}, []string{"Subject: x\r\n\r\nlast"}},
		// A "From " line without a date is not a From_ line to Dovecot;
		// we split at every "From " after a blank line (as corpus.SplitMbox
		// and Python's mailbox do).
		{"From line without date", "From a@b Mon Jan  2 15:04:05 2006\nSubject: x\n\nb\n\nFrom the desk of\nmore\n\n",
			[]string{"Subject: x\r\n\r\nb\r\n", "more\r\n"}, []string{"Subject: x\r\n\r\nb\r\n\r\nFrom the desk of\r\nmore\r\n"}},
		// Dovecot hides its own mbox state headers (Status, X-Status,
		// X-Keywords, X-UID, X-IMAPbase); we keep every byte.
		{"Status header", "From a@b Mon Jan  2 15:04:05 2006\nSubject: x\nStatus: RO\nX-Status: A\n\nb\n\n",
			[]string{"Subject: x\r\nStatus: RO\r\nX-Status: A\r\n\r\nb\r\n"}, []string{"Subject: x\r\n\r\nb\r\n"}},
	}
	for _, d := range diffs {
		want, _ := dovecotMbox(t, []byte(d.in))
		got, _ := ours(t, []byte(d.in))
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", d.ours) {
			t.Errorf("%s: ours = %q, want %q", d.name, got, d.ours)
		}
		if fmt.Sprintf("%q", want) != fmt.Sprintf("%q", d.dovecot) {
			t.Errorf("%s: Dovecot = %q, pinned %q", d.name, want, d.dovecot)
		}
	}
}

// TestMboxDovecotCorpus compares with Dovecot on the corpus mbox files
// whose From_ lines all carry a date and that have none of the headers
// Dovecot hides or interprets (Status, X-Status, X-Keywords, X-UID,
// X-IMAP, Content-Length): the same messages, byte for byte after CRLF
// conversion, with the same INTERNALDATE, except that a message at the
// end of a file without a final blank line keeps its last line end.
func TestMboxDovecotCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs Dovecot per file")
	}
	root := corpus.Dir(t)
	hidden := regexp.MustCompile(`(?mi)^(status|x-status|x-keywords|x-uid|x-imap|x-imapbase|content-length):`)
	compared, skipped := 0, 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".mbox" {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
		ok := !hidden.Match(data) && !bytes.Contains(data, []byte{0})
		prevBlank := true
		for _, line := range bytes.SplitAfter(data, []byte("\n")) {
			if prevBlank && bytes.HasPrefix(line, []byte("From ")) && ParseFromLine(string(line)).IsZero() {
				ok = false
			}
			prevBlank = len(bytes.TrimRight(line, "\r\n")) == 0
		}
		if !ok {
			skipped++
			return nil
		}
		want, wantDates, err := dovecotMboxErr(t, data)
		if err != nil {
			t.Logf("%s: skipped: %v", rel, err)
			skipped++
			return nil
		}
		got, gotDates := ours(t, data)
		if len(got) != len(want) {
			t.Errorf("%s: %d messages, Dovecot %d", rel, len(got), len(want))
			return nil
		}
		for i := range want {
			g := got[i]
			if i == len(want)-1 && !bytes.HasSuffix(want[i], []byte("\n")) {
				g = bytes.TrimSuffix(g, []byte("\r\n")) // no final separator: see TestMboxDovecot
			}
			if !bytes.Equal(g, want[i]) {
				t.Errorf("%s#%d: %d bytes, Dovecot %d", rel, i, len(g), len(want[i]))
			}
			if !gotDates[i].Equal(wantDates[i]) {
				t.Errorf("%s#%d: date %v, Dovecot %v", rel, i, gotDates[i], wantDates[i])
			}
		}
		compared++
		return nil
	})
	t.Logf("compared %d files, skipped %d", compared, skipped)
	if compared < 130 {
		t.Fatalf("only %d files compared", compared)
	}
}
