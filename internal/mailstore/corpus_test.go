package mailstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
)

// TestCorpusAppend appends every corpus message (testing.Short leaves out
// the large files; under the race detector, every third message is taken
// to keep the run short) byte-exact and reads each back through Messages
// and OpenBody: whole, and a range.
func TestCorpusAppend(t *testing.T) {
	var msgs []corpus.Message
	i := 0
	corpus.Walk(t, "", func(m corpus.Message) {
		if !raceEnabled || i%3 == 0 {
			msgs = append(msgs, m)
		}
		i++
	})
	if len(msgs) < 500 {
		t.Fatalf("only %d corpus messages", len(msgs))
	}
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("corpus@example.org")
	byUID := make(map[uint32]corpus.Message, len(msgs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan corpus.Message)
	errc := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				in, err := e.s.Spool(ctx, bytes.NewReader(m.Raw), false, 0)
				if err != nil {
					errc <- fmt.Errorf("%s: spool: %w", m.ID, err)
					return
				}
				if in.Size != int64(len(m.Raw)) || in.SHA256 != sha256.Sum256(m.Raw) {
					errc <- fmt.Errorf("%s: spool size %d sha %x, want %d", m.ID, in.Size, in.SHA256[:4], len(m.Raw))
					in.Close()
					return
				}
				r, err := a.Append(ctx, "INBOX", in, []string{`\Seen`}, time.Time{})
				in.Close()
				if err != nil {
					errc <- fmt.Errorf("%s: append: %w", m.ID, err)
					return
				}
				mu.Lock()
				byUID[r.UID] = m
				mu.Unlock()
			}
		}()
	}
	go func() {
		defer close(work)
		for _, m := range msgs {
			select {
			case work <- m:
			case err := <-errc:
				errc <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	inbox := e.mailbox(a, "INBOX")
	if int(inbox.Messages) != len(msgs) {
		t.Fatalf("%d messages in INBOX, appended %d", inbox.Messages, len(msgs))
	}
	uids := make([]uint32, 0, len(byUID))
	for u := range byUID {
		uids = append(uids, u)
	}
	n := 0
	err := a.Messages(ctx, inbox.ID, uids, func(m *Message) error {
		n++
		want := byUID[m.UID]
		if m.Size != int64(len(want.Raw)) {
			return fmt.Errorf("%s: size %d, want %d", want.ID, m.Size, len(want.Raw))
		}
		if m.Structure == nil || m.Structure.End != m.Size {
			return fmt.Errorf("%s: structure %+v, size %d", want.ID, m.Structure, m.Size)
		}
		if m.BodyStructure == "" || m.Envelope == "" || m.Body == "" {
			return fmt.Errorf("%s: empty BODYSTRUCTURE/ENVELOPE/BODY", want.ID)
		}
		if !bytes.HasPrefix(want.Raw, m.Header) {
			return fmt.Errorf("%s: stored header is not a prefix of the message", want.ID)
		}
		if err := sameBytes(ctx, a, m, 0, -1, want.Raw); err != nil {
			return fmt.Errorf("%s: %w", want.ID, err)
		}
		off := int64(len(want.Raw) / 3)
		end := min(off+100, int64(len(want.Raw)))
		if err := sameBytes(ctx, a, m, off, 100, want.Raw[off:end]); err != nil {
			return fmt.Errorf("%s: range: %w", want.ID, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(msgs) {
		t.Fatalf("Messages visited %d, want %d", n, len(msgs))
	}
	if got := e.blobCount(); got != len(msgs) {
		t.Errorf("%d objects, want %d", got, len(msgs))
	}
}

// sameBytes compares a range of a stored message with want, streaming.
func sameBytes(ctx context.Context, a *Account, m *Message, off, n int64, want []byte) error {
	rc, err := a.OpenBody(ctx, m, off, n)
	if err != nil {
		return err
	}
	defer rc.Close()
	buf := make([]byte, 32<<10)
	pos := 0
	for {
		k, err := rc.Read(buf)
		if k > 0 {
			if pos+k > len(want) || !bytes.Equal(buf[:k], want[pos:pos+k]) {
				return fmt.Errorf("bytes differ at or after offset %d", off+int64(pos))
			}
			pos += k
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if pos != len(want) {
		return fmt.Errorf("read %d bytes, want %d", pos, len(want))
	}
	return nil
}

// TestCorpusCRLF spools the edge corpus with bare-LF conversion: the
// stored bytes have no bare LF and equal an independent conversion.
func TestCorpusCRLF(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	count := 0
	corpus.Walk(t, "edge", func(m corpus.Message) {
		if t.Failed() {
			return
		}
		in, err := e.s.Spool(ctx, bytes.NewReader(m.Raw), true, 0)
		if err != nil {
			t.Fatalf("%s: %v", m.ID, err)
		}
		defer in.Close()
		var want bytes.Buffer
		for i, c := range m.Raw {
			if c == '\n' && (i == 0 || m.Raw[i-1] != '\r') {
				want.WriteByte('\r')
			}
			want.WriteByte(c)
		}
		got, err := io.ReadAll(in.reader()) // test-only
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) || in.Size != int64(want.Len()) || in.SHA256 != sha256.Sum256(want.Bytes()) {
			t.Errorf("%s: converted bytes differ (size %d, want %d)", m.ID, in.Size, want.Len())
		}
		if in.Parsed.Size != in.Size {
			t.Errorf("%s: parsed %d bytes of %d", m.ID, in.Parsed.Size, in.Size)
		}
		count++
	})
	if count < 500 {
		t.Fatalf("only %d messages", count)
	}
}

func TestSpool(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		chunks []string
		crlf   bool
		max    int64
		want   string
		tooBig bool
	}{
		{"exact", []string{"a\nb\r\nc"}, false, 0, "a\nb\r\nc", false},
		{"lf", []string{"a\nb\r\nc\n"}, true, 0, "a\r\nb\r\nc\r\n", false},
		{"cr-lf split across writes", []string{"a\r", "\nb\n"}, true, 0, "a\r\nb\r\n", false},
		{"lone cr kept", []string{"a\rb\n"}, true, 0, "a\rb\r\n", false},
		{"leading lf", []string{"\n\nx"}, true, 0, "\r\n\r\nx", false},
		{"empty", nil, true, 0, "", false},
		{"at limit", []string{"12345"}, false, 5, "12345", false},
		{"over limit", []string{"123456"}, false, 5, "", true},
		{"over limit after conversion", []string{"1234\n"}, true, 5, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs []io.Reader
			for _, c := range tc.chunks {
				rs = append(rs, strings.NewReader(c))
			}
			src := &countingReader{r: io.MultiReader(rs...)}
			in, err := e.s.Spool(ctx, src, tc.crlf, tc.max)
			total := 0
			for _, c := range tc.chunks {
				total += len(c)
			}
			if tc.tooBig {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("err %v, want ErrTooLarge", err)
				}
				if src.n != total {
					t.Errorf("read %d of %d bytes: the input must be drained", src.n, total)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			got, _ := io.ReadAll(in.reader())
			if string(got) != tc.want || in.Size != int64(len(tc.want)) {
				t.Errorf("stored %q (size %d), want %q", got, in.Size, tc.want)
			}
		})
	}
	// A small message stays in memory; one above MemSpoolMax spills to a
	// file with the same bytes, which Close removes; twice is fine.
	small := e.spool("x\r\n")
	if small.f != nil || small.path != "" || string(small.mem) != "x\r\n" {
		t.Errorf("small message: file %q, mem %q; want in memory", small.path, small.mem)
	}
	small.Close()
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcd\r\n", MemSpoolMax/16+1)
	in := e.spool(big)
	path := in.path
	if in.f == nil || in.mem != nil {
		t.Fatalf("%d-byte message not spilled to a file", len(big))
	}
	if got, _ := io.ReadAll(in.reader()); string(got) != big || in.Size != int64(len(big)) || in.SHA256 != sha256.Sum256([]byte(big)) {
		t.Errorf("spilled message: read %d bytes, size %d; want %d, and the same SHA-256", len(got), in.Size, len(big))
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spool file %s left after Close", path)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
