package imapwire

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"
)

func encode(utf8 bool, fn func(e *Encoder)) string {
	var buf bytes.Buffer
	e := NewEncoder(bufio.NewWriter(&buf))
	e.UTF8 = utf8
	fn(e)
	if err := e.Flush(); err != nil {
		panic(err)
	}
	return buf.String()
}

func TestEncoderStrings(t *testing.T) {
	long := strings.Repeat("a", MaxQuoted+1)
	cases := []struct {
		in       string
		want     string // String, ASCII mode
		wantUTF8 string // String, UTF8 mode
		wantAStr string // AString, ASCII mode
	}{
		{"", `""`, `""`, `""`},
		{"abc", `"abc"`, `"abc"`, `abc`},
		{"a b", `"a b"`, `"a b"`, `"a b"`},
		{`a"b\c`, `"a\"b\\c"`, `"a\"b\\c"`, `"a\"b\\c"`},
		{`\`, `"\\"`, `"\\"`, `"\\"`},
		{"NIL", `"NIL"`, `"NIL"`, `"NIL"`},
		{"nil", `"nil"`, `"nil"`, `"nil"`},
		{"a]b", `"a]b"`, `"a]b"`, `a]b`},
		{"a(b", `"a(b"`, `"a(b"`, `"a(b"`},
		{"a%", `"a%"`, `"a%"`, `"a%"`},
		{"a\r\nb", "{4}\r\na\r\nb", "{4}\r\na\r\nb", "{4}\r\na\r\nb"},
		{"a\x00", "{2}\r\na\x00", "{2}\r\na\x00", "{2}\r\na\x00"},
		{"été", "{5}\r\nété", `"été"`, "{5}\r\nété"},
		{"\xff", "{1}\r\n\xff", "{1}\r\n\xff", "{1}\r\n\xff"},
		{long, "{4097}\r\n" + long, "{4097}\r\n" + long, long}, // atoms have no length bound
		{long[1:], `"` + long[1:] + `"`, `"` + long[1:] + `"`, long[1:]},
	}
	for _, tc := range cases {
		if got := encode(false, func(e *Encoder) { e.String(tc.in) }); got != tc.want {
			t.Errorf("String(%.20q) = %.40q, want %.40q", tc.in, got, tc.want)
		}
		if got := encode(true, func(e *Encoder) { e.String(tc.in) }); got != tc.wantUTF8 {
			t.Errorf("UTF8 String(%.20q) = %.40q, want %.40q", tc.in, got, tc.wantUTF8)
		}
		if got := encode(false, func(e *Encoder) { e.AString(tc.in) }); got != tc.wantAStr {
			t.Errorf("AString(%.20q) = %.40q, want %.40q", tc.in, got, tc.wantAStr)
		}
	}
}

func TestEncoderMisc(t *testing.T) {
	z := time.FixedZone("", -7*3600)
	cases := []struct {
		name string
		utf8 bool
		fn   func(e *Encoder)
		want string
	}{
		{"number", false, func(e *Encoder) { e.Number(0).SP().Number(18446744073709551615) }, "0 18446744073709551615"},
		{"nstring", false, func(e *Encoder) { e.NString("", false).SP().NString("", true).SP().NString("NIL", true) }, `NIL "" "NIL"`},
		{"list", false, func(e *Encoder) { e.BeginList().Atom("A").SP().Raw("B").EndList().CRLF() }, "(A B)\r\n"},
		{"flags", false, func(e *Encoder) { e.Flags([]string{`\Seen`, "$Junk"}).SP().Flags(nil) }, `(\Seen $Junk) ()`},
		{"datetime", false, func(e *Encoder) { e.DateTime(time.Date(1996, 7, 7, 2, 4, 5, 0, z)) }, `"07-Jul-1996 02:04:05 -0700"`},
		{"datetime utc", false, func(e *Encoder) { e.DateTime(time.Date(2024, 12, 31, 23, 59, 59, 999, time.UTC)) }, `"31-Dec-2024 23:59:59 +0000"`},
		{"literal", false, func(e *Encoder) { e.LiteralHeader(3, false).Write([]byte("abc")) }, "{3}\r\nabc"},
		{"literal8", false, func(e *Encoder) { e.LiteralHeader(2, true).Write([]byte("a\x00")) }, "~{2}\r\na\x00"},
		{"mailbox ascii", false, func(e *Encoder) { e.Mailbox("Sent") }, "Sent"},
		{"mailbox inbox", false, func(e *Encoder) { e.Mailbox("inbox") }, "INBOX"},
		{"mailbox space", false, func(e *Encoder) { e.Mailbox("My Box") }, `"My Box"`},
		{"mailbox mutf7", false, func(e *Encoder) { e.Mailbox("~peter/mail/台北/日本語") }, "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"mailbox amp", false, func(e *Encoder) { e.Mailbox("A&B") }, "A&-B"},
		{"mailbox utf8", true, func(e *Encoder) { e.Mailbox("Entwürfe") }, `"Entwürfe"`},
		{"mailbox utf8 atom", true, func(e *Encoder) { e.Mailbox("A&B") }, `A&B`},
		{"seqset", false, func(e *Encoder) {
			e.SeqSet(SeqSet{Ranges: []SeqRange{{1, 3}, {5, 5}, {7, 0}, {0, 0}}}).SP().SeqSet(SeqSet{Saved: true})
		}, "1:3,5,7:*,* $"},
	}
	for _, tc := range cases {
		if got := encode(tc.utf8, tc.fn); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestEncoderAllocs keeps the FETCH hot path allocation-free.
func TestEncoderAllocs(t *testing.T) {
	e := NewEncoder(bufio.NewWriterSize(discard{}, 1<<16))
	when := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	flags := []string{`\Seen`, `\Flagged`}
	body := []byte("hello")
	allocs := testing.AllocsPerRun(100, func() {
		e.Atom("*").SP().Number(12345).SP().Atom("FETCH").SP().BeginList()
		e.Atom("UID").SP().Number(99).SP().Atom("FLAGS").SP().Flags(flags).SP()
		e.Atom("INTERNALDATE").SP().DateTime(when).SP().Atom("RFC822.SIZE").SP().Number(4096).SP()
		e.Atom("BODY[]").SP().LiteralHeader(5, false).Write(body)
		e.SP().String(`subject "quoted"`).SP().AString("atom").SP().Mailbox("INBOX/Sent")
		e.EndList().CRLF()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per response, want 0", allocs)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestEncodeDecodeRoundTrip writes strings with the encoder and reads
// them back with the decoder.
func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a", "a b", `"\`, "NIL", "a\r\nb", "été", strings.Repeat("x", 5000), "a]"} {
		for _, u := range []bool{false, true} {
			wire := encode(u, func(e *Encoder) { e.AString(s).SP().String(s).CRLF() })
			d, _ := newTestDecoder(wire)
			d.UTF8 = u
			d.inLine = true
			a, err := d.AString()
			if err != nil || a != s {
				t.Fatalf("%.20q utf8=%v: AString %.20q %v (wire %.40q)", s, u, a, err, wire)
			}
			d.SP()
			b, err := d.String()
			if err != nil || b != s {
				t.Fatalf("%.20q utf8=%v: String %.20q %v", s, u, b, err)
			}
			if err := d.CRLF(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
