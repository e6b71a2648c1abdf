package mime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// crlf turns "\n" into "\r\n" so table inputs stay readable.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func mustParse(t *testing.T, s string) *Message {
	t.Helper()
	m, err := Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkTree([]byte(s), m); err != nil {
		t.Fatalf("invariants: %v", err)
	}
	return m
}

const text7 = `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" `

func TestParseBodyStructure(t *testing.T) {
	tests := []struct {
		name string
		in   string // CRLF applied unless lf
		lf   bool
		want string
	}{
		{"empty message", "", false, text7 + `0 0 NIL NIL NIL NIL)`},
		{"header without body", "Subject: x\n", false, text7 + `0 0 NIL NIL NIL NIL)`},
		{"header and body", "Subject: x\n\nhello\n", false, text7 + `7 1 NIL NIL NIL NIL)`},
		{"bare LF counts lines like CRLF", "Subject: x\n\nhello\nworld\n", true, text7 + `12 2 NIL NIL NIL NIL)`},
		{"body without final line break", "Subject: x\n\nhello", false, text7 + `5 0 NIL NIL NIL NIL)`},
		{"NUL in body", "Subject: x\n\na\x00b\n", false, text7 + `5 1 NIL NIL NIL NIL)`},
		{"non-MIME Content-Transfer-Encoding is ignored (RFC 2045 §4)",
			"Content-Transfer-Encoding: base64\n\naGk=\n", false, text7 + `6 1 NIL NIL NIL NIL)`},
		{"Content-Type alone makes it MIME", "Content-Type: text/html\n\n<b>\n", false,
			`("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 5 1 NIL NIL NIL NIL)`},
		{"case kept, charset appended", "MIME-Version: 1.0\nContent-Type: TEXT/HTML; Format=Flowed\nContent-Transfer-Encoding: QUOTED-PRINTABLE\n\nx\n", false,
			`("TEXT" "HTML" ("Format" "Flowed" "charset" "us-ascii") NIL NIL "QUOTED-PRINTABLE" 3 1 NIL NIL NIL NIL)`},
		{"plain 7-bit root is canonical", "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\nContent-Transfer-Encoding: 7BIT\n\nx\n", false,
			text7 + `3 1 NIL NIL NIL NIL)`},
		{"type without subtype", "Content-Type: x-sun-attachment\n\nx\n", false,
			`("x-sun-attachment" "" NIL NIL NIL "7bit" 3 NIL NIL NIL NIL)`},
		{"broken type", "Content-Type: text plain\n\nx\n", false,
			`("" "" NIL NIL NIL "7bit" 3 NIL NIL NIL NIL)`},
		{"garbage after subtype", "Content-Type: text/plain>\n\nx\n", false,
			`("" "" NIL NIL NIL "7bit" 3 NIL NIL NIL NIL)`},
		{"extension fields", "Content-Type: application/pdf; name=\"a b.pdf\"\nContent-ID: <id@x>\nContent-Description: \nContent-Transfer-Encoding: base64\n" +
			"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\nContent-Disposition: attachment; filename=a.pdf\nContent-Language: en, de-CH\nContent-Location: http://x/a.pdf\n\nAAAA\n", false,
			`("application" "pdf" ("name" "a b.pdf") "<id@x>" "" "base64" 6 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("attachment" ("filename" "a.pdf")) ("en" "de-CH") "http://x/a.pdf")`},
		{"first Content-Type wins", "Content-Type: text/html\nContent-Type: image/png\n\nx\n", false,
			`("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 3 1 NIL NIL NIL NIL)`},
		{"NUL ends a field value", "Content-Type: text/plain\nContent-Description: ab\x00cd\n\nx\n", false,
			`("text" "plain" ("charset" "us-ascii") NIL "ab" "7bit" 3 1 NIL NIL NIL NIL)`},
		{"8-bit and CR/LF strings are literals", "Content-Type: text/plain; name=\"caf\xc3\xa9\"\nContent-Description: one\n two\n\nx\n", false,
			"(\"text\" \"plain\" (\"name\" {5}\r\ncaf\xc3\xa9 \"charset\" \"us-ascii\") NIL \"one two\" \"7bit\" 3 1 NIL NIL NIL NIL)"},
		{"RFC 2231 continuations joined, value kept encoded",
			"Content-Type: application/x-stuff;\n title*1*=%2A%2A%2Afun%2A%2A%2A%20;\n title*0*=us-ascii'en'This%20is%20even%20more%20;\n title*2=\"isn't it!\"\n\nx\n", false,
			`("application" "x-stuff" ("title*" "us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn't it!") NIL NIL "7bit" 3 NIL NIL NIL NIL)`},
		{"RFC 2231 missing section reported as written",
			"Content-Type: text/plain; a*0=x; a*2=z\n\nx\n", false,
			`("text" "plain" ("a*0" "x" "a*2" "z" "charset" "us-ascii") NIL NIL "7bit" 3 1 NIL NIL NIL NIL)`},
		{"multipart", "Content-Type: multipart/mixed; boundary=b\n\npreamble\n--b\n\none\n--b\nContent-Type: text/html\n\n<p>\n--b--\nepilogue\n", false,
			`(` + text7 + `3 0 NIL NIL NIL NIL)("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 3 0 NIL NIL NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL)`},
		{"missing final boundary ends at EOF", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\ntwo\n", false,
			`(` + text7 + `10 2 NIL NIL NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL)`},
		{"boundary line with trailing white space", "Content-Type: multipart/mixed; boundary=b\n\n--b \t\n\none\n--b--  \n", false,
			`(` + text7 + `3 0 NIL NIL NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL)`},
		{"multipart without boundary has no parts", "Content-Type: multipart/mixed\n\n--b\n\none\n", false,
			`(` + text7 + `0 0 NIL NIL NIL NIL) "mixed" NIL NIL NIL NIL)`},
		{"multipart without boundary lines has no parts", "Content-Type: multipart/alternative; boundary=zz\n\nnothing\n", false,
			`(` + text7 + `0 0 NIL NIL NIL NIL) "alternative" ("boundary" "zz") NIL NIL NIL)`},
		{"nested boundaries, longest prefix wins",
			"Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/mixed; boundary=ab\n\n--ab\n\nx\n--ab--\n--a\n\ny\n--a--\n", false,
			`((` + text7 + `1 0 NIL NIL NIL NIL) "mixed" ("boundary" "ab") NIL NIL NIL)` + text7 + `1 0 NIL NIL NIL NIL) "mixed" ("boundary" "a") NIL NIL NIL)`},
		{"outer boundary closes an unterminated inner multipart",
			"Content-Type: multipart/mixed; boundary=out\n\n--out\nContent-Type: multipart/alternative; boundary=in\n\n--in\n\nx\n--out\n\ny\n--out--\n", false,
			`((` + text7 + `1 0 NIL NIL NIL NIL) "alternative" ("boundary" "in") NIL NIL NIL)` + text7 + `1 0 NIL NIL NIL NIL) "mixed" ("boundary" "out") NIL NIL NIL)`},
		{"boundary lines in headers end the header",
			"Content-Type: multipart/mixed; boundary=\":foo\"\n\n--:foo\n--:foo\nContent-Type: text/html\n--:foo--\n", false,
			`(` + text7 + `0 0 NIL NIL NIL NIL)("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" ("boundary" ":foo") NIL NIL NIL)`},
		{"message/rfc822", "Content-Type: message/rfc822\n\nSubject: inner\nFrom: a@b.c\n\nbody\n", false,
			`("message" "rfc822" NIL NIL NIL "7bit" 37 ("NIL" NIL NIL NIL NIL NIL NIL NIL NIL NIL) ` + text7 + `6 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL)`},
		{"digest parts default to message/rfc822",
			"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\n1\n--d--\n", false,
			`(("message" "rfc822" NIL NIL NIL "7bit" 17 (NIL "one" NIL NIL NIL NIL NIL NIL NIL NIL) ` + text7 + `1 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL) "digest" ("boundary" "d") NIL NIL NIL)`},
		{"message/global is an encapsulated message too",
			"Content-Type: message/global\n\nSubject: g\n\nx\n", false,
			`("message" "global" NIL NIL NIL "7bit" 17 (NIL "g" NIL NIL NIL NIL NIL NIL NIL NIL) ` + text7 + `3 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if !tt.lf {
				in = crlf(in)
			}
			want := tt.want
			if strings.Contains(want, `("NIL" NIL`) {
				// placeholder for an envelope computed below
				want = strings.Replace(want, `("NIL" NIL NIL NIL NIL NIL NIL NIL NIL NIL)`,
					`(NIL "inner" ((NIL NIL "a" "b.c")) ((NIL NIL "a" "b.c")) ((NIL NIL "a" "b.c")) NIL NIL NIL NIL NIL)`, 1)
			}
			m := mustParse(t, in)
			if got := m.Root.BodyStructure(true); got != want {
				t.Errorf("BODYSTRUCTURE\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestParseOffsets(t *testing.T) {
	in := crlf("Content-Type: multipart/mixed; boundary=b\n\npre\n--b\nContent-Type: text/plain\n\nhello\n--b\nContent-Type: message/rfc822\n\nSubject: s\n\nbody\n--b--\nepi\n")
	m := mustParse(t, in)
	type off struct{ h, b, e, l int64 }
	got := func(p *Part) off { return off{p.HeaderStart, p.BodyStart, p.End, p.Lines} }
	r := m.Root
	checks := []struct {
		name string
		p    *Part
		want off
	}{
		{"root", r, off{0, 45, int64(len(in)), 13}},
		{"1", r.Part([]int{1}), off{55, 83, 88, 0}},
		{"2", r.Part([]int{2}), off{95, 127, 145, 2}},
		{"2 message", r.Part([]int{2}).Message, off{127, 141, 145, 0}},
		{"2.1", r.Part([]int{2, 1}), off{127, 141, 145, 0}},
	}
	for _, c := range checks {
		if c.p == nil {
			t.Fatalf("%s: no part", c.name)
		}
		if g := got(c.p); g != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, g, c.want)
		}
	}
	if s := in[83:88]; s != "hello" {
		t.Errorf("part 1 body %q", s)
	}
	if s := in[141:145]; s != "body" {
		t.Errorf("message body %q", s)
	}
	if !bytes.Equal(m.RawHeader, []byte(in[:45])) {
		t.Errorf("RawHeader %q", m.RawHeader)
	}
	if len(m.Root.Header) != 1 || m.Root.Header[0].Name != "Content-Type" {
		t.Errorf("Header %+v", m.Root.Header)
	}
}

func TestPartPath(t *testing.T) {
	// message/rfc822 at the top: BODY[1] is the whole encapsulated message
	m := mustParse(t, crlf("Content-Type: message/rfc822\n\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\na\n--x\n\nb\n--x--\n"))
	r := m.Root
	tests := []struct {
		path []int
		want *Part
	}{
		{nil, r},
		{[]int{1}, r},
		{[]int{1, 1}, r.Message.Parts[0]},
		{[]int{1, 2}, r.Message.Parts[1]},
		{[]int{1, 3}, nil},
		{[]int{2}, nil},
		{[]int{0}, nil},
		{[]int{1, 1, 1}, nil},
	}
	for _, tt := range tests {
		if got := r.Part(tt.path); got != tt.want {
			t.Errorf("Part(%v) = %p, want %p", tt.path, got, tt.want)
		}
	}
	// an empty multipart has an empty part 1, as its BODYSTRUCTURE says
	e := mustParse(t, crlf("Content-Type: multipart/mixed\n\nx\n")).Root
	p := e.Part([]int{1})
	if p == nil || p.BodyStart != p.End || p.HeaderStart != p.End {
		t.Fatalf("empty multipart part 1 = %+v", p)
	}
	if e.Part([]int{2}) != nil {
		t.Error("empty multipart has a part 2")
	}
}

func TestParseDeepNesting(t *testing.T) {
	const depth = 3 * MaxNesting
	var b strings.Builder
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n", i)
	}
	b.WriteString("Subject: bottom\r\n\r\nend\r\n")
	m := mustParse(t, b.String())
	d := 0
	p := m.Root
	for ; p.Message != nil; p = p.Message {
		d++
	}
	// each message/rfc822 part is the root of the enclosing message's
	// body; the last one keeps its message, which is not parsed further
	// and so reported as an opaque part
	if d != MaxNesting {
		t.Errorf("message depth %d, want %d", d, MaxNesting)
	}
	if p.Type != "application" || p.Subtype != "octet-stream" || !strings.Contains(p.Envelope, `"level 100"`) {
		t.Errorf("deepest part %s/%s envelope %s", p.Type, p.Subtype, p.Envelope)
	}

	var mp strings.Builder
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&mp, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	mp.WriteString("\r\nx\r\n")
	m = mustParse(t, mp.String())
	d = 0
	for p := m.Root; len(p.Parts) > 0; p = p.Parts[0] {
		d++
	}
	if d != MaxNesting-1 {
		t.Errorf("multipart depth %d, want %d", d, MaxNesting-1)
	}
}

func TestParseHugeHeader(t *testing.T) {
	var b strings.Builder
	for b.Len() < MaxHeaderBytes+1000 {
		b.WriteString("X-Filler: " + strings.Repeat("x", 200) + "\r\n")
	}
	b.WriteString("Subject: late\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\nx\r\n--q--\r\n")
	m := mustParse(t, b.String())
	if m.RawHeader != nil {
		t.Error("RawHeader kept beyond MaxHeaderBytes")
	}
	if !m.Root.Multipart || len(m.Root.Parts) != 1 {
		t.Fatalf("Content-Type after %d header bytes lost: %s", MaxHeaderBytes, m.Root.BodyStructure(true))
	}
	if !strings.Contains(m.Root.Envelope, `"late"`) {
		t.Errorf("envelope %s", m.Root.Envelope)
	}
}

func TestParseLongLines(t *testing.T) {
	// lines longer than the read buffer, in header and body
	long := strings.Repeat("y", 3*readBufSize)
	in := "Subject: " + long + "\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n\r\n" + long + "\r\n--z--\r\n"
	m := mustParse(t, in)
	if len(m.Root.Parts) != 1 || m.Root.Parts[0].End-m.Root.Parts[0].BodyStart != int64(len(long)) {
		t.Fatalf("%s", m.Root.BodyStructure(false))
	}
}

type errReader struct{ n int }

var errBoom = errors.New("boom")

func (r *errReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errBoom
	}
	r.n--
	return copy(p, "Subject: x\r\n"), nil
}

func TestParseReaderError(t *testing.T) {
	if _, err := Parse(&errReader{n: 3}); !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want %v", err, errBoom)
	}
}

func TestParseHeader(t *testing.T) {
	h := ParseHeader([]byte("Subject : folded\r\n\tline\r\nNoColon\r\nX-Empty:\r\n\r\nBody: no\r\n"))
	want := []HeaderField{
		{Name: "Subject", Raw: []byte("Subject : folded\r\n\tline\r\n"), Value: "folded\tline"},
		{Name: "NoColon", Raw: []byte("NoColon\r\n"), Value: ""},
		{Name: "X-Empty", Raw: []byte("X-Empty:\r\n"), Value: ""},
	}
	if len(h) != len(want) {
		t.Fatalf("got %d fields: %+v", len(h), h)
	}
	for i := range want {
		if h[i].Name != want[i].Name || !bytes.Equal(h[i].Raw, want[i].Raw) || h[i].Value != want[i].Value {
			t.Errorf("field %d: got %+v, want %+v", i, h[i], want[i])
		}
	}
	if v, ok := h.Get("subject"); !ok || v != "folded\tline" {
		t.Errorf("Get = %q %v", v, ok)
	}
	if _, ok := h.Get("missing"); ok {
		t.Error("Get(missing) found something")
	}
}

func TestEnvelope(t *testing.T) {
	tests := []struct {
		name, hdr, want string
	}{
		{"empty", "", `(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)`},
		{"all fields, sender and reply-to default to from",
			"Date: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: hi\nFrom: Ann <ann@example.com>\nTo: bob@example.com, \"Carl, Jr.\" <carl@example.com>\nCc: d@example.com\nBcc: e@example.com\nIn-Reply-To: <a@b>\nMessage-ID: <c@d>\n",
			`("Mon, 1 Jan 2024 00:00:00 +0000" "hi" (("Ann" NIL "ann" "example.com")) (("Ann" NIL "ann" "example.com")) (("Ann" NIL "ann" "example.com")) ((NIL NIL "bob" "example.com")("Carl, Jr." NIL "carl" "example.com")) ((NIL NIL "d" "example.com")) ((NIL NIL "e" "example.com")) "<a@b>" "<c@d>")`},
		{"group", "To: A Group: a@b.c, d@e.f;\n",
			`(NIL NIL NIL NIL NIL ((NIL NIL "A Group" NIL)(NIL NIL "a" "b.c")(NIL NIL "d" "e.f")(NIL NIL NIL NIL)) NIL NIL NIL NIL)`},
		{"empty group", "To: undisclosed-recipients:;\n",
			`(NIL NIL NIL NIL NIL ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL)`},
		{"route-addr", "From: <@r1.example,@r2.example:u@d.example>\n",
			`(NIL NIL ((NIL "@r1.example,@r2.example" "u" "d.example")) ((NIL "@r1.example,@r2.example" "u" "d.example")) ((NIL "@r1.example,@r2.example" "u" "d.example")) NIL NIL NIL NIL NIL)`},
		{"comment gives the name", "To: u@d.example (Some One)\n",
			`(NIL NIL NIL NIL NIL (("Some One" NIL "u" "d.example")) NIL NIL NIL NIL)`},
		{"missing domain", "To: user\n", `(NIL NIL NIL NIL NIL ((NIL NIL "user" "MISSING_DOMAIN")) NIL NIL NIL NIL)`},
		{"display name only", "To: Some One\n", `(NIL NIL NIL NIL NIL (("Some One" NIL "MISSING_MAILBOX" "MISSING_DOMAIN")) NIL NIL NIL NIL)`},
		{"quoted name only", "To: \"Some One\"\n", `(NIL NIL NIL NIL NIL (("Some One" NIL "MISSING_MAILBOX" "MISSING_DOMAIN")) NIL NIL NIL NIL)`},
		{"unterminated angle-addr", "To: Name <invalid\n", `(NIL NIL NIL NIL NIL (("Name" NIL "invalid" "SYNTAX_ERROR")) NIL NIL NIL NIL)`},
		{"empty address in list", "To: , a@b.c\n", `(NIL NIL NIL NIL NIL ((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")(NIL NIL "a" "b.c")) NIL NIL NIL NIL)`},
		{"null sender", "From: <>\n", `(NIL NIL ((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")) ((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")) ((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")) NIL NIL NIL NIL NIL)`},
		{"empty field is NIL", "To:\nSubject:\n", `(NIL "" NIL NIL NIL NIL NIL NIL NIL NIL)`},
		{"name with quotes and white space is a literal", "From: \"A  \\\"B\\\"\" <a@b.c>\n",
			"(NIL NIL (({5}\r\nA \"B\" NIL \"a\" \"b.c\")) (({5}\r\nA \"B\" NIL \"a\" \"b.c\")) (({5}\r\nA \"B\" NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL)"},
		{"folded subject is a literal with white space collapsed", "Subject: one\n  two\n",
			"(NIL {7}\r\none two NIL NIL NIL NIL NIL NIL NIL NIL)"},
		{"UTF-8 subject is a literal", "Subject: caf\xc3\xa9\n",
			"(NIL {5}\r\ncaf\xc3\xa9 NIL NIL NIL NIL NIL NIL NIL NIL)"},
		{"RFC 2047 is not decoded", "Subject: =?utf-8?q?caf=C3=A9?=\n",
			`(NIL "=?utf-8?q?caf=C3=A9?=" NIL NIL NIL NIL NIL NIL NIL NIL)`},
		{"last Subject wins, From fields add up", "Subject: a\nSubject: b\nFrom: x@y.z\nFrom: u@v.w\n",
			`(NIL "b" ((NIL NIL "x" "y.z")(NIL NIL "u" "v.w")) ((NIL NIL "x" "y.z")(NIL NIL "u" "v.w")) ((NIL NIL "x" "y.z")(NIL NIL "u" "v.w")) NIL NIL NIL NIL NIL)`},
		{"NUL in date becomes U+FFFD", "Date: a\x00b\n", "({5}\r\na\xef\xbf\xbdb NIL NIL NIL NIL NIL NIL NIL NIL NIL)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Envelope(ParseHeader([]byte(crlf(tt.hdr) + "\r\n")))
			if got != tt.want {
				t.Errorf("\n got %q\nwant %q", got, tt.want)
			}
			if err := checkIMAPEnvelope(got); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"abc", `"abc"`},
		{`a"b\c`, `"a\"b\\c"`},
		{`""""`, `"\"\"\"\""`},
		{`"""""`, "{5}\r\n\"\"\"\"\""},
		{"caf\xc3\xa9", "{5}\r\ncaf\xc3\xa9"},
		{"a\r\nb", "{4}\r\na\r\nb"},
		{"ab\x00cd", `"ab"`},
	}
	for _, tt := range tests {
		if got := string(appendString(nil, tt.in)); got != tt.want {
			t.Errorf("appendString(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	human := []struct{ in, want string }{
		{"", `""`},
		{"plain words", `"plain words"`},
		{"  ", `""`},
		{" lead", "{4}\r\nlead"},
		{"a\tb", "{3}\r\na b"},
		{"x\x00y", "{3}\r\nx\x80y"},
	}
	for _, tt := range human {
		if got := string(appendHumanString(nil, tt.in)); got != tt.want {
			t.Errorf("appendHumanString(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDecodeParam(t *testing.T) {
	tests := []struct {
		p          Param
		name, want string
	}{
		{Param{"filename*", "utf-8''%E2%82%AC%20rates.txt"}, "filename", "€ rates.txt"},
		{Param{"title*", "iso-8859-1'en'caf%E9"}, "title", "café"},
		{Param{"name", "=?utf-8?B?w6l0w6k=?=.pdf"}, "name", "été.pdf"},
		{Param{"name", "plain.txt"}, "name", "plain.txt"},
		{Param{"name", "caf\xe9"}, "name", "café"},
		{Param{"filename*", "no-quotes"}, "filename", "no-quotes"},
		{Param{"filename*", "x-unknown''%41"}, "filename", "x-unknown''%41"},
	}
	for _, tt := range tests {
		name, v := DecodeParam(tt.p)
		if name != tt.name || v != tt.want {
			t.Errorf("DecodeParam(%v) = %q %q, want %q %q", tt.p, name, v, tt.name, tt.want)
		}
	}
	m := mustParse(t, crlf("Content-Type: text/plain; name*0*=utf-8''%E2%82; name*1*=%AC.txt\nContent-Disposition: attachment; filename=\"a.txt\"\n\nx\n"))
	if v, ok := m.Root.Param("NAME"); !ok || v != "€.txt" {
		t.Errorf("Param(name) = %q %v", v, ok)
	}
	if v, ok := m.Root.DispositionParam("filename"); !ok || v != "a.txt" {
		t.Errorf("DispositionParam(filename) = %q %v", v, ok)
	}
}

func TestDecodeHeaderValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"=?utf-8?q?caf=C3=A9?=", "café"},
		{"=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard"},
		{"=?utf-8?b?w6l0w6k=?= =?utf-8?b?IGV0?=\r\n =?utf-8?q?_hiver?=", "été et hiver"},
		{"a =?utf-8?q?b?= c", "a b c"},
		{"=?utf-8*en?q?lang?=", "lang"},
		{"=?ks_c_5601-1987?B?x9Gx2w==?=", "한글"},
		{"=?iso-2022-jp?B?GyRCJEYkOSRIGyhC?=", "てすと"},
		{"=?utf-8?q?caf=C3?= =?UTF-8?q?=A9?=", "café"},
		{"=?iso-2022-jp?B?GyRCJEY=?= =?iso-2022-jp?B?JDkkSBsoQg==?=", "てすと"},
		{"=?utf-8?q?a?= =?iso-8859-1?q?=E9?=", "aé"},
		{"=?x-unknown?q?abc?=", "=?x-unknown?q?abc?="},
		{"=?utf-8?x?abc?=", "=?utf-8?x?abc?="},
		{"broken =?utf-8?q?abc", "broken =?utf-8?q?abc"},
		{"raw caf\xc3\xa9", "raw café"},
		{"latin1 caf\xe9", "latin1 café"},
	}
	for _, tt := range tests {
		if got := DecodeHeaderValue(tt.in); got != tt.want {
			t.Errorf("DecodeHeaderValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNewDecoder(t *testing.T) {
	tests := []struct{ enc, in, want string }{
		{"base64", "aGVs\r\nbG8g\r\nd29y bGQ=\r\n", "hello world"},
		{"BASE64", "aGVsbG8*!gd29ybGQ", "hello world"},
		{"base64", "aGk=aGk=", "hihi"},
		{"quoted-printable", "caf=C3=A9 =\r\nsoft\r\nnext  \r\n", "café soft\r\nnext\r\n"},
		{"Quoted-Printable", "a=ZZb=3d=\n", "a=ZZb="},
		{"quoted-printable", "bare lf\nline", "bare lf\nline"},
		{"7bit", "as =3D is\r\n", "as =3D is\r\n"},
		{"", "x", "x"},
	}
	for _, tt := range tests {
		got, err := io.ReadAll(NewDecoder(tt.enc, iotestOneByte(strings.NewReader(tt.in))))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("%s %q: got %q, want %q", tt.enc, tt.in, got, tt.want)
		}
	}
}

// iotestOneByte reads one byte at a time, to exercise streaming.
func iotestOneByte(r io.Reader) io.Reader { return &oneByte{r} }

type oneByte struct{ r io.Reader }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestDecodeStructureErrors(t *testing.T) {
	good := EncodeStructure(mustParse(t, crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n")).Root)
	tests := map[string][]byte{
		"empty":         nil,
		"other version": append([]byte{structVersion + 1}, good[1:]...),
		"truncated":     good[:len(good)-3],
		"trailing":      append(append([]byte{}, good...), 0),
		"huge count":    {structVersion, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
	}
	for name, b := range tests {
		if p, err := DecodeStructure(b); !errors.Is(err, ErrBadStructure) || p != nil {
			t.Errorf("%s: got %v, %v; want ErrBadStructure", name, p, err)
		}
	}
	if _, err := DecodeStructure(good); err != nil {
		t.Fatal(err)
	}
}

func TestParseKeptHeadersBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=q\r\n\r\n")
	filler := "X-Filler: " + strings.Repeat("x", 100<<10) + "\r\n"
	const parts = 12
	for i := 0; i < parts; i++ {
		b.WriteString("--q\r\n")
		for j := 0; j < 5; j++ {
			b.WriteString(filler)
		}
		fmt.Fprintf(&b, "Content-Type: text/x-%d\r\n\r\nbody\r\n", i)
	}
	b.WriteString("--q--\r\n")
	m := mustParse(t, b.String())
	if len(m.Root.Parts) != parts {
		t.Fatalf("%d parts", len(m.Root.Parts))
	}
	kept := 0
	for i, p := range m.Root.Parts {
		if p.Subtype != fmt.Sprintf("x-%d", i) {
			t.Errorf("part %d: subtype %q", i, p.Subtype)
		}
		if p.Header != nil {
			kept++
		}
	}
	// each header is about 500 KiB: 8 fit in maxKeptHeaders
	if kept != maxKeptHeaders/(5*len(filler)) {
		t.Errorf("%d headers kept, want %d", kept, maxKeptHeaders/(5*len(filler)))
	}
}
