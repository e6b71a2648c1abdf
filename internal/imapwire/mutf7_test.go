package imapwire

import (
	"errors"
	"testing"
	"unicode/utf8"
)

func TestMUTF7RoundTrip(t *testing.T) {
	cases := []struct{ utf8, wire string }{
		{"", ""},
		{"INBOX", "INBOX"},
		{"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"}, // RFC 3501 §5.1.3
		{"&", "&-"},
		{"A&B&&", "A&-B&-&-"},
		{"été", "&AOk-t&AOk-"},
		{"Entwürfe", "Entw&APw-rfe"},
		{"é&", "&AOk-&-"},
		{"&é", "&-&AOk-"},
		{"éé", "&AOkA6Q-"},
		{"ééé", "&AOkA6QDp-"},
		{"\x7f", "&AH8-"},
		{"\t", "&AAk-"},
		{"😀", "&2D3eAA-"}, // surrogate pair
		{"a😀b", "a&2D3eAA-b"},
		{"Приве́т", "&BB8EQAQ4BDIENQMBBEI-"},
		{"\uffff", "&,,8-"},
	}
	for _, tc := range cases {
		if got := EncodeMUTF7(tc.utf8); got != tc.wire {
			t.Errorf("EncodeMUTF7(%q) = %q, want %q", tc.utf8, got, tc.wire)
		}
		got, err := DecodeMUTF7(tc.wire)
		if err != nil || got != tc.utf8 {
			t.Errorf("DecodeMUTF7(%q) = %q, %v, want %q", tc.wire, got, err, tc.utf8)
		}
	}
}

func TestMUTF7DecodeErrors(t *testing.T) {
	cases := []struct{ in, msg string }{
		{"&", "imapwire: invalid modified UTF-7: unterminated & sequence"},
		{"a&AOk", "imapwire: invalid modified UTF-7: unterminated & sequence"},
		{"é", "imapwire: invalid modified UTF-7: byte 0xc3 must be encoded"},
		{"a\tb", "imapwire: invalid modified UTF-7: byte 0x09 must be encoded"},
		{"a\x7f", "imapwire: invalid modified UTF-7: byte 0x7f must be encoded"},
		{"&AGE-", `imapwire: invalid modified UTF-7: printable character 'a' must not be encoded`},
		{"&ACY-", `imapwire: invalid modified UTF-7: printable character '&' must not be encoded`},
		{"&AOk-&AOk-", "imapwire: invalid modified UTF-7: adjacent encoded sequences"},
		{"&AOl-", `imapwire: invalid modified UTF-7: bad modified base64 "AOl"`},   // non-zero trailing bits
		{"&AO-", `imapwire: invalid modified UTF-7: bad modified base64 "AO"`},     // 1 byte
		{"&A-", `imapwire: invalid modified UTF-7: bad modified base64 "A"`},       // 6 bits
		{"&AOkA-", `imapwire: invalid modified UTF-7: bad modified base64 "AOkA"`}, // 3 bytes
		{"&AOk=-", `imapwire: invalid modified UTF-7: bad modified base64 "AOk="`},
		{"&AO/p-", `imapwire: invalid modified UTF-7: bad modified base64 "AO/p"`}, // "/" is ","
		{"&2D0-", "imapwire: invalid modified UTF-7: unpaired surrogate"},
		{"&3gA-", "imapwire: invalid modified UTF-7: unpaired surrogate"},
		{"&2D3YPQ-", "imapwire: invalid modified UTF-7: unpaired surrogate"},
		{"&2D0AQQ-", "imapwire: invalid modified UTF-7: unpaired surrogate"},
	}
	for _, tc := range cases {
		got, err := DecodeMUTF7(tc.in)
		if err == nil {
			t.Errorf("DecodeMUTF7(%q) = %q, want error", tc.in, got)
			continue
		}
		if err.Error() != tc.msg || !errors.Is(err, ErrBadMUTF7) {
			t.Errorf("DecodeMUTF7(%q): %v, want %s", tc.in, err, tc.msg)
		}
	}
}

func TestEncodeMUTF7NoAlloc(t *testing.T) {
	if n := testing.AllocsPerRun(10, func() { EncodeMUTF7("INBOX/Sent Items") }); n != 0 {
		t.Fatalf("%v allocations for plain ASCII", n)
	}
	if n := testing.AllocsPerRun(10, func() { DecodeMUTF7("INBOX/Sent Items") }); n != 0 {
		t.Fatalf("%v allocations for plain ASCII", n)
	}
}

func FuzzMUTF7(f *testing.F) {
	for _, s := range []string{"", "INBOX", "~peter/mail/&U,BTFw-/&ZeVnLIqe-", "&-", "&AOk-&-", "été", "😀", "\x00\xff", "&2D3eAA-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Every valid UTF-8 name survives encoding and decoding.
		if utf8.ValidString(s) {
			enc := EncodeMUTF7(s)
			dec, err := DecodeMUTF7(enc)
			if err != nil || dec != s {
				t.Fatalf("round trip of %q via %q: %q, %v", s, enc, dec, err)
			}
		}
		// Whatever decodes is canonical: encoding gives the input back.
		if dec, err := DecodeMUTF7(s); err == nil {
			if !utf8.ValidString(dec) {
				t.Fatalf("DecodeMUTF7(%q) = invalid UTF-8 %q", s, dec)
			}
			if enc := EncodeMUTF7(dec); enc != s {
				t.Fatalf("DecodeMUTF7(%q) = %q, which encodes to %q", s, dec, enc)
			}
		}
	})
}
