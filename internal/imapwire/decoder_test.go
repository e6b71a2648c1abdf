package imapwire

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// newTestDecoder returns a decoder over in and a pointer to the number of
// continuation requests it made.
func newTestDecoder(in string) (*Decoder, *int) {
	conts := new(int)
	d := NewDecoder(bufio.NewReader(strings.NewReader(in)), func() error { *conts++; return nil })
	return d, conts
}

// decodeCase is one table row: fn runs on a decoder over in; the result
// must equal want, or the error's message must equal err. rest is what
// must remain unread (checked when non-empty or when checkRest is set).
type decodeCase struct {
	in   string
	want any
	err  string
	rest string
	eof  bool // do not append CRLF to in (the case tests the end of input)
}

func runCases[T any](t *testing.T, cases []decodeCase, fn func(d *Decoder) (T, error)) {
	t.Helper()
	for _, tc := range cases {
		in, rest := tc.in, tc.rest
		if !tc.eof {
			in += "\r\n"
			rest += "\r\n"
		}
		d, _ := newTestDecoder(in)
		d.inLine = true
		got, err := fn(d)
		if tc.err != "" {
			if err == nil {
				t.Errorf("%q: got %#v, want error %q", tc.in, got, tc.err)
				continue
			}
			var se *SyntaxError
			msg := err.Error()
			if errors.As(err, &se) {
				msg = se.Msg
			}
			if msg != tc.err {
				t.Errorf("%q: error %q, want %q", tc.in, msg, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: unexpected error %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(any(got), tc.want) {
			t.Errorf("%q: got %#v, want %#v", tc.in, got, tc.want)
		}
		got2, _ := io.ReadAll(d.r)
		if string(got2) != rest {
			t.Errorf("%q: rest %q, want %q", tc.in, got2, rest)
		}
	}
}

func TestTag(t *testing.T) {
	runCases(t, []decodeCase{
		{in: "a001 NOOP", want: "a001", rest: " NOOP"},
		{in: "A]b NOOP", want: "A]b", rest: " NOOP"},
		{in: "\r\n\r\nx1 NOOP", want: "x1", rest: " NOOP"},
		{in: "\nx1 NOOP", want: "x1", rest: " NOOP"},
		{in: "a+b NOOP", want: "a", rest: "+b NOOP"},
		{in: "+ NOOP", err: `expected command tag, found "+"`},
		{in: "* NOOP", err: `expected command tag, found "*"`},
		{in: " NOOP", err: `expected command tag, found SP`},
		{in: "(a NOOP", err: `expected command tag, found "("`},
		{in: "\xffa", err: `expected command tag, found byte 0xff`},
		{in: "", err: "EOF"},
		{in: "\r\n", err: "EOF"},
		{in: "abc", err: "unexpected EOF", eof: true},
	}, (*Decoder).Tag)
}

func TestAtom(t *testing.T) {
	runCases(t, []decodeCase{
		{in: "NOOP\r\n", want: "NOOP", rest: "\r\n"},
		{in: "uid fetch", want: "uid", rest: " fetch"},
		{in: "a[b]", want: "a[b", rest: "]"},
		{in: "x+y.z-1!#$&'", want: "x+y.z-1!#$&'", rest: ""},
		{in: "(", err: `expected atom, found "("`},
		{in: "\r\n", err: `expected atom, found end of line`},
		{in: "\x01", err: `expected atom, found byte 0x01`},
		{in: "\x7f", err: `expected atom, found byte 0x7f`},
		{in: "é", err: `expected atom, found byte 0xc3`},
		{in: "%", err: `expected atom, found "%"`},
	}, (*Decoder).Atom)
}

func TestSPAndCRLF(t *testing.T) {
	runCases(t, []decodeCase{
		{in: " x", want: true, rest: "x"},
		{in: "x", err: `expected SP, found "x"`},
		{in: "\r\n", err: `expected SP, found end of line`},
		{in: "", err: "unexpected EOF", eof: true},
	}, func(d *Decoder) (bool, error) { return true, d.SP() })
	runCases(t, []decodeCase{
		{in: "\r\nnext", want: true, rest: "next"},
		{in: "\nnext", want: true, rest: "next"},
		{in: "\rx", err: `expected LF after CR, found "x"`},
		{in: " \r\n", err: `expected end of line, found SP`},
		{in: ")", err: `expected end of line, found ")"`},
	}, func(d *Decoder) (bool, error) { return true, d.CRLF() })
}

func TestAString(t *testing.T) {
	runCases(t, []decodeCase{
		{in: "foo bar", want: "foo", rest: " bar"},
		{in: "foo]bar)", want: "foo]bar", rest: ")"},
		{in: `"" x`, want: "", rest: " x"},
		{in: `"a b" x`, want: "a b", rest: " x"},
		{in: `"a\"b\\c"`, want: `a"b\c`},
		{in: "{3}\r\nabc x", want: "abc", rest: " x"},
		{in: "{3+}\r\na\r\n x", want: "a\r\n", rest: " x"},
		{in: "{0}\r\n x", want: "", rest: " x"},
		{in: "{3}\nabc", want: "abc"},
		{in: "%", err: `expected atom or string, found "%"`},
		{in: "*", err: `expected atom or string, found "*"`},
		{in: `"a\b"`, err: `invalid escape in quoted string: backslash followed by "b"`},
		{in: "\"ab\r\n", err: "unterminated quoted string"},
		{in: "\"a\x00b\"", err: "NUL in quoted string"},
		{in: "\"é\"", err: "8-bit character in quoted string (send it as a literal, or ENABLE UTF8=ACCEPT once logged in)"},
		{in: "{3}\r\na\x00c", err: "NUL in literal string"},
		{in: "{3}\r\nab", err: "unexpected EOF", eof: true},
		{in: "{3} x", err: `expected CRLF after literal header, found SP`},
		{in: "{3\r\n", err: `expected } after literal length, found end of line`},
		{in: "{}\r\n", err: `expected literal length, found "}"`},
		{in: "{99999999999999999999}\r\n", err: "literal length too large (maximum 9223372036854775807)"},
		{in: "{65537}\r\n", err: "literal of 65537 bytes exceeds the limit of 65536"},
	}, (*Decoder).AString)
}

func TestStringUTF8(t *testing.T) {
	d, _ := newTestDecoder("\"grüße\" \"\xff\"")
	d.UTF8 = true
	s, err := d.String()
	if err != nil || s != "grüße" {
		t.Fatalf("got %q, %v", s, err)
	}
	d.SP()
	if _, err := d.String(); err == nil || err.(*SyntaxError).Msg != "invalid UTF-8 in quoted string" {
		t.Fatalf("got %v", err)
	}
	// An 8-bit literal is fine without UTF8.
	d, _ = newTestDecoder("{7}\r\ngrüße")
	if s, err := d.String(); err != nil || s != "grüße" {
		t.Fatalf("got %q, %v", s, err)
	}
}

func TestStringRejectsAtom(t *testing.T) {
	runCases(t, []decodeCase{
		{in: "abc", err: `expected quoted string or literal, found "a"`},
		{in: "~{3}\r\nabc", err: `expected quoted string or literal, found "~"`},
	}, (*Decoder).String)
}

func TestNString(t *testing.T) {
	type ns struct {
		S  string
		OK bool
	}
	runCases(t, []decodeCase{
		{in: "NIL x", want: ns{"", false}, rest: " x"},
		{in: "nil", want: ns{"", false}},
		{in: `"NIL"`, want: ns{"NIL", true}},
		{in: "{1}\r\nx", want: ns{"x", true}},
		{in: "NILS", err: `expected string or NIL, found "NILS"`},
	}, func(d *Decoder) (ns, error) {
		s, ok, err := d.NString()
		return ns{s, ok}, err
	})
}

func TestNumbers(t *testing.T) {
	runCases(t, []decodeCase{
		{in: "0", want: uint32(0)},
		{in: "007 ", want: uint32(7), rest: " "},
		{in: "4294967295", want: uint32(4294967295)},
		{in: "4294967296", err: "number too large (maximum 4294967295)"},
		{in: "-1", err: `expected number, found "-"`},
		{in: "x", err: `expected number, found "x"`},
	}, (*Decoder).Number)
	runCases(t, []decodeCase{
		{in: "1", want: uint32(1)},
		{in: "0", err: "number must not be 0"},
		{in: "4294967296", err: "non-zero number too large (maximum 4294967295)"},
	}, (*Decoder).NzNumber)
	runCases(t, []decodeCase{
		{in: "0", want: uint64(0)},
		{in: "9223372036854775807", want: uint64(9223372036854775807)},
		{in: "9223372036854775808", err: "number too large (maximum 9223372036854775807)"},
		{in: "18446744073709551616", err: "number too large (maximum 9223372036854775807)"},
	}, (*Decoder).Number64)
}

func TestList(t *testing.T) {
	runCases(t, []decodeCase{
		{in: "() x", want: []string{}, rest: " x"},
		{in: "(a)", want: []string{"a"}},
		{in: `(a "b c" {1}` + "\r\nd)", want: []string{"a", "b c", "d"}},
		{in: "(a  b)", err: `expected atom or string, found SP`},
		{in: "(a b", err: "unexpected EOF", eof: true},
		{in: "(a b\r\n", err: `expected SP or ) in list, found end of line`},
		{in: "a", err: `expected (, found "a"`},
		{in: "( a)", err: `expected atom or string, found SP`},
	}, func(d *Decoder) ([]string, error) {
		out := []string{}
		err := d.List(func() error {
			s, err := d.AString()
			out = append(out, s)
			return err
		})
		return out, err
	})
}

func TestSeqSet(t *testing.T) {
	r := func(a, b uint32) SeqRange { return SeqRange{a, b} }
	runCases(t, []decodeCase{
		{in: "1 ", want: SeqSet{Ranges: []SeqRange{r(1, 1)}}, rest: " "},
		{in: "*", want: SeqSet{Ranges: []SeqRange{r(0, 0)}}},
		{in: "1:*", want: SeqSet{Ranges: []SeqRange{r(1, 0)}}},
		{in: "*:4", want: SeqSet{Ranges: []SeqRange{r(0, 4)}}},
		{in: "7:3,9,11:12", want: SeqSet{Ranges: []SeqRange{r(7, 3), r(9, 9), r(11, 12)}}},
		{in: "4294967295", want: SeqSet{Ranges: []SeqRange{r(4294967295, 4294967295)}}},
		{in: "$ ", want: SeqSet{Saved: true}, rest: " "},
		{in: "$,1", err: "$ cannot be combined with other sequence numbers"},
		{in: "1,$", err: `expected sequence number or *, found "$"`},
		{in: "0", err: "sequence number 0 is not allowed"},
		{in: "1:0", err: "sequence number 0 is not allowed"},
		{in: "1,", err: "unexpected EOF", eof: true},
		{in: "1, 2", err: `expected sequence number or *, found SP`},
		{in: "1::2", err: `expected sequence number or *, found ":"`},
		{in: "4294967296", err: "sequence number too large (maximum 4294967295)"},
		{in: "a", err: `expected sequence number or *, found "a"`},
	}, (*Decoder).SeqSet)
}

func TestFlags(t *testing.T) {
	runCases(t, []decodeCase{
		{in: `(\seen \ANSWERED \Flagged \deleted \draft \recent \* $Forwarded \X-Custom foo)`,
			want: []string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`, `\Recent`, `\*`, "$Forwarded", `\X-Custom`, "foo"}},
		{in: "()", want: []string{}},
		{in: `(\)`, err: `expected flag name after backslash, found ")"`},
		{in: `(a]b)`, err: `expected SP or ) in list, found "]"`},
		{in: `("a")`, err: `expected flag, found "\""`},
		{in: `\Seen`, err: `expected (, found "\\"`},
	}, (*Decoder).FlagList)
	runCases(t, []decodeCase{
		{in: `\SEEN x`, want: `\Seen`, rest: " x"},
		{in: `Junk`, want: "Junk"},
		{in: `*`, err: `expected flag, found "*"`},
	}, (*Decoder).Flag)
}

func TestDateTime(t *testing.T) {
	zone := func(off int) *time.Location { return time.FixedZone("", off) }
	runCases(t, []decodeCase{
		{in: `"17-Jul-1996 02:44:25 -0700"`, want: time.Date(1996, 7, 17, 2, 44, 25, 0, zone(-7*3600))},
		{in: `" 7-jul-1996 02:44:25 +0130" x`, want: time.Date(1996, 7, 7, 2, 44, 25, 0, zone(5400)), rest: " x"},
		{in: `"07-DEC-2024 23:59:59 +0000"`, want: time.Date(2024, 12, 7, 23, 59, 59, 0, zone(0))},
		{in: `"7-Feb-2024 00:00:00 +0000"`, want: time.Date(2024, 2, 7, 0, 0, 0, 0, zone(0))},
		{in: `"29-Feb-2024 00:00:00 +0000"`, want: time.Date(2024, 2, 29, 0, 0, 0, 0, zone(0))},
		{in: `"29-Feb-2023 00:00:00 +0000"`, err: `invalid date-time "29-Feb-2023 00:00:00 +0000" (want "dd-Mon-yyyy hh:mm:ss +zzzz")`},
		{in: `"17-Jul-1996 24:00:00 -0700"`, err: `invalid date-time "17-Jul-1996 24:00:00 -0700" (want "dd-Mon-yyyy hh:mm:ss +zzzz")`},
		{in: `"17-Jul-1996 02:44:25 0700"`, err: `invalid date-time "17-Jul-1996 02:44:25 0700" (want "dd-Mon-yyyy hh:mm:ss +zzzz")`},
		{in: `"17-Jux-1996 02:44:25 -0700"`, err: `invalid date-time "17-Jux-1996 02:44:25 -0700" (want "dd-Mon-yyyy hh:mm:ss +zzzz")`},
		{in: `"17-Jul-1996 0x:44:25 -0700"`, err: `invalid date-time "17-Jul-1996 0x:44:25 -0700" (want "dd-Mon-yyyy hh:mm:ss +zzzz")`},
		{in: `"17-Jul-19x6 02:44:25 -0700"`, err: `invalid date-time "17-Jul-19x6 02:44:25 -0700" (want "dd-Mon-yyyy hh:mm:ss +zzzz")`},
		{in: `"17-Jul-1996 02:44:25 -0760"`, err: `invalid date-time "17-Jul-1996 02:44:25 -0760" (want "dd-Mon-yyyy hh:mm:ss +zzzz")`},
		{in: `"17-Jul-1996 02:44 -0700"`, err: `invalid date-time "17-Jul-1996 02:44 -0700" (want "dd-Mon-yyyy hh:mm:ss +zzzz")`},
		{in: `"17-Jul-1996 02:44:25 -0700 and a lot more text"`, err: `invalid date-time`},
		{in: `17-Jul-1996`, err: `expected date-time, found "1"`},
		{in: "\"17-Jul\r\n", err: `unterminated date-time`},
	}, (*Decoder).DateTime)
	runCases(t, []decodeCase{
		{in: `1-Feb-1994 x`, want: time.Date(1994, 2, 1, 0, 0, 0, 0, time.UTC), rest: " x"},
		{in: `"01-feb-1994"`, want: time.Date(1994, 2, 1, 0, 0, 0, 0, time.UTC)},
		{in: `31-Apr-1994`, err: `invalid date "31-Apr-1994" (want dd-Mon-yyyy)`},
		{in: `1-Feb-94`, err: `invalid date "1-Feb-94" (want dd-Mon-yyyy)`},
		{in: `" 1-Feb-1994"`, err: `invalid date " 1-Feb-1994" (want dd-Mon-yyyy)`},
		{in: `(`, err: `expected date, found "("`},
	}, (*Decoder).Date)
}

func TestMailbox(t *testing.T) {
	runCases(t, []decodeCase{
		{in: "inbox", want: "INBOX"},
		{in: `"InBoX"`, want: "INBOX"},
		{in: "INBOX.sub", want: "INBOX.sub"},
		{in: "&AOk-t&AOk-", want: "&AOk-t&AOk-"},
		{in: "a]b", want: "a]b"},
		{in: "a%", want: "a", rest: "%"},
	}, (*Decoder).Mailbox)
	runCases(t, []decodeCase{
		{in: "&AOk-t&AOk-", want: "été"},
		{in: "inbox", want: "INBOX"},
		{in: "&Jjo", err: `mailbox name "&Jjo": imapwire: invalid modified UTF-7: unterminated & sequence`},
		{in: "{2}\r\n\xc3\xa9", err: `mailbox name "\u00e9": imapwire: invalid modified UTF-7: byte 0xc3 must be encoded`},
	}, (*Decoder).MailboxUTF8)
	d, _ := newTestDecoder("\"été\" \"\xff\"")
	d.UTF8 = true
	if s, err := d.MailboxUTF8(); err != nil || s != "été" {
		t.Fatalf("got %q %v", s, err)
	}
	d.SP()
	if _, err := d.MailboxUTF8(); err == nil {
		t.Fatal("invalid UTF-8 accepted")
	}
	runCases(t, []decodeCase{
		{in: "* ", want: "*", rest: " "},
		{in: "%/a]*", want: "%/a]*"},
		{in: `""`, want: ""},
		{in: `"a b*"`, want: "a b*"},
		{in: "(", err: `expected mailbox pattern, found "("`},
	}, (*Decoder).ListMailbox)
}

func TestLiteralStream(t *testing.T) {
	d, conts := newTestDecoder("{5}\r\nhello rest\r\n")
	n, r, err := d.Literal()
	if err != nil || n != 5 || *conts != 1 {
		t.Fatalf("n=%d err=%v conts=%d", n, err, *conts)
	}
	if err := d.SP(); !errors.Is(err, errPendingLiteral) {
		t.Fatalf("SP before drain: %v", err)
	}
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "hello" {
		t.Fatalf("got %q %v", b, err)
	}
	if err := d.SP(); err != nil {
		t.Fatal(err)
	}
	if a, err := d.Atom(); a != "rest" || err != nil {
		t.Fatalf("got %q %v", a, err)
	}

	d, conts = newTestDecoder("~{3+}\r\na\x00b")
	n, bin, r, err := d.Literal8()
	if err != nil || n != 3 || !bin || *conts != 0 {
		t.Fatalf("n=%d bin=%v err=%v conts=%d", n, bin, err, *conts)
	}
	if b, _ := io.ReadAll(r); string(b) != "a\x00b" {
		t.Fatalf("got %q", b)
	}

	d, _ = newTestDecoder("{5}\r\nab")
	_, r, _ = d.Literal()
	if _, err := io.ReadAll(r); err != io.ErrUnexpectedEOF {
		t.Fatalf("short literal: %v", err)
	}
}

func TestLiteralLimits(t *testing.T) {
	d, conts := newTestDecoder("{11}\r\n")
	d.MaxStream = 10
	_, _, err := d.Literal()
	if !errors.Is(err, ErrLiteralTooLarge) || *conts != 0 {
		t.Fatalf("err=%v conts=%d", err, *conts)
	}
	var se *SyntaxError
	if !errors.As(err, &se) || se.Msg != "literal of 11 bytes exceeds the limit of 10" {
		t.Fatalf("err=%v", err)
	}
	d, _ = newTestDecoder("{4097+}\r\n")
	d.MaxLiteralPlus = LiteralMinusMax
	_, _, err = d.Literal()
	if !errors.As(err, &se) || se.Msg != "non-synchronizing literal of 4097 bytes exceeds the LITERAL- limit of 4096" || errors.Is(err, ErrLiteralTooLarge) {
		t.Fatalf("err=%v", err)
	}
	d, _ = newTestDecoder("{4097}\r\n")
	d.MaxLiteralPlus = LiteralMinusMax
	if _, _, err = d.Literal(); err != nil {
		t.Fatalf("sync literal refused under LITERAL-: %v", err)
	}
	d, _ = newTestDecoder("{4}\r\nabcd")
	d.MaxLiteral = 3
	if _, err := d.String(); !errors.Is(err, ErrLiteralTooLarge) {
		t.Fatalf("err=%v", err)
	}
}

func TestLineTooLong(t *testing.T) {
	d, _ := newTestDecoder("a " + strings.Repeat("x", 100) + "\r\nb NOOP\r\n")
	d.MaxLine = 50
	if tag, err := d.Tag(); err != nil || tag != "a" {
		t.Fatal(tag, err)
	}
	d.SP()
	_, err := d.Atom()
	var se *SyntaxError
	if !errors.As(err, &se) || se.Msg != "command line too long (more than 50 bytes)" || !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("err=%v", err)
	}
	if err := d.DiscardLine(); err != nil {
		t.Fatal(err)
	}
	if tag, err := d.Tag(); err != nil || tag != "b" {
		t.Fatal(tag, err)
	}
}

func TestLineAndAuth(t *testing.T) {
	d, _ := newTestDecoder("AGFsaWNlAHNlY3JldA==\r\n*\r\n=\r\n\r\n!!\r\n" + strings.Repeat("QUFB", 10) + "{2+}\r\nz NOOP\r\n")
	b, err := d.AuthResponse(100)
	if err != nil || string(b) != "\x00alice\x00secret" {
		t.Fatalf("got %q %v", b, err)
	}
	if _, err := d.AuthResponse(100); err != ErrAuthCancelled {
		t.Fatalf("cancel: %v", err)
	}
	if b, err := d.AuthResponse(100); err != nil || len(b) != 0 || b == nil {
		t.Fatalf("=: %q %v", b, err)
	}
	if b, err := d.AuthResponse(100); err != nil || len(b) != 0 {
		t.Fatalf("empty: %q %v", b, err)
	}
	var se *SyntaxError
	if _, err := d.AuthResponse(100); !errors.As(err, &se) || se.Msg != "invalid base64 in authentication data" {
		t.Fatalf("bad base64: %v", err)
	}
	if _, err := d.AuthResponse(20); !errors.As(err, &se) || se.Msg != "line too long (more than 20 bytes)" {
		t.Fatalf("long: %v", err)
	}
	// The over-long line has been skipped already: no DiscardLine needed.
	if tag, err := d.Tag(); err != nil || tag != "z" {
		t.Fatal(tag, err)
	}
	d, _ = newTestDecoder("abc\r\n")
	if s, err := d.Line(3); err != nil || s != "abc" {
		t.Fatalf("exact max: %q %v", s, err)
	}
}

// TestDiscardLine checks that after an error on the first command the
// decoder resynchronises on the next one, in every literal situation.
func TestDiscardLine(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		parse func(d *Decoder) error // reads after the tag; must fail
		conts int                    // continuation requests made in total
	}{
		{"junk mid line", "a LOGIN (x y\r\nb NOOP\r\n", loginArgs, 0},
		{"error at CR", "a LOGIN x\r\nb NOOP\r\n", loginArgs, 0},
		{"sync literal refused, bytes never sent", "a LOGIN {99999999}\r\nb NOOP\r\n", loginArgs, 0},
		{"non-sync literal refused, bytes skipped", "a LOGIN {70000+}\r\n" + strings.Repeat("\r\n", 35000) + " x\r\nb NOOP\r\n", loginArgs, 0},
		{"error after an accepted literal", "a LOGIN {3}\r\nabc (\r\nb NOOP\r\n", loginArgs, 1},
		{"error before a later non-sync literal", "a LOGIN ( {5+}\r\nab\r\nc {2+}\r\n\r\n x\r\nb NOOP\r\n", loginArgs, 0},
		{"error before a later sync literal", "a LOGIN ( {5}\r\nb NOOP\r\n", loginArgs, 0},
		{"literal8 non-sync after error", "a LOGIN ( ~{3+}\r\n\r\n\r\nb NOOP\r\n", loginArgs, 0},
		{"bad literal header", "a LOGIN {12x}\r\nb NOOP\r\n", loginArgs, 0},
		{"bad quoted", "a LOGIN \"a\\x\" {2+}\r\n\r\n\r\nb NOOP\r\n", loginArgs, 0},
		{"partly read stream", "a APPEND x {10}\r\n0123456789 junk\r\nb NOOP\r\n", func(d *Decoder) error {
			d.Atom()
			d.SP()
			d.Atom()
			d.SP()
			_, r, err := d.Literal()
			if err != nil {
				return err
			}
			r.Read(make([]byte, 3))
			return errors.New("store failed")
		}, 1},
		{"stream refused", "a APPEND x {11}\r\nb NOOP\r\n", func(d *Decoder) error {
			d.MaxStream = 10
			d.Atom()
			d.SP()
			d.Atom()
			d.SP()
			_, _, err := d.Literal()
			return err
		}, 0},
	}
	for _, tc := range cases {
		d, conts := newTestDecoder(tc.in)
		tag, err := d.Tag()
		if err != nil || tag != "a" {
			t.Fatalf("%s: tag %q %v", tc.name, tag, err)
		}
		if err := d.SP(); err != nil {
			t.Fatal(err)
		}
		if err := tc.parse(d); err == nil {
			t.Errorf("%s: parse succeeded", tc.name)
			continue
		}
		if err := d.DiscardLine(); err != nil {
			t.Errorf("%s: DiscardLine: %v", tc.name, err)
			continue
		}
		if err := d.DiscardLine(); err != nil {
			t.Errorf("%s: second DiscardLine: %v", tc.name, err)
		}
		tag, err = d.Tag()
		if err != nil || tag != "b" {
			t.Errorf("%s: next tag %q %v", tc.name, tag, err)
			continue
		}
		if *conts != tc.conts {
			t.Errorf("%s: %d continuation requests, want %d", tc.name, *conts, tc.conts)
		}
	}
}

// loginArgs parses "LOGIN SP astring SP astring CRLF".
func loginArgs(d *Decoder) error {
	if _, err := d.Atom(); err != nil {
		return err
	}
	if err := d.SP(); err != nil {
		return err
	}
	if _, err := d.AString(); err != nil {
		return err
	}
	if err := d.SP(); err != nil {
		return err
	}
	if _, err := d.AString(); err != nil {
		return err
	}
	return d.CRLF()
}

func TestDiscardLineNoop(t *testing.T) {
	d, _ := newTestDecoder("a NOOP\r\nb NOOP\r\n")
	if err := d.DiscardLine(); err != nil {
		t.Fatal(err)
	}
	if tag, _ := d.Tag(); tag != "a" {
		t.Fatalf("DiscardLine before Tag ate a line: %q", tag)
	}
	d.SP()
	d.Atom()
	if err := d.CRLF(); err != nil {
		t.Fatal(err)
	}
	d.DiscardLine()
	if tag, _ := d.Tag(); tag != "b" {
		t.Fatalf("DiscardLine after CRLF ate a line: %q", tag)
	}
}

// TestLiteralHeaderAccept checks the two-step APPEND flow: the server
// looks at the literal's size before deciding whether to send "+".
func TestLiteralHeaderAccept(t *testing.T) {
	cases := []struct {
		name   string
		in     string
		accept bool
		conts  int
		data   string
	}{
		{"sync refused", "a {5}\r\nb NOOP\r\n", false, 0, ""},
		{"non-sync refused", "a {5+}\r\nhello\r\nb NOOP\r\n", false, 0, ""},
		{"literal8 refused", "a ~{5+}\r\nhe\x00lo\r\nb NOOP\r\n", false, 0, ""},
		{"sync accepted", "a {5}\r\nhello\r\nb NOOP\r\n", true, 1, "hello"},
		{"non-sync accepted", "a {5+}\r\nhello\r\nb NOOP\r\n", true, 0, "hello"},
	}
	for _, tc := range cases {
		d, conts := newTestDecoder(tc.in)
		d.Tag()
		d.SP()
		n, _, err := d.LiteralHeader()
		if err != nil || n != 5 {
			t.Fatalf("%s: %d %v", tc.name, n, err)
		}
		if err := d.CRLF(); !errors.Is(err, errPendingLiteral) {
			t.Errorf("%s: decoding after LiteralHeader: %v", tc.name, err)
		}
		if tc.accept {
			r, err := d.AcceptLiteral()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r)
			if string(b) != tc.data {
				t.Errorf("%s: data %q", tc.name, b)
			}
			if err := d.CRLF(); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		} else if err := d.DiscardLine(); err != nil {
			t.Fatal(err)
		}
		if tag, err := d.Tag(); tag != "b" || err != nil {
			t.Errorf("%s: next tag %q %v", tc.name, tag, err)
		}
		if *conts != tc.conts {
			t.Errorf("%s: %d continuation requests, want %d", tc.name, *conts, tc.conts)
		}
	}
	d, _ := newTestDecoder("x")
	if _, err := d.AcceptLiteral(); err != errNoLiteralHeader {
		t.Fatalf("AcceptLiteral alone: %v", err)
	}
}
