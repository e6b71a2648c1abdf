package imapwire

// This file fixes the API imapserver programs against. The bodies are
// placeholders until the decoder and encoder are written; signatures and
// doc comments are the contract.

import (
	"bufio"
	"errors"
	"io"
	"time"
)

// ErrNotImplemented marks a placeholder.
var errNotImplemented = errors.New("imapwire: not implemented")

// SyntaxError is a malformed command. The server answers it with
// "tag BAD <Msg>" and then calls Decoder.DiscardLine.
type SyntaxError struct {
	Msg string
}

func (e *SyntaxError) Error() string { return "imapwire: syntax error: " + e.Msg }

// ErrLiteralTooLarge is returned (wrapped in a *SyntaxError's sibling, by
// errors.Is) when a literal exceeds the decoder's limit for its context.
var ErrLiteralTooLarge = errors.New("imapwire: literal too large")

// Decoder reads commands from a client. It is not safe for concurrent use.
//
// Synchronizing literals ({n}\r\n): before reading the literal's bytes the
// decoder calls the Continue function given to NewDecoder, which must
// write "+ ..." to the client and flush. Non-synchronizing literals
// ({n+}, RFC 7888) are read at once. LITERAL- limits {n+} to 4096 bytes;
// the decoder accepts larger ones anyway when MaxLiteralPlus is 0.
type Decoder struct {
	r *bufio.Reader
	// Continue is called before a synchronizing literal's bytes are read.
	Continue func() error
	// MaxLiteral bounds literals read into strings (not those streamed by
	// LiteralReader). Default 64 KiB when 0.
	MaxLiteral int64
	// UTF8 allows raw UTF-8 in quoted strings (RFC 9051, RFC 6855).
	UTF8 bool
}

// NewDecoder returns a decoder reading from r.
func NewDecoder(r *bufio.Reader, cont func() error) *Decoder {
	return &Decoder{r: r, Continue: cont}
}

// Tag reads a command tag (RFC 3501 "tag"). io.EOF at a clean end.
func (d *Decoder) Tag() (string, error) { return "", errNotImplemented }

// Atom reads an atom (returned as written; callers upper-case command names).
func (d *Decoder) Atom() (string, error) { return "", errNotImplemented }

// SP reads one space.
func (d *Decoder) SP() error { return errNotImplemented }

// CRLF reads the end of the command line.
func (d *Decoder) CRLF() error { return errNotImplemented }

// PeekByte returns the next byte without consuming it.
func (d *Decoder) PeekByte() (byte, error) { return 0, errNotImplemented }

// AtEOL reports whether the next bytes are CRLF (or LF).
func (d *Decoder) AtEOL() bool { return false }

// AString reads an astring: atom (with ']' allowed), quoted string or literal.
func (d *Decoder) AString() (string, error) { return "", errNotImplemented }

// String reads a quoted string or literal.
func (d *Decoder) String() (string, error) { return "", errNotImplemented }

// NString reads a string or NIL; ok is false for NIL.
func (d *Decoder) NString() (s string, ok bool, err error) { return "", false, errNotImplemented }

// Mailbox reads a mailbox name (astring), still in its wire encoding
// (modified UTF-7 unless UTF-8 is enabled); "INBOX" in any case is
// returned as "INBOX".
func (d *Decoder) Mailbox() (string, error) { return "", errNotImplemented }

// ListMailbox reads a LIST pattern (list-mailbox: atom with % * ] or a string).
func (d *Decoder) ListMailbox() (string, error) { return "", errNotImplemented }

// Number reads a 32-bit number; Number64 a 63-bit one (mod-sequence).
func (d *Decoder) Number() (uint32, error)   { return 0, errNotImplemented }
func (d *Decoder) Number64() (uint64, error) { return 0, errNotImplemented }

// List reads "(" elem *(SP elem) ")" calling fn for each element; an empty
// list "()" calls fn never.
func (d *Decoder) List(fn func() error) error { return errNotImplemented }

// SeqSet reads a sequence-set (or "$").
func (d *Decoder) SeqSet() (SeqSet, error) { return SeqSet{}, errNotImplemented }

// FlagList reads "(" flag *(SP flag) ")"; system flags are returned with
// their canonical case (\Seen), keywords as written.
func (d *Decoder) FlagList() ([]string, error) { return nil, errNotImplemented }

// Flag reads a single flag (for STORE without parentheses).
func (d *Decoder) Flag() (string, error) { return "", errNotImplemented }

// DateTime reads a quoted date-time ("17-Jul-1996 02:44:25 -0700").
func (d *Decoder) DateTime() (time.Time, error) { return time.Time{}, errNotImplemented }

