package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
)

type got struct {
	raw  string
	date time.Time
}

func split(t *testing.T, in string) ([]got, error) {
	t.Helper()
	var out []got
	err := Mbox(context.Background(), strings.NewReader(in), func(msg io.Reader, d time.Time) error {
		var b bytes.Buffer
		if _, err := io.Copy(&b, msg); err != nil {
			return err
		}
		out = append(out, got{b.String(), d})
		return nil
	})
	return out, err
}

func TestMboxSplit(t *testing.T) {
	d1 := time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"only blank lines", "\n\r\n", nil},
		{"one", "From a@b Mon Jan  2 15:04:05 2006\nSubject: x\n\nbody\n", []string{"Subject: x\n\nbody\n"}},
		{"one with terminator", "From a@b Mon Jan  2 15:04:05 2006\nSubject: x\n\nbody\n\n", []string{"Subject: x\n\nbody\n"}},
		{"two", "From a Mon Jan  2 15:04:05 2006\nA: 1\n\nb1\n\nFrom b Mon Jan  2 15:04:05 2006\nA: 2\n\nb2\n",
			[]string{"A: 1\n\nb1\n", "A: 2\n\nb2\n"}},
		{"crlf", "From a Mon Jan  2 15:04:05 2006\r\nA: 1\r\n\r\nb1\r\n\r\nFrom b Mon Jan  2 15:04:05 2006\r\nA: 2\r\n\r\nb2\r\n\r\n",
			[]string{"A: 1\r\n\r\nb1\r\n", "A: 2\r\n\r\nb2\r\n"}},
		{"From in body not after blank", "From a Mon Jan  2 15:04:05 2006\nA: 1\n\nline\nFrom here on\n",
			[]string{"A: 1\n\nline\nFrom here on\n"}},
		{"quoted From kept", "From a Mon Jan  2 15:04:05 2006\nA: 1\n\n>From x\n>>From y\n",
			[]string{"A: 1\n\n>From x\n>>From y\n"}},
		{"several blank lines keep all but one", "From a Mon Jan  2 15:04:05 2006\nA: 1\n\nb\n\n\n\nFrom b Mon Jan  2 15:04:05 2006\nA: 2\n",
			[]string{"A: 1\n\nb\n\n\n", "A: 2\n"}},
		{"empty message", "From a Mon Jan  2 15:04:05 2006\n\nFrom b Mon Jan  2 15:04:05 2006\nA: 2\n", []string{"", "A: 2\n"}},
		{"From line right after From line", "From a Mon Jan  2 15:04:05 2006\nFrom b\n", []string{"From b\n"}},
		{"no final newline", "From a Mon Jan  2 15:04:05 2006\nA: 1\n\nbody", []string{"A: 1\n\nbody"}},
		{"bom", "\xef\xbb\xbfFrom a Mon Jan  2 15:04:05 2006\nA: 1\n", []string{"A: 1\n"}},
		{"leading blank", "\n\nFrom a Mon Jan  2 15:04:05 2006\nA: 1\n", []string{"A: 1\n"}},
		{"From_ line only", "From a Mon Jan  2 15:04:05 2006", []string{""}},
		{"CR blank", "From a Mon Jan  2 15:04:05 2006\nA: 1\n\r\r\nFrom b\nA: 2\n", []string{"A: 1\n", "A: 2\n"}},
		{"space line is not blank", "From a Mon Jan  2 15:04:05 2006\nA: 1\n \nFrom b\n", []string{"A: 1\n \nFrom b\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := split(t, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != len(tc.want) {
				t.Fatalf("%d messages %v, want %d", len(msgs), msgs, len(tc.want))
			}
			for i, m := range msgs {
				if m.raw != tc.want[i] {
					t.Errorf("message %d = %q, want %q", i, m.raw, tc.want[i])
				}
			}
			if len(msgs) > 0 && strings.Contains(tc.in, "2006\n") && !msgs[0].date.Equal(d1) {
				t.Errorf("date = %v, want %v", msgs[0].date, d1)
			}
		})
	}
}

