package imapwire

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// mutf7B64 is the modified base64 of RFC 3501 §5.1.3: "," instead of
// "/", no padding; Strict rejects non-zero trailing bits.
var mutf7B64 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding).Strict()

// ErrBadMUTF7 is returned (wrapped) by DecodeMUTF7 for input that is not
// canonical modified UTF-7.
var ErrBadMUTF7 = errors.New("imapwire: invalid modified UTF-7")

func isPrintableASCII(r rune) bool { return r >= 0x20 && r <= 0x7e }

// EncodeMUTF7 encodes a UTF-8 mailbox name in modified UTF-7 (RFC 3501
// §5.1.3): printable US-ASCII except "&" stands for itself, "&" becomes
// "&-", every maximal run of other characters becomes "&" + modified
// base64 of its UTF-16BE + "-". The result is the canonical form that
// DecodeMUTF7 accepts. Invalid UTF-8 bytes are encoded as U+FFFD. A name
// of printable ASCII without "&" is returned as is, without allocating.
func EncodeMUTF7(s string) string {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x7e && s[i] != '&' {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	var units []uint16
	var raw []byte
	for i < len(s) {
		c := s[i]
		if c >= 0x20 && c <= 0x7e {
			if c == '&' {
				b.WriteString("&-")
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		units = units[:0]
		for i < len(s) {
			r, size := utf8.DecodeRuneInString(s[i:])
			if isPrintableASCII(r) {
				break
			}
			units = utf16.AppendRune(units, r)
			i += size
		}
		raw = raw[:0]
		for _, u := range units {
			raw = append(raw, byte(u>>8), byte(u))
		}
		b.WriteByte('&')
		b.WriteString(mutf7B64.EncodeToString(raw))
		b.WriteByte('-')
	}
	return b.String()
}

// DecodeMUTF7 decodes a modified UTF-7 mailbox name to UTF-8; it fails
// (with an error wrapping ErrBadMUTF7; the server answers BAD or NO) on
// anything but the canonical encoding EncodeMUTF7 produces: bytes outside
// printable US-ASCII, an unterminated "&", bad or non-canonical base64
// (non-zero trailing bits, odd byte count), broken surrogate pairs, an
// encoded printable ASCII character, or two adjacent encoded runs
// ("&AOk-&AOk-" must be "&AOkA6Q-"). So EncodeMUTF7(DecodeMUTF7(s)) == s
// whenever decoding succeeds.
func DecodeMUTF7(s string) (string, error) {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x7e && s[i] != '&' {
		i++
	}
	if i == len(s) {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	lastRunEnd := -1
	for i < len(s) {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", badMUTF7("byte 0x%02x must be encoded", c)
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			continue
		}
		j := strings.IndexByte(s[i+1:], '-')
		if j < 0 {
			return "", badMUTF7("unterminated & sequence")
		}
		enc := s[i+1 : i+1+j]
		if enc == "" {
			b.WriteByte('&')
			i += 2
			continue
		}
		if lastRunEnd == i {
			return "", badMUTF7("adjacent encoded sequences")
		}
		raw, err := mutf7B64.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 {
			return "", badMUTF7("bad modified base64 %q", enc)
		}
		for k := 0; k < len(raw); k += 2 {
			u := rune(raw[k])<<8 | rune(raw[k+1])
			switch {
			case utf16.IsSurrogate(u):
				if u >= 0xdc00 || k+3 >= len(raw) {
					return "", badMUTF7("unpaired surrogate")
				}
				u2 := rune(raw[k+2])<<8 | rune(raw[k+3])
				r := utf16.DecodeRune(u, u2)
				if r == utf8.RuneError {
					return "", badMUTF7("unpaired surrogate")
				}
				b.WriteRune(r)
				k += 2
			case isPrintableASCII(u):
				return "", badMUTF7("printable character %q must not be encoded", u)
			default:
				b.WriteRune(u)
			}
		}
		i += j + 2
		lastRunEnd = i
	}
	return b.String(), nil
}

func badMUTF7(format string, args ...any) error {
	return &mutf7Error{msg: fmt.Sprintf(format, args...)}
}

type mutf7Error struct{ msg string }

func (e *mutf7Error) Error() string { return "imapwire: invalid modified UTF-7: " + e.msg }
func (e *mutf7Error) Unwrap() error { return ErrBadMUTF7 }
