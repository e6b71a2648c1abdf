package imapwire

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

// BenchmarkEncodeFetch writes one typical FETCH response line with a
// 4 KiB body literal.
func BenchmarkEncodeFetch(b *testing.B) {
	e := NewEncoder(bufio.NewWriterSize(discard{}, 1<<16))
	when := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	flags := []string{`\Seen`, `\Flagged`}
	body := []byte(strings.Repeat("x", 4096))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.Atom("*").SP().Number(uint64(i)).SP().Atom("FETCH").SP().BeginList()
		e.Atom("UID").SP().Number(uint64(i)).SP().Atom("FLAGS").SP().Flags(flags).SP()
		e.Atom("INTERNALDATE").SP().DateTime(when).SP().Atom("RFC822.SIZE").SP().Number(4096).SP()
		e.Atom("BODY[]").SP().LiteralHeader(int64(len(body)), false).Write(body)
		e.EndList().CRLF()
	}
	e.Flush()
}

// BenchmarkDecodeCommand parses a UID FETCH and a SEARCH command.
func BenchmarkDecodeCommand(b *testing.B) {
	line := "a1 UID FETCH 1:*,7 (UID FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject Date)]<0.2048>)\r\n" +
		"a2 UID SEARCH CHARSET UTF-8 OR FROM alice (SINCE 1-Jan-2024 NOT SEEN)\r\n"
	r := strings.NewReader(line)
	br := bufio.NewReader(r)
	d := NewDecoder(br, nil)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(line)
		br.Reset(r)
		for range 2 {
			if _, err := d.Tag(); err != nil {
				b.Fatal(err)
			}
			if _, err := command(d); err != nil {
				b.Fatal(err)
			}
		}
	}
}