func TestMboxNotMbox(t *testing.T) {
	for _, in := range []string{"Subject: x\n\nbody\n", "\nReturn-Path: <a@b>\n", "from a Mon Jan  2 15:04:05 2006\n", ">From a\n"} {
		if _, err := split(t, in); !errors.Is(err, ErrNotMbox) {
			t.Errorf("Mbox(%q) = %v, want ErrNotMbox", in, err)
		}
	}
}

func TestParseFromLine(t *testing.T) {
	tests := []struct {
		line string
		want time.Time
	}{
		{"From MAILER-DAEMON Fri Jul  8 12:08:34 2011", time.Date(2011, 7, 8, 12, 8, 34, 0, time.UTC)},
		{"From a@b Sat Jan 31 23:59:59 1999", time.Date(1999, 1, 31, 23, 59, 59, 0, time.UTC)},
		{"From a@b Fri Feb 11 01:02:03 2022 +0100", time.Date(2022, 2, 11, 0, 2, 3, 0, time.UTC)},
		{"From a@b Fri Feb 11 01:02:03 -0500 2022", time.Date(2022, 2, 11, 6, 2, 3, 0, time.UTC)},
		{"From a@b Thu Apr  9 10:11:12 PST 2009", time.Date(2009, 4, 9, 10, 11, 12, 0, time.UTC)},
		{"From user at example.com  Fri Apr  9 10:11:12 2010", time.Date(2010, 4, 9, 10, 11, 12, 0, time.UTC)},
		{"From a@b 2009-01-01 00:00:00 +0000", time.Date(2009, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"From a@b Mon Jan  2 15:04 2006", time.Date(2006, 1, 2, 15, 4, 0, 0, time.UTC)},
		{"From a@b Mon Jan  2 15:04:05 2006\r\n", time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"From email_test@me.nowhere", time.Time{}},
		{"From - ", time.Time{}},
		{"From ", time.Time{}},
		{"From a@b yesterday", time.Time{}},
		{"From a@b Mon Feb 31 15:04:05 2006", time.Time{}},
	}
	for _, tc := range tests {
		got := ParseFromLine(tc.line)
		if !got.Equal(tc.want) || got.IsZero() != tc.want.IsZero() {
			t.Errorf("ParseFromLine(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

func TestMboxFnError(t *testing.T) {
	in := "From a\nA: 1\n\nFrom b\nA: 2\n\nFrom c\nA: 3\n"
	stop := errors.New("stop")
	n := 0
	err := Mbox(context.Background(), strings.NewReader(in), func(msg io.Reader, _ time.Time) error {
		n++
		if n == 2 {
			return stop
		}
		return nil // not reading: the rest is skipped
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("Mbox = %v after %d messages, want stop after 2", err, n)
	}
	// Partly read messages: the next one still starts at its From_ line.
	var heads []string
	err = Mbox(context.Background(), strings.NewReader(in), func(msg io.Reader, _ time.Time) error {
		b := make([]byte, 4)
		io.ReadFull(msg, b)
		heads = append(heads, string(b))
		return nil
	})
	if err != nil || strings.Join(heads, ",") != "A: 1,A: 2,A: 3" {
		t.Fatalf("heads = %q, %v", heads, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err = Mbox(ctx, strings.NewReader(in), func(msg io.Reader, _ time.Time) error {
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Mbox = %v", err)
	}
}

type failReader struct{ r io.Reader }

var errDisk = errors.New("disk")

func (f failReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errDisk
	}
	return n, err
}

func TestMboxReadError(t *testing.T) {
	in := "From a\nA: 1\n\nbody"
	err := Mbox(context.Background(), failReader{strings.NewReader(in)}, func(msg io.Reader, _ time.Time) error {
		_, err := io.Copy(io.Discard, msg)
		return err
	})
	if !errors.Is(err, errDisk) {
		t.Fatalf("Mbox = %v, want the read error", err)
	}
	for _, in := range []string{"", "\n", "From a"} {
		err = Mbox(context.Background(), failReader{strings.NewReader(in)}, func(msg io.Reader, _ time.Time) error {
			_, err := io.Copy(io.Discard, msg)
			return err
		})
		if !errors.Is(err, errDisk) {
			t.Errorf("Mbox(%q then error) = %v, want the read error", in, err)
		}
	}
}

// genMbox streams an mbox of n messages, each of lines lines of lineLen
// bytes, without holding it and without allocating per read.
type genMbox struct {
	n, lines  int
	line      []byte
	msg, left int // current message, lines left in it
	state     int // 0 From line, 1 body, 2 separator
	buf       []byte
}

func newGenMbox(n, lines, lineLen int) *genMbox {
	line := bytes.Repeat([]byte("x"), lineLen)
	line[lineLen-1] = '\n'
	return &genMbox{n: n, lines: lines, line: line}
}

func (g *genMbox) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.msg == g.n {
			return 0, io.EOF
		}
		switch g.state {
		case 0:
			g.buf = []byte(fmt.Sprintf("From gen@example.org Mon Jan  2 15:04:%02d 2006\n", g.msg))
			g.state, g.left = 1, g.lines
		case 1:
			if g.left == 0 {
				g.state = 2
				continue
			}
			g.buf = g.line
			g.left--
		case 2:
			g.buf = []byte("\n")
			g.state = 0
			g.msg++
		}
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// TestMboxStreaming splits 60 MiB of mail (lines longer than the buffer
// included) and checks that memory use stays far below the input size.
func TestMboxStreaming(t *testing.T) {
	const n, size = 3, 20 << 20
	for _, lineLen := range []int{80, 256 << 10} {
		lines := size / lineLen
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var sizes []int64
		var dates []int
		buf := make([]byte, 32<<10)
		err := Mbox(context.Background(), newGenMbox(n, lines, lineLen), func(msg io.Reader, d time.Time) error {
			k, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{msg}, buf)
			sizes = append(sizes, k)
			dates = append(dates, d.Second())
			return err
		})
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		want := int64(lines * lineLen)
		if fmt.Sprint(sizes) != fmt.Sprint([]int64{want, want, want}) || fmt.Sprint(dates) != "[0 1 2]" {
			t.Fatalf("line %d: sizes %v dates %v, want %d each", lineLen, sizes, dates, want)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
			t.Errorf("line %d: allocated %d bytes for %d bytes of mbox", lineLen, alloc, n*size)
		}
	}
}

// TestMboxCorpus splits every corpus mbox and compares with
// corpus.SplitMbox: the same number of messages, and the same bytes but
// for the separator line SplitMbox keeps at the end of a message.
func TestMboxCorpus(t *testing.T) {
	root := corpus.Dir(t)
	files, msgs := 0, 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".mbox" {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if testing.Short() && corpus.Large(rel) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		want := corpus.SplitMbox(data)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		i := 0
		err = Mbox(context.Background(), f, func(msg io.Reader, _ time.Time) error {
			var b bytes.Buffer
			if _, err := io.Copy(&b, msg); err != nil {
				return err
			}
			if i < len(want) {
				if w := dropSeparator(want[i]); !bytes.Equal(b.Bytes(), w) {
					t.Errorf("%s#%d: %d bytes differ from SplitMbox's %d", rel, i, b.Len(), len(w))
				}
			}
			i++
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", rel, err)
		}
		if i != len(want) {
			t.Errorf("%s: %d messages, SplitMbox has %d", rel, i, len(want))
		}
		files++
		msgs += i
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if minMsgs := map[bool]int{false: 2000, true: 400}[testing.Short()]; files < 150 || msgs < minMsgs {
		t.Fatalf("only %d files, %d messages: corpus incomplete?", files, msgs)
	}
	t.Logf("%d mbox files, %d messages", files, msgs)
}

// dropSeparator removes a blank last line (the mbox separator).
func dropSeparator(m []byte) []byte {
	if !bytes.HasSuffix(m, []byte("\n")) {
		return m
	}
	start := bytes.LastIndexByte(m[:len(m)-1], '\n') + 1
	if isBlank(m[start:]) && (start > 0 || len(m) > 0) {
		return m[:start]
	}
	return m
}