// Date reads a search date (date-text, quoted or not).
func (d *Decoder) Date() (time.Time, error) { return time.Time{}, errNotImplemented }

// Search reads the arguments of SEARCH after the command name (the SP that
// follows it included), through the end of line exclusive.
func (d *Decoder) Search() (*SearchCommand, error) { return nil, errNotImplemented }

// FetchItems reads a fetch-att list, a single fetch-att, or a macro.
func (d *Decoder) FetchItems() ([]FetchItem, error) { return nil, errNotImplemented }

// Store reads the arguments of STORE after the sequence set and its SP.
func (d *Decoder) Store() (*StoreCommand, error) { return nil, errNotImplemented }

// Literal reads a literal header "{n}" / "{n+}" and, for a synchronizing
// one, calls Continue. It returns a reader of exactly n bytes, which the
// caller must drain before decoding further. Used for APPEND message data,
// which is streamed, never buffered whole.
func (d *Decoder) Literal() (n int64, r io.Reader, err error) { return 0, nil, errNotImplemented }

// Line reads a whole line (for SASL responses after AUTHENTICATE), without
// the CRLF, up to max bytes.
func (d *Decoder) Line(max int) (string, error) { return "", errNotImplemented }

// DiscardLine skips to the end of the current command line after an error,
// skipping (not continuing) any literal announced on it.
func (d *Decoder) DiscardLine() error { return errNotImplemented }

// Encoder writes responses. It is not safe for concurrent use.
type Encoder struct {
	w *bufio.Writer
	// UTF8 lets strings carry raw UTF-8 in quoted form (after ENABLE
	// UTF8=ACCEPT or IMAP4rev2); otherwise 8-bit strings become literals.
	UTF8 bool
}

// NewEncoder returns an encoder writing to w.
func NewEncoder(w *bufio.Writer) *Encoder { return &Encoder{w: w} }

// Raw writes s as it is (pre-encoded syntax such as a stored BODYSTRUCTURE).
func (e *Encoder) Raw(s string) *Encoder { e.w.WriteString(s); return e }

// Atom writes an atom (no checks).
func (e *Encoder) Atom(s string) *Encoder { e.w.WriteString(s); return e }

// SP writes a space.
func (e *Encoder) SP() *Encoder { e.w.WriteByte(' '); return e }

// Number writes a number.
func (e *Encoder) Number(n uint64) *Encoder { return e }

// String writes s as a quoted string, or as a literal when it cannot be
// quoted (CR, LF, NUL, 8-bit without UTF8, longer than 4 KiB).
func (e *Encoder) String(s string) *Encoder { return e }

// AString writes s as an atom when it is a valid atom, else like String.
func (e *Encoder) AString(s string) *Encoder { return e }

// NString writes NIL when ok is false, else String(s).
func (e *Encoder) NString(s string, ok bool) *Encoder { return e }

// Mailbox writes a mailbox name (UTF-8 in), modified-UTF-7 encoded unless
// UTF8 is set.
func (e *Encoder) Mailbox(name string) *Encoder { return e }

// BeginList / EndList write "(" and ")".
func (e *Encoder) BeginList() *Encoder { e.w.WriteByte('('); return e }
func (e *Encoder) EndList() *Encoder   { e.w.WriteByte(')'); return e }

// Flags writes a parenthesised flag list.
func (e *Encoder) Flags(flags []string) *Encoder { return e }

// DateTime writes a quoted date-time in IMAP form.
func (e *Encoder) DateTime(t time.Time) *Encoder { return e }

// LiteralHeader writes "{n}\r\n"; the caller then writes exactly n bytes
// with Write. (Use LiteralHeader8 "~{n}" for BINARY with NUL bytes.)
func (e *Encoder) LiteralHeader(n int64, binary bool) *Encoder { return e }

// Write writes raw bytes (literal contents).
func (e *Encoder) Write(p []byte) (int, error) { return e.w.Write(p) }

// CRLF ends a response line.
func (e *Encoder) CRLF() *Encoder { e.w.WriteString("\r\n"); return e }

// Flush flushes the underlying writer.
func (e *Encoder) Flush() error { return e.w.Flush() }

// EncodeMUTF7 encodes a UTF-8 mailbox name in modified UTF-7 (RFC 3501 §5.1.3).
func EncodeMUTF7(s string) string { return s }

// DecodeMUTF7 decodes a modified UTF-7 mailbox name to UTF-8; it fails on
// malformed input (the server answers BAD or NO).
func DecodeMUTF7(s string) (string, error) { return s, nil }
