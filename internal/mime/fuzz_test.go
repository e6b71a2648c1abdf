package mime

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

var fuzzSeeds = []string{
	"",
	"Subject: x\r\n\r\nbody\r\n",
	"Subject: x\n\nbody",
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
	"Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/mixed; boundary=ab\n--ab\n\n--ab--\n--a--\n",
	"Content-Type: message/rfc822\r\n\r\nFrom: a@b\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: s\r\n\r\n--d--\r\n",
	"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--x\r\n",
	"Content-Type: text/plain; a*0*=utf-8''%41; a*1=b; a*3=c\r\nContent-Disposition: ;\r\n\r\n",
	"To: g: a@b, <@r:c@d>, e (f), \"q\\\"\"@x;\r\nFrom: <>\r\n\r\n",
	"Content-Type: message/global\r\n\r\n\x00\r\n--\r\n",
	"\r\n\r\n\r\n",
	" folded first\r\n:\r\n\r\n",
}

// FuzzParse checks that Parse never fails or panics on a bytes.Reader and
// that its result always satisfies the invariants TestCorpus checks (offsets,
// line counts, round trip, valid IMAP syntax).
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkTree(data, m); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzEnvelope feeds arbitrary address and string fields to Envelope: it
// must always produce a valid IMAP envelope.
func FuzzEnvelope(f *testing.F) {
	for _, s := range []string{"a@b.c", "Name <a@b.c>, g: x@y;", "<@a,@b:c@d>", "\"unterminated", "(comment", "a\x00b", "caf\xc3\xa9 <a@b>", ",,", ":;", "<", "@"} {
		f.Add(s, "subject")
	}
	f.Fuzz(func(t *testing.T, addr, subject string) {
		// keep the value inside its field
		addr = strings.NewReplacer("\r", " ", "\n", " ").Replace(addr)
		subject = strings.NewReplacer("\r", " ", "\n", " ").Replace(subject)
		h := ParseHeader([]byte("From: " + addr + "\r\nTo: " + addr + "\r\nSubject: " + subject + "\r\nDate: " + subject + "\r\n\r\n"))
		env := Envelope(h)
		if err := checkIMAPEnvelope(env); err != nil {
			t.Fatalf("%q: %v", env, err)
		}
		_ = DecodeHeaderValue(addr)
	})
}

// FuzzDecodeStructure checks that DecodeStructure never panics and that
// what it accepts encodes back to the same bytes.
func FuzzDecodeStructure(f *testing.F) {
	for _, s := range fuzzSeeds {
		m, _ := Parse(strings.NewReader(s))
		f.Add(EncodeStructure(m.Root))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeStructure(b)
		if err != nil {
			return
		}
		p.BodyStructure(true)
		p.Part([]int{1, 1})
		if again := EncodeStructure(p); len(again) > len(b) {
			t.Fatalf("re-encoding grew: %d > %d", len(again), len(b))
		}
	})
}

// FuzzDecoder checks that the transfer decoders never fail on bad input.
func FuzzDecoder(f *testing.F) {
	f.Add("aGVsbG8=\r\n", true)
	f.Add("a=3D=\r\nb= \r\n=ZZ", false)
	f.Fuzz(func(t *testing.T, in string, b64 bool) {
		enc := "quoted-printable"
		if b64 {
			enc = "base64"
		}
		out, err := io.ReadAll(NewDecoder(enc, strings.NewReader(in)))
		if err != nil {
			t.Fatal(err)
		}
		if len(out) > len(in) {
			t.Fatalf("decoded %d bytes from %d", len(out), len(in))
		}
	})
}
