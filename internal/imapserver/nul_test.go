package imapserver

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestNulReplacer checks that every NUL becomes 0x80 and nothing else
// changes, whole and one byte per Read.
func TestNulReplacer(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"\x00", "\x80"},
		{"\x00\x00", "\x80\x80"},
		{"a\x00b\x00\x00c\x00", "a\x80b\x80\x80c\x80"},
		{"\x80\xff\x01", "\x80\xff\x01"},
		{strings.Repeat("x", 5000) + "\x00" + strings.Repeat("y", 5000), strings.Repeat("x", 5000) + "\x80" + strings.Repeat("y", 5000)},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(tt.in)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			got, err := io.ReadAll(nulReplacer{r})
			if err != nil {
				t.Fatalf("%q: %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("%.20q (one byte %v): got %.40q, want %.40q", tt.in, oneByte, got, tt.want)
			}
		}
	}
}
