package importer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
)

// FuzzMbox checks the streaming splitter against the in-memory reference
// (corpus.SplitMbox, minus the separator line), reading each message one
// byte at a time.
func FuzzMbox(f *testing.F) {
	for _, s := range []string{
		"From a Mon Jan  2 15:04:05 2006\nA: 1\n\nb1\n\nFrom b\nA: 2\n",
		"From a\r\nA\r\n\r\nFrom b\r\n\r\n\r\n",
		"\xef\xbb\xbfFrom a\n\n\n\nFrom b\nFrom c\n\nFrom d",
		"\n\nFrom x\n>From y\n\n>From z\n",
		"From \n\r\r\nFrom \n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return // byte-at-a-time reads of huge inputs stall the fuzzer; long lines are TestMboxStreaming's
		}
		var got [][]byte
		err := Mbox(context.Background(), bytes.NewReader(data), func(msg io.Reader, _ time.Time) error {
			var b bytes.Buffer
			_, err := io.Copy(&b, iotest.OneByteReader(msg))
			got = append(got, b.Bytes())
			return err
		})
		body := bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
		if errors.Is(err, ErrNotMbox) {
			// Right only if a non-blank line comes before any From_ line.
			for _, line := range bytes.SplitAfter(body, []byte("\n")) {
				if bytes.HasPrefix(line, []byte("From ")) {
					t.Fatalf("ErrNotMbox, but a From_ line comes first: %q", data)
				}
				if !isBlank(line) {
					return
				}
			}
			t.Fatalf("ErrNotMbox for blank input %q", data)
		}
		if err != nil {
			t.Fatal(err)
		}
		want := corpus.SplitMbox(data)
		if len(got) != len(want) {
			t.Fatalf("%d messages, reference %d: %q", len(got), len(want), data)
		}
		for i := range want {
			if w := dropSeparator(want[i]); !bytes.Equal(got[i], w) {
				t.Fatalf("message %d = %q, reference %q (input %q)", i, got[i], w, data)
			}
		}
	})
}
