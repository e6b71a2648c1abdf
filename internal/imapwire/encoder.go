package imapwire

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxQuoted is the longest string String writes in quoted form; longer
// ones become literals.
const MaxQuoted = 4096

// Raw writes s as it is (pre-encoded syntax such as a stored BODYSTRUCTURE).
func (e *Encoder) Raw(s string) *Encoder { e.w.WriteString(s); return e }

// Atom writes an atom (no checks).
func (e *Encoder) Atom(s string) *Encoder { e.w.WriteString(s); return e }

// SP writes a space.
func (e *Encoder) SP() *Encoder { e.w.WriteByte(' '); return e }

// Number writes a number in decimal, without allocating.
func (e *Encoder) Number(n uint64) *Encoder {
	e.w.Write(strconv.AppendUint(e.scratch[:0], n, 10))
	return e
}

// quotable reports whether s can be written as a quoted string: no NUL,
// CR or LF, at most MaxQuoted bytes, 8-bit only in UTF8 mode and then
// valid UTF-8.
func (e *Encoder) quotable(s string) bool {
	if len(s) > MaxQuoted {
		return false
	}
	eight := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0 || c == '\r' || c == '\n':
			return false
		case c >= 0x80:
			if !e.UTF8 {
				return false
			}
			eight = true
		}
	}
	return !eight || utf8.ValidString(s)
}

// String writes s as a quoted string (escaping " and \), or as a literal
// "{n}\r\n" + s when it cannot be quoted (CR, LF, NUL, 8-bit without
// UTF8, invalid UTF-8, longer than MaxQuoted). NUL cannot be represented
// in IMAP strings at all; such a string is still written as a literal.
func (e *Encoder) String(s string) *Encoder {
	if !e.quotable(s) {
		e.LiteralHeader(int64(len(s)), false)
		e.w.WriteString(s)
		return e
	}
	e.w.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			e.w.WriteString(s[start:i])
			e.w.WriteByte('\\')
			start = i
		}
	}
	e.w.WriteString(s[start:])
	e.w.WriteByte('"')
	return e
}

// isAtom reports whether s can be written as an astring atom that is not
// mistaken for NIL.
func isAStringAtom(s string) bool {
	if s == "" || strings.EqualFold(s, "NIL") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAStringChar(s[i]) {
			return false
		}
	}
	return true
}

// AString writes s as an atom when it is a valid astring atom (and not
// "NIL"), else like String.
func (e *Encoder) AString(s string) *Encoder {
	if isAStringAtom(s) {
		e.w.WriteString(s)
		return e
	}
	return e.String(s)
}

// NString writes NIL when ok is false, else String(s).
func (e *Encoder) NString(s string, ok bool) *Encoder {
	if !ok {
		e.w.WriteString("NIL")
		return e
	}
	return e.String(s)
}

// Mailbox writes a mailbox name (UTF-8 in), modified-UTF-7 encoded unless
// UTF8 is set, as an astring; any case of "INBOX" is written "INBOX".
func (e *Encoder) Mailbox(name string) *Encoder {
	if strings.EqualFold(name, "INBOX") {
		e.w.WriteString("INBOX")
		return e
	}
	if !e.UTF8 {
		name = EncodeMUTF7(name)
	}
	return e.AString(name)
}

// BeginList writes "(".
func (e *Encoder) BeginList() *Encoder { e.w.WriteByte('('); return e }

// EndList writes ")".
func (e *Encoder) EndList() *Encoder { e.w.WriteByte(')'); return e }

// Flags writes a parenthesised flag list, flags separated by SP and
// written as they are (flags are atoms or "\"atom).
func (e *Encoder) Flags(flags []string) *Encoder {
	e.w.WriteByte('(')
	for i, f := range flags {
		if i > 0 {
			e.w.WriteByte(' ')
		}
		e.w.WriteString(f)
	}
	e.w.WriteByte(')')
	return e
}

// DateTimeLayout is the time layout of an IMAP date-time without quotes
// (RFC 3501 §9 date-time, with a 2-digit day).
const DateTimeLayout = "02-Jan-2006 15:04:05 -0700"

// DateTime writes a quoted date-time in IMAP form, "02-Jan-2006 15:04:05
// -0700", in t's own zone, without allocating.
func (e *Encoder) DateTime(t time.Time) *Encoder {
	b := append(e.scratch[:0], '"')
	b = t.AppendFormat(b, DateTimeLayout)
	b = append(b, '"')
	e.w.Write(b)
	return e
}

// LiteralHeader writes "{n}\r\n", or "~{n}\r\n" when binary (RFC 3516
// literal8, for BINARY[] data holding NUL); the caller then writes
// exactly n bytes with Write.
func (e *Encoder) LiteralHeader(n int64, binary bool) *Encoder {
	b := e.scratch[:0]
	if binary {
		b = append(b, '~')
	}
	b = append(b, '{')
	b = strconv.AppendInt(b, n, 10)
	b = append(b, "}\r\n"...)
	e.w.Write(b)
	return e
}

// Write writes raw bytes (literal contents).
func (e *Encoder) Write(p []byte) (int, error) { return e.w.Write(p) }

// SeqSet writes a sequence set as the client would ("1:3,7,9:*"; "$" for
// a saved set). An empty set writes nothing.
func (e *Encoder) SeqSet(s SeqSet) *Encoder {
	if s.Saved {
		e.w.WriteByte('$')
		return e
	}
	for i, r := range s.Ranges {
		if i > 0 {
			e.w.WriteByte(',')
		}
		e.seqNum(r.Start)
		if r.Stop != r.Start {
			e.w.WriteByte(':')
			e.seqNum(r.Stop)
		}
	}
	return e
}

func (e *Encoder) seqNum(n uint32) {
	if n == 0 {
		e.w.WriteByte('*')
		return
	}
	e.Number(uint64(n))
}

// CRLF ends a response line.
func (e *Encoder) CRLF() *Encoder { e.w.WriteString("\r\n"); return e }

// Flush flushes the underlying writer and returns the first write error.
func (e *Encoder) Flush() error { return e.w.Flush() }
