package mime

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
)

// checkTree verifies the offset invariants of a parsed message against its
// bytes: ranges nest and are ordered, line counts are the LF counts of the
// bodies, encapsulated messages fill their part's body.
func checkTree(raw []byte, m *Message) error {
	size := int64(len(raw))
	if m.Size != size {
		return fmt.Errorf("Size %d, want %d", m.Size, size)
	}
	r := m.Root
	if r.HeaderStart != 0 || r.End != size {
		return fmt.Errorf("root covers [%d,%d), want [0,%d)", r.HeaderStart, r.End, size)
	}
	if m.RawHeader != nil && !bytes.Equal(m.RawHeader, raw[r.HeaderStart:r.BodyStart]) {
		return fmt.Errorf("RawHeader is not the root header")
	}
	var walk func(p *Part, path string, depth int) error
	walk = func(p *Part, path string, depth int) error {
		if depth > MaxNesting+1 {
			return fmt.Errorf("%s: deeper than MaxNesting", path)
		}
		if !(0 <= p.HeaderStart && p.HeaderStart <= p.BodyStart && p.BodyStart <= p.End && p.End <= size) {
			return fmt.Errorf("%s: bad offsets H%d B%d E%d", path, p.HeaderStart, p.BodyStart, p.End)
		}
		if lf := int64(bytes.Count(raw[p.BodyStart:p.End], []byte{'\n'})); lf != p.Lines {
			return fmt.Errorf("%s: Lines %d, body has %d LF", path, p.Lines, lf)
		}
		if p.Message != nil && (len(p.Parts) > 0 || p.Multipart) {
			return fmt.Errorf("%s: both message and multipart", path)
		}
		if !p.Multipart && len(p.Parts) > 0 {
			return fmt.Errorf("%s: parts without Multipart", path)
		}
		prev := p.BodyStart
		var sum int64
		for i, c := range p.Parts {
			if c.HeaderStart < prev || c.End > p.End {
				return fmt.Errorf("%s.%d: [%d,%d) outside parent body [%d,%d) or before sibling end %d",
					path, i+1, c.HeaderStart, c.End, p.BodyStart, p.End, prev)
			}
			prev = c.End
			sum += c.End - c.HeaderStart
			if err := walk(c, fmt.Sprintf("%s.%d", path, i+1), depth+1); err != nil {
				return err
			}
		}
		if sum > p.End-p.BodyStart {
			return fmt.Errorf("%s: parts add up to %d > body %d", path, sum, p.End-p.BodyStart)
		}
		if c := p.Message; c != nil {
			if c.HeaderStart != p.BodyStart || c.End > p.End || c.End < p.End-2 {
				return fmt.Errorf("%s: message [%d,%d) is not the body [%d,%d)", path, c.HeaderStart, c.End, p.BodyStart, p.End)
			}
			if c.Envelope == "" {
				return fmt.Errorf("%s: encapsulated message has no envelope", path)
			}
			if err := walk(c, path+".M", depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(r, "root", 0); err != nil {
		return err
	}
	if err := checkIMAPBody(r.BodyStructure(true), true); err != nil {
		return fmt.Errorf("BODYSTRUCTURE: %w", err)
	}
	if err := checkIMAPBody(r.BodyStructure(false), false); err != nil {
		return fmt.Errorf("BODY: %w", err)
	}
	if err := checkIMAPEnvelope(r.Envelope); err != nil {
		return fmt.Errorf("ENVELOPE: %w", err)
	}
	if env := Envelope(ParseHeader(raw[r.HeaderStart:r.BodyStart])); m.RawHeader != nil && env != r.Envelope {
		return fmt.Errorf("Envelope(ParseHeader) %q != parsed %q", env, r.Envelope)
	}
	return checkRoundTrip(r)
}

// stripped copies a tree without what EncodeStructure leaves out.
func stripped(p *Part) *Part {
	if p == nil {
		return nil
	}
	c := *p
	c.Header = nil
	c.textFlag, c.hasSubtype = false, false // not encoded
	c.Parts = nil
	for _, x := range p.Parts {
		c.Parts = append(c.Parts, stripped(x))
	}
	c.Message = stripped(p.Message)
	return &c
}

func checkRoundTrip(p *Part) error {
	enc := EncodeStructure(p)
	got, err := DecodeStructure(enc)
	if err != nil {
		return fmt.Errorf("DecodeStructure: %w", err)
	}
	if want := stripped(p); !reflect.DeepEqual(got, want) {
		return fmt.Errorf("structure round trip differs")
	}
	if got.BodyStructure(true) != p.BodyStructure(true) {
		return fmt.Errorf("round-tripped BODYSTRUCTURE differs")
	}
	return nil
}

// shape lists each part's type and line count, depth first.
func shape(p *Part) string {
	var b bytes.Buffer
	var walk func(p *Part)
	walk = func(p *Part) {
		fmt.Fprintf(&b, "(%s/%s %d", p.Type, p.Subtype, p.Lines)
		for _, c := range p.Parts {
			walk(c)
		}
		if p.Message != nil {
			walk(p.Message)
		}
		b.WriteByte(')')
	}
	walk(p)
	return b.String()
}

// TestCorpus parses every corpus message as stored and with CRLF line
// ends: parsing succeeds, offsets and line counts are consistent, the
// structure encoding round-trips, BODYSTRUCTURE, BODY and ENVELOPE are
// valid IMAP, and bare LF and CRLF give the same tree and line counts.
func TestCorpus(t *testing.T) {
	n := 0
	corpus.Walk(t, "", func(cm corpus.Message) {
		n++
		m, err := Parse(bytes.NewReader(cm.Raw))
		if err != nil {
			t.Fatalf("%s: %v", cm.ID, err)
		}
		if err := checkTree(cm.Raw, m); err != nil {
			t.Errorf("%s: %v", cm.ID, err)
			return
		}
		crlf := corpus.CRLF(cm.Raw)
		m2, err := Parse(bytes.NewReader(crlf))
		if err != nil {
			t.Fatalf("%s (CRLF): %v", cm.ID, err)
		}
		if err := checkTree(crlf, m2); err != nil {
			t.Errorf("%s (CRLF): %v", cm.ID, err)
			return
		}
		if a, b := shape(m.Root), shape(m2.Root); a != b {
			t.Errorf("%s: LF and CRLF trees differ:\n%s\n%s", cm.ID, a, b)
		}
	})
	if n < 100 {
		t.Fatalf("only %d corpus messages", n)
	}
}

// BenchmarkParseCorpus parses the whole corpus (CRLF, as stored by LMTP)
// per iteration; b.SetBytes reports MB/s.
func BenchmarkParseCorpus(b *testing.B) {
	var msgs [][]byte
	var total int64
	corpus.Walk(b, "", func(cm corpus.Message) {
		raw := corpus.CRLF(cm.Raw)
		msgs = append(msgs, raw)
		total += int64(len(raw))
	})
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, raw := range msgs {
			if _, err := Parse(bytes.NewReader(raw)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(msgs))*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// TestParseChunkedReader parses corpus messages through a reader that
// returns one byte at a time: the result must not depend on how the
// reader splits the input.
func TestParseChunkedReader(t *testing.T) {
	n := 0
	corpus.Walk(t, "edge", func(cm corpus.Message) {
		if n >= 300 || len(cm.Raw) > 200<<10 {
			return
		}
		n++
		a, err := Parse(bytes.NewReader(cm.Raw))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Parse(iotest.OneByteReader(bytes.NewReader(cm.Raw)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(EncodeStructure(a.Root), EncodeStructure(b.Root)) || !bytes.Equal(a.RawHeader, b.RawHeader) {
			t.Errorf("%s: one-byte reads give a different structure", cm.ID)
		}
	})
}
