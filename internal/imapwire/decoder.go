package imapwire

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Character classes of RFC 3501 §9 / RFC 9051 §9.

// isAtomChar reports ATOM-CHAR: any CHAR except atom-specials
// ("(" / ")" / "{" / SP / CTL / "%" / "*" / DQUOTE / "\" / "]").
func isAtomChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

// isAStringChar reports ASTRING-CHAR: ATOM-CHAR / resp-specials ("]").
func isAStringChar(c byte) bool { return isAtomChar(c) || c == ']' }

// isTagChar reports a tag character: any ASTRING-CHAR except "+".
func isTagChar(c byte) bool { return isAStringChar(c) && c != '+' }

// isListChar reports list-char: ATOM-CHAR / list-wildcards / resp-specials.
func isListChar(c byte) bool { return isAtomChar(c) || c == '%' || c == '*' || c == ']' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// synErr builds a *SyntaxError.
func synErr(format string, args ...any) error {
	return &SyntaxError{Msg: fmt.Sprintf(format, args...)}
}

// describe names a byte for an error message.
func describe(c byte) string {
	switch {
	case c == '\r' || c == '\n':
		return "end of line"
	case c == ' ':
		return "SP"
	case c > ' ' && c < 0x7f:
		return fmt.Sprintf("%q", string(rune(c)))
	default:
		return fmt.Sprintf("byte 0x%02x", c)
	}
}

func (d *Decoder) maxLine() int {
	if d.MaxLine > 0 {
		return d.MaxLine
	}
	return DefaultMaxLine
}

func (d *Decoder) maxLiteral() int64 {
	if d.MaxLiteral > 0 {
		return d.MaxLiteral
	}
	return DefaultMaxLiteral
}

func (d *Decoder) maxDepth() int {
	if d.MaxSearchDepth > 0 {
		return d.MaxSearchDepth
	}
	return DefaultMaxSearchDepth
}

// errPendingLiteral is a programming error of the caller: it went on
// decoding while the bytes of a literal returned by Literal were unread,
// or after LiteralHeader without AcceptLiteral or DiscardLine.
var errPendingLiteral = errors.New("imapwire: literal returned by Literal not fully read")

// unexpectedEOF turns io.EOF inside a line into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// peek returns the next byte of the line without consuming it.
func (d *Decoder) peek() (byte, error) {
	if d.pending > 0 || d.hasAnnounced {
		return 0, errPendingLiteral
	}
	b, err := d.r.Peek(1)
	if err != nil {
		return 0, unexpectedEOF(err)
	}
	return b[0], nil
}

// record notes a consumed non-literal byte.
func (d *Decoder) record(c byte) {
	d.tail[d.tailPos%len(d.tail)] = c
	d.tailPos++
	if c == '\n' {
		d.eol = true
	}
}

// readByte consumes one non-literal byte, enforcing MaxLine. The byte is
// not consumed when the line is already at its limit.
func (d *Decoder) readByte() (byte, error) {
	if d.pending > 0 || d.hasAnnounced {
		return 0, errPendingLiteral
	}
	if d.lineLen >= d.maxLine() {
		return 0, &SyntaxError{Msg: fmt.Sprintf("command line too long (more than %d bytes)", d.maxLine()), Err: ErrLineTooLong}
	}
	c, err := d.r.ReadByte()
	if err != nil {
		return 0, unexpectedEOF(err)
	}
	d.lineLen++
	d.record(c)
	return c, nil
}

// expect consumes c or fails without consuming anything.
func (d *Decoder) expect(c byte, what string) error {
	b, err := d.peek()
	if err != nil {
		return err
	}
	if b != c {
		return synErr("expected %s, found %s", what, describe(b))
	}
	_, err = d.readByte()
	return err
}

// endLine resets the per-line state after the line's LF.
func (d *Decoder) endLine() {
	d.hasAnnounced = false
	d.inLine = false
	d.eol = false
	d.lineLen = 0
	d.tailPos = 0
}

// Tag reads a command tag (RFC 3501 "tag": 1*<ASTRING-CHAR except "+">)
// and starts a new command line. Empty lines before the tag are skipped.
// It returns io.EOF when the input ends cleanly before a tag. On a
// *SyntaxError the server answers "* BAD ..." and calls DiscardLine.
func (d *Decoder) Tag() (string, error) {
	if d.pending > 0 {
		return "", errPendingLiteral
	}
	d.endLine()
	for {
		b, err := d.r.Peek(1)
		if err != nil {
			return "", err
		}
		if b[0] != '\r' && b[0] != '\n' {
			break
		}
		// An empty line: tolerated and skipped, as most servers do.
		d.inLine = true
		if err := d.CRLF(); err != nil {
			return "", err
		}
	}
	d.inLine = true
	var buf [64]byte
	tag := buf[:0]
	for {
		c, err := d.peek()
		if err != nil {
			return "", err
		}
		if !isTagChar(c) {
			if len(tag) == 0 {
				return "", synErr("expected command tag, found %s", describe(c))
			}
			return string(tag), nil
		}
		if _, err := d.readByte(); err != nil {
			return "", err
		}
		tag = append(tag, c)
	}
}

// readWhile consumes 1* bytes satisfying ok; what names the token in the
// error for an empty one.
func (d *Decoder) readWhile(ok func(byte) bool, what string) (string, error) {
	var buf [64]byte
	s := buf[:0]
	for {
		c, err := d.peek()
		if err != nil {
			return "", err
		}
		if !ok(c) {
			if len(s) == 0 {
				return "", synErr("expected %s, found %s", what, describe(c))
			}
			return string(s), nil
		}
		if _, err := d.readByte(); err != nil {
			return "", err
		}
		s = append(s, c)
	}
}

// Atom reads an atom (1*ATOM-CHAR), returned as written; callers
// upper-case command names.
func (d *Decoder) Atom() (string, error) { return d.readWhile(isAtomChar, "atom") }

// SP reads one space.
func (d *Decoder) SP() error { return d.expect(' ', "SP") }

// CRLF reads the end of the command line (CRLF; a bare LF is accepted)
// and finishes the command: after it DiscardLine is a no-op.
func (d *Decoder) CRLF() error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	switch c {
	case '\r':
		if _, err := d.readByte(); err != nil {
			return err
		}
		if err := d.expect('\n', "LF after CR"); err != nil {
			return err
		}
	case '\n':
		if _, err := d.readByte(); err != nil {
			return err
		}
	default:
		return synErr("expected end of line, found %s", describe(c))
	}
	d.endLine()
	return nil
}

// PeekByte returns the next byte without consuming it.
func (d *Decoder) PeekByte() (byte, error) { return d.peek() }

// AtEOL reports whether the next bytes are CRLF (or LF). It is false on
// a read error, which the next call reports.
func (d *Decoder) AtEOL() bool {
	c, err := d.peek()
	return err == nil && (c == '\r' || c == '\n')
}

// AString reads an astring: 1*ASTRING-CHAR (atom with ']' allowed),
// quoted string or literal.
func (d *Decoder) AString() (string, error) {
	c, err := d.peek()
	if err != nil {
		return "", err
	}
	if c == '"' || c == '{' {
		return d.String()
	}
	return d.readWhile(isAStringChar, "atom or string")
}

// String reads a quoted string or literal (RFC 3501 "string"). Quoted
// strings accept the escapes \" and \\ only; 8-bit bytes only when UTF8
// is set, and then they must be valid UTF-8. Literals may hold any byte
// but NUL and are bounded by MaxLiteral.
func (d *Decoder) String() (string, error) {
	c, err := d.peek()
	if err != nil {
		return "", err
	}
	switch c {
	case '"':
		return d.quoted()
	case '{':
		return d.literalString()
	}
	return "", synErr("expected quoted string or literal, found %s", describe(c))
}

func (d *Decoder) quoted() (string, error) {
	if _, err := d.readByte(); err != nil {
		return "", err
	}
	var buf [128]byte
	s := buf[:0]
	eight := false
	for {
		c, err := d.peek()
		if err != nil {
			return "", err
		}
		switch {
		case c == '\r' || c == '\n':
			return "", synErr("unterminated quoted string")
		case c == 0:
			return "", synErr("NUL in quoted string")
		case c >= 0x80 && !d.UTF8:
			return "", synErr("8-bit character in quoted string (send it as a literal, or ENABLE UTF8=ACCEPT once logged in)")
		}
		if _, err := d.readByte(); err != nil {
			return "", err
		}
		switch c {
		case '"':
			if eight && !utf8.Valid(s) {
				return "", synErr("invalid UTF-8 in quoted string")
			}
			return string(s), nil
		case '\\':
			e, err := d.peek()
			if err != nil {
				return "", err
			}
			if e != '"' && e != '\\' {
				return "", synErr("invalid escape in quoted string: backslash followed by %s", describe(e))
			}
			if _, err := d.readByte(); err != nil {
				return "", err
			}
			c = e
		}
		if c >= 0x80 {
			eight = true
		}
		s = append(s, c)
	}
}

// literalHeader reads "{n}" / "{n+}" (and "~{n}" / "~{n+}" when binary is
// allowed) and the CRLF after it. It does not call Continue.
func (d *Decoder) literalHeader(allowBinary bool) (n int64, sync, binary bool, err error) {
	c, err := d.peek()
	if err != nil {
		return 0, false, false, err
	}
	if c == '~' {
		if !allowBinary {
			return 0, false, false, synErr("literal8 (~{n}) not allowed here")
		}
		if _, err := d.readByte(); err != nil {
			return 0, false, false, err
		}
		binary = true
	}
	if err := d.expect('{', "literal"); err != nil {
		return 0, false, false, err
	}
	u, err := d.number(1<<63-1, "literal length")
	if err != nil {
		return 0, false, false, err
	}
	sync = true
	if c, err := d.peek(); err != nil {
		return 0, false, false, err
	} else if c == '+' {
		sync = false
		if _, err := d.readByte(); err != nil {
			return 0, false, false, err
		}
	}
	if err := d.expect('}', "} after literal length"); err != nil {
		return 0, false, false, err
	}
	c, err = d.peek()
	if err != nil {
		return 0, false, false, err
	}
	if c == '\r' {
		if _, err := d.readByte(); err != nil {
			return 0, false, false, err
		}
		if err := d.expect('\n', "LF after literal header"); err != nil {
			return 0, false, false, err
		}
	} else if err := d.expect('\n', "CRLF after literal header"); err != nil {
		return 0, false, false, err
	}
	return int64(u), sync, binary, nil
}

// checkLiteral checks the limits for a literal whose header has just been
// read. On failure the header stays consumed and DiscardLine finishes the
// job.
func (d *Decoder) checkLiteral(n int64, sync bool, max int64) error {
	if max > 0 && n > max {
		return &SyntaxError{Msg: fmt.Sprintf("literal of %d bytes exceeds the limit of %d", n, max), Err: ErrLiteralTooLarge}
	}
	if !sync && d.MaxLiteralPlus > 0 && n > d.MaxLiteralPlus {
		// RFC 7888 §4: a plain BAD, so no ErrLiteralTooLarge.
		return synErr("non-synchronizing literal of %d bytes exceeds the LITERAL- limit of %d", n, d.MaxLiteralPlus)
	}
	return nil
}

// beginLiteral starts reading the bytes of a literal whose header has
// been read and checked: it calls Continue for a synchronizing one.
func (d *Decoder) beginLiteral(sync bool) error {
	// The line goes on after the literal.
	d.eol = false
	d.tailPos = 0
	if sync && d.Continue != nil {
		if err := d.Continue(); err != nil {
			return err
		}
	}
	return nil
}

// acceptLiteral is checkLiteral then beginLiteral.
func (d *Decoder) acceptLiteral(n int64, sync bool, max int64) error {
	if err := d.checkLiteral(n, sync, max); err != nil {
		return err
	}
	return d.beginLiteral(sync)
}

func (d *Decoder) literalString() (string, error) {
	n, sync, _, err := d.literalHeader(false)
	if err != nil {
		return "", err
	}
	if err := d.acceptLiteral(n, sync, d.maxLiteral()); err != nil {
		return "", err
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(d.r, buf); err != nil {
		return "", unexpectedEOF(err)
	}
	for _, c := range buf {
		if c == 0 {
			return "", synErr("NUL in literal string")
		}
	}
	return string(buf), nil
}

// Literal reads a literal header "{n}" / "{n+}" (or "~{n}" for APPEND,
// RFC 3516; use Literal8 to learn which) and, for a synchronizing one,
// calls Continue. It returns a reader of exactly n bytes, which the
// caller must drain before decoding further (DiscardLine also drains
// it). Used for APPEND message data, which is streamed, never buffered
// whole. The error wraps ErrLiteralTooLarge when n exceeds MaxStream
// (answer NO [TOOBIG], RFC 7889); a {n+} over MaxLiteralPlus is a plain
// *SyntaxError (BAD, RFC 7888 §4). A refused synchronizing literal never
// gets its "+". Either way the server then calls DiscardLine.
func (d *Decoder) Literal() (n int64, r io.Reader, err error) {
	n, _, r, err = d.Literal8()
	return n, r, err
}

// Literal8 is Literal that also reports whether the literal was a
// literal8 "~{n}" (RFC 3516 §4.4: binary content in APPEND).
func (d *Decoder) Literal8() (n int64, binary bool, r io.Reader, err error) {
	n, binary, err = d.LiteralHeader()
	if err != nil {
		return 0, false, nil, err
	}
	r, err = d.AcceptLiteral()
	if err != nil {
		return 0, false, nil, err
	}
	return n, binary, r, nil
}

// LiteralHeader is the first half of Literal8: it reads the header
// "{n}", "{n+}", "~{n}" or "~{n+}" and its CRLF, checks MaxStream and
// MaxLiteralPlus like Literal, and stops before any "+" is sent. The
// server may then check what it must before the client sends the data
// (the APPEND mailbox exists, APPENDLIMIT, quota) and either call
// AcceptLiteral, or answer (NO [TRYCREATE], NO [TOOBIG], ...) and call
// DiscardLine: a synchronizing literal then never gets its "+" so its
// bytes never come, and a non-synchronizing one's bytes are skipped.
func (d *Decoder) LiteralHeader() (n int64, binary bool, err error) {
	n, sync, binary, err := d.literalHeader(true)
	if err != nil {
		return 0, false, err
	}
	if err := d.checkLiteral(n, sync, d.MaxStream); err != nil {
		return 0, false, err
	}
	d.announced = n
	d.announcedSync = sync
	d.hasAnnounced = true
	return n, binary, nil
}

// AcceptLiteral sends the continuation request for the literal whose
// header LiteralHeader just read (when it is synchronizing) and returns a
// reader of exactly its n bytes, to be drained before decoding further.
// Calling it without a preceding LiteralHeader is a programming error.
func (d *Decoder) AcceptLiteral() (io.Reader, error) {
	if !d.hasAnnounced {
		return nil, errNoLiteralHeader
	}
	d.hasAnnounced = false
	if err := d.beginLiteral(d.announcedSync); err != nil {
		return nil, err
	}
	d.pending = d.announced
	return literalReader{d}, nil
}

var errNoLiteralHeader = errors.New("imapwire: AcceptLiteral without LiteralHeader")

// literalReader reads the pending literal bytes of its decoder.
type literalReader struct{ d *Decoder }

func (l literalReader) Read(p []byte) (int, error) {
	d := l.d
	if d.pending == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > d.pending {
		p = p[:d.pending]
	}
	n, err := d.r.Read(p)
	d.pending -= int64(n)
	if err == io.EOF && d.pending > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// NString reads a string or NIL; ok is false for NIL.
func (d *Decoder) NString() (s string, ok bool, err error) {
	c, err := d.peek()
	if err != nil {
		return "", false, err
	}
	if c == '"' || c == '{' {
		s, err := d.String()
		return s, err == nil, err
	}
	a, err := d.Atom()
	if err != nil {
		return "", false, err
	}
	if !strings.EqualFold(a, "NIL") {
		return "", false, synErr("expected string or NIL, found %q", a)
	}
	return "", false, nil
}

// Mailbox reads a mailbox name (astring), still in its wire encoding
// (modified UTF-7 unless UTF-8 is enabled); "INBOX" in any case is
// returned as "INBOX" (RFC 3501 §5.1).
func (d *Decoder) Mailbox() (string, error) {
	s, err := d.AString()
	if err != nil {
		return "", err
	}
	if strings.EqualFold(s, "INBOX") {
		return "INBOX", nil
	}
	return s, nil
}

// MailboxUTF8 reads a mailbox name like Mailbox and returns it in UTF-8:
// decoded from modified UTF-7 (strictly, RFC 3501 §5.1.3) unless UTF8 is
// set, in which case it must be valid UTF-8 (RFC 6855 §3, RFC 9051 §5.1).
// A name that fails that is a *SyntaxError.
func (d *Decoder) MailboxUTF8() (string, error) {
	s, err := d.Mailbox()
	if err != nil {
		return "", err
	}
	if d.UTF8 {
		if !utf8.ValidString(s) {
			return "", synErr("mailbox name is not valid UTF-8")
		}
		return s, nil
	}
	u, err := DecodeMUTF7(s)
	if err != nil {
		return "", synErr("mailbox name %+q: %v", s, err)
	}
	return u, nil
}

// ListMailbox reads a LIST pattern (list-mailbox: 1*list-char, that is an
// atom that may hold % * ], or a string). Returned in wire encoding.
func (d *Decoder) ListMailbox() (string, error) {
	c, err := d.peek()
	if err != nil {
		return "", err
	}
	if c == '"' || c == '{' {
		return d.String()
	}
	return d.readWhile(isListChar, "mailbox pattern")
}

// number reads 1*DIGIT with a value of at most max.
func (d *Decoder) number(max uint64, what string) (uint64, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if !isDigit(c) {
		return 0, synErr("expected %s, found %s", what, describe(c))
	}
	var n uint64
	for {
		c, err := d.peek()
		if err != nil {
			return 0, err
		}
		if !isDigit(c) {
			return n, nil
		}
		v := uint64(c - '0')
		if n > (max-v)/10 {
			return 0, synErr("%s too large (maximum %d)", what, max)
		}
		if _, err := d.readByte(); err != nil {
			return 0, err
		}
		n = n*10 + v
	}
}

// Number reads a 32-bit number (RFC 3501 "number", 0..4294967295);
// Number64 a 63-bit one (RFC 9051 "number64", RFC 7162 mod-sequence,
// 0..2^63-1).
func (d *Decoder) Number() (uint32, error) {
	n, err := d.number(1<<32-1, "number")
	return uint32(n), err
}

// Number64 reads a number64 (0..2^63-1).
func (d *Decoder) Number64() (uint64, error) { return d.number(1<<63-1, "number") }

// NzNumber reads an nz-number (1..4294967295).
func (d *Decoder) NzNumber() (uint32, error) {
	n, err := d.number(1<<32-1, "non-zero number")
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, synErr("number must not be 0")
	}
	return uint32(n), nil
}

// List reads "(" elem *(SP elem) ")" calling fn for each element; an empty
// list "()" calls fn never.
func (d *Decoder) List(fn func() error) error {
	if err := d.expect('(', "("); err != nil {
		return err
	}
	if c, err := d.peek(); err != nil {
		return err
	} else if c == ')' {
		_, err := d.readByte()
		return err
	}
	for {
		if err := fn(); err != nil {
			return err
		}
		c, err := d.peek()
		if err != nil {
			return err
		}
		switch c {
		case ')':
			_, err := d.readByte()
			return err
		case ' ':
			if _, err := d.readByte(); err != nil {
				return err
			}
		default:
			return synErr("expected SP or ) in list, found %s", describe(c))
		}
	}
}

// seqNumber reads seq-number: nz-number or "*" (returned as 0).
func (d *Decoder) seqNumber() (uint32, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if c == '*' {
		_, err := d.readByte()
		return 0, err
	}
	if !isDigit(c) {
		return 0, synErr("expected sequence number or *, found %s", describe(c))
	}
	n, err := d.number(1<<32-1, "sequence number")
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, synErr("sequence number 0 is not allowed")
	}
	return uint32(n), nil
}

// SeqSet reads a sequence-set (RFC 9051 §9 "sequence-set"): comma
// separated numbers and ranges, "*" for the largest number in use (0 in
// SeqRange), ranges in either order; or "$" alone (RFC 5182 SEARCHRES).
func (d *Decoder) SeqSet() (SeqSet, error) {
	c, err := d.peek()
	if err != nil {
		return SeqSet{}, err
	}
	if c == '$' {
		if _, err := d.readByte(); err != nil {
			return SeqSet{}, err
		}
		if c, err := d.peek(); err != nil {
			return SeqSet{}, err
		} else if c == ',' || c == ':' {
			return SeqSet{}, synErr("$ cannot be combined with other sequence numbers")
		}
		return SeqSet{Saved: true}, nil
	}
	var set SeqSet
	for {
		start, err := d.seqNumber()
		if err != nil {
			return SeqSet{}, err
		}
		stop := start
		c, err := d.peek()
		if err != nil {
			return SeqSet{}, err
		}
		if c == ':' {
			if _, err := d.readByte(); err != nil {
				return SeqSet{}, err
			}
			if stop, err = d.seqNumber(); err != nil {
				return SeqSet{}, err
			}
			if c, err = d.peek(); err != nil {
				return SeqSet{}, err
			}
		}
		set.Ranges = append(set.Ranges, SeqRange{Start: start, Stop: stop})
		if c != ',' {
			return set, nil
		}
		if _, err := d.readByte(); err != nil {
			return SeqSet{}, err
		}
	}
}

// canonicalFlag returns the canonical spelling of a system flag (with
// its backslash), or "" when name is not one.
func canonicalFlag(name string) string {
	for _, f := range [...]string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`, `\Recent`} {
		if strings.EqualFold(name, f[1:]) {
			return f
		}
	}
	return ""
}

// Flag reads a single flag (for STORE without parentheses): "\" atom, or
// "\*", or a keyword atom. System flags (\Seen \Answered \Flagged
// \Deleted \Draft \Recent) come back in canonical case; other
// flag-extensions and keywords as written. Whether \Recent or \* is
// allowed where it appears is the server's decision.
func (d *Decoder) Flag() (string, error) {
	c, err := d.peek()
	if err != nil {
		return "", err
	}
	if c != '\\' {
		return d.readWhile(isAtomChar, "flag")
	}
	if _, err := d.readByte(); err != nil {
		return "", err
	}
	if c, err := d.peek(); err != nil {
		return "", err
	} else if c == '*' {
		_, err := d.readByte()
		return `\*`, err
	}
	a, err := d.readWhile(isAtomChar, "flag name after backslash")
	if err != nil {
		return "", err
	}
	if f := canonicalFlag(a); f != "" {
		return f, nil
	}
	return `\` + a, nil
}

// FlagList reads "(" [flag *(SP flag)] ")" (see Flag).
func (d *Decoder) FlagList() ([]string, error) {
	flags := []string{}
	err := d.List(func() error {
		f, err := d.Flag()
		if err != nil {
			return err
		}
		flags = append(flags, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return flags, nil
}

var months = [...]string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

// parseDay parses date-day "-" date-month "-" date-year from the start of
// s (1 or 2 digit day, or SP DIGIT when fixed) and returns the rest.
func parseDate(s string, fixed bool) (y int, m time.Month, day int, rest string, ok bool) {
	i := 0
	switch {
	case fixed && len(s) > 1 && s[0] == ' ' && isDigit(s[1]):
		day, i = int(s[1]-'0'), 2
	case len(s) > 1 && isDigit(s[0]) && isDigit(s[1]):
		day, i = int(s[0]-'0')*10+int(s[1]-'0'), 2
	case len(s) > 0 && isDigit(s[0]):
		day, i = int(s[0]-'0'), 1
	default:
		return 0, 0, 0, "", false
	}
	s = s[i:]
	if len(s) < 9 || s[0] != '-' || s[4] != '-' {
		return 0, 0, 0, "", false
	}
	for k, name := range months {
		if strings.EqualFold(s[1:4], name) {
			m = time.Month(k + 1)
		}
	}
	if m == 0 {
		return 0, 0, 0, "", false
	}
	for _, c := range []byte(s[5:9]) {
		if !isDigit(c) {
			return 0, 0, 0, "", false
		}
		y = y*10 + int(c-'0')
	}
	if day < 1 || day > daysIn(m, y) {
		return 0, 0, 0, "", false
	}
	return y, m, day, s[9:], true
}

func daysIn(m time.Month, y int) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func twoDigits(s string) (int, bool) {
	if len(s) != 2 || !isDigit(s[0]) || !isDigit(s[1]) {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}

// ParseDateTime parses the contents of an IMAP date-time (RFC 3501 §9,
// without the quotes): "17-Jul-1996 02:44:25 -0700", the day as "17",
// " 7" or "7", the month in any case. The result is in a fixed zone of
// the given offset.
func ParseDateTime(s string) (time.Time, bool) {
	y, m, day, rest, ok := parseDate(s, true)
	// rest: " HH:MM:SS +HHMM"
	if !ok || len(rest) != 15 || rest[0] != ' ' || rest[3] != ':' || rest[6] != ':' || rest[9] != ' ' {
		return time.Time{}, false
	}
	hh, ok1 := twoDigits(rest[1:3])
	mm, ok2 := twoDigits(rest[4:6])
	ss, ok3 := twoDigits(rest[7:9])
	zh, ok4 := twoDigits(rest[11:13])
	zm, ok5 := twoDigits(rest[13:15])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || hh > 23 || mm > 59 || ss > 60 || zm > 59 {
		return time.Time{}, false
	}
	off := zh*3600 + zm*60
	switch rest[10] {
	case '+':
	case '-':
		off = -off
	default:
		return time.Time{}, false
	}
	return time.Date(y, m, day, hh, mm, ss, 0, time.FixedZone("", off)), true
}

// quotedRaw reads a quoted string of at most max bytes, without escapes.
func (d *Decoder) quotedRaw(max int, what string) (string, error) {
	if err := d.expect('"', what); err != nil {
		return "", err
	}
	var buf [40]byte
	s := buf[:0]
	for {
		c, err := d.peek()
		if err != nil {
			return "", err
		}
		if c == '\r' || c == '\n' {
			return "", synErr("unterminated %s", what)
		}
		if _, err := d.readByte(); err != nil {
			return "", err
		}
		if c == '"' {
			return string(s), nil
		}
		if len(s) == max {
			return "", synErr("invalid %s", what)
		}
		s = append(s, c)
	}
}

// DateTime reads a quoted date-time ("17-Jul-1996 02:44:25 -0700", RFC
// 3501 §9), as used by APPEND. See ParseDateTime.
func (d *Decoder) DateTime() (time.Time, error) {
	s, err := d.quotedRaw(32, "date-time")
	if err != nil {
		return time.Time{}, err
	}
	t, ok := ParseDateTime(s)
	if !ok {
		return time.Time{}, synErr("invalid date-time %+q (want \"dd-Mon-yyyy hh:mm:ss +zzzz\")", s)
	}
	return t, nil
}

// Date reads a search date (date-text "1-Feb-1994", quoted or not) and
// returns midnight UTC of that day.
func (d *Decoder) Date() (time.Time, error) {
	c, err := d.peek()
	if err != nil {
		return time.Time{}, err
	}
	var s string
	if c == '"' {
		s, err = d.quotedRaw(16, "date")
	} else {
		s, err = d.readWhile(isAtomChar, "date")
	}
	if err != nil {
		return time.Time{}, err
	}
	y, m, day, rest, ok := parseDate(s, false)
	if !ok || rest != "" {
		return time.Time{}, synErr("invalid date %+q (want dd-Mon-yyyy)", s)
	}
	return time.Date(y, m, day, 0, 0, 0, 0, time.UTC), nil
}

// Line reads a whole line (for SASL responses after AUTHENTICATE, and
// DONE after IDLE), without the CRLF, up to max bytes. It starts and
// finishes a line of its own: call it only at the start of a line. When
// the line is longer than max, the rest of it is skipped (so no
// DiscardLine is needed, though calling it is harmless) and the error is
// a *SyntaxError wrapping ErrLineTooLong.
func (d *Decoder) Line(max int) (string, error) {
	if d.pending > 0 {
		return "", errPendingLiteral
	}
	d.endLine()
	d.inLine = true
	var s []byte
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			return "", unexpectedEOF(err)
		}
		if c == '\n' {
			d.endLine()
			if n := len(s); n > 0 && s[n-1] == '\r' {
				s = s[:n-1]
			}
			return string(s), nil
		}
		d.record(c)
		if len(s) > max || (len(s) == max && c != '\r') {
			// Skip the rest; literal syntax means nothing on this line.
			for c != '\n' {
				if c, err = d.r.ReadByte(); err != nil {
					return "", unexpectedEOF(err)
				}
			}
			d.endLine()
			return "", &SyntaxError{Msg: fmt.Sprintf("line too long (more than %d bytes)", max), Err: ErrLineTooLong}
		}
		s = append(s, c)
	}
}

// DecodeAuthData decodes one AUTHENTICATE client response or SASL-IR
// initial response (RFC 3501 §6.2.2, RFC 4959): "=" is an empty
// response, "*" is ErrAuthCancelled, anything else must be strict
// padded base64 (a *SyntaxError otherwise).
func DecodeAuthData(s string) ([]byte, error) {
	switch s {
	case "*":
		return nil, ErrAuthCancelled
	case "=":
		return []byte{}, nil
	case "":
		// An empty line is what RFC 3501 clients send for an empty response.
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, synErr("invalid base64 in authentication data")
	}
	return b, nil
}

// AuthResponse reads one AUTHENTICATE response line of at most max
// encoded bytes and decodes it with DecodeAuthData. The line is always
// consumed (also on ErrAuthCancelled, bad base64 and ErrLineTooLong), so
// the server answers and reads the next command.
func (d *Decoder) AuthResponse(max int) ([]byte, error) {
	s, err := d.Line(max)
	if err != nil {
		return nil, err
	}
	return DecodeAuthData(s)
}

// DiscardLine skips to the end of the current command line after an
// error, so that the next Tag starts on a fresh command. Precisely:
//
//   - It is a no-op when no line is in progress (after CRLF, a successful
//     Line, or before the first Tag).
//   - Unread bytes of an accepted literal (one whose "+" was sent or a
//     {n+}, including the rest of a reader returned by Literal) are
//     skipped first.
//   - Then bytes are skipped through the next LF. If that physical line
//     ends with a non-synchronizing literal header {n+} or ~{n+}, the
//     client sends those n bytes and the command goes on after them: they
//     are skipped and the skipping continues to the next LF, repeatedly.
//   - If it ends with a synchronizing literal header {n} / ~{n}, the
//     command ends there: the decoder never called Continue for it, so
//     the client waits for "+" that never comes and, on reading the BAD,
//     abandons the command without sending the bytes.
//
// So the server's job after any *SyntaxError (and ErrLiteralTooLarge,
// ErrBadCharset) is: write "tag BAD ..." (or NO ...), flush, call
// DiscardLine, read the next Tag. DiscardLine returns only I/O errors
// (io.ErrUnexpectedEOF when the client hangs up), after which the
// connection is finished. It does not enforce MaxLine; it reads and
// forgets, using constant memory.
func (d *Decoder) DiscardLine() error {
	for {
		if d.pending > 0 {
			n, err := d.r.Discard(int(min(d.pending, 1<<30)))
			d.pending -= int64(n)
			if err != nil {
				return unexpectedEOF(err)
			}
			continue
		}
		if !d.inLine {
			return nil
		}
		if d.eol {
			if n, sync, ok := d.tailLiteral(); ok && !sync {
				d.pending = n
				d.eol = false
				d.tailPos = 0
				continue
			}
			d.endLine()
			return nil
		}
		c, err := d.r.ReadByte()
		if err != nil {
			return unexpectedEOF(err)
		}
		d.record(c)
	}
}

// tailLiteral reports whether the physical line just ended (d.tail holds
// its last bytes, the LF included) with a literal header, and which.
func (d *Decoder) tailLiteral() (n int64, sync, ok bool) {
	k := min(d.tailPos, len(d.tail))
	var buf [len(d.tail)]byte
	for i := 0; i < k; i++ {
		buf[i] = d.tail[(d.tailPos-k+i)%len(d.tail)]
	}
	s := buf[:k]
	s = s[:len(s)-1] // LF
	if len(s) > 0 && s[len(s)-1] == '\r' {
		s = s[:len(s)-1]
	}
	if len(s) < 3 || s[len(s)-1] != '}' {
		return 0, false, false
	}
	s = s[:len(s)-1]
	sync = true
	if s[len(s)-1] == '+' {
		sync = false
		s = s[:len(s)-1]
	}
	i := len(s)
	for i > 0 && isDigit(s[i-1]) {
		i--
	}
	if i == 0 || i == len(s) || s[i-1] != '{' || len(s)-i > 18 {
		return 0, false, false
	}
	for _, c := range s[i:] {
		n = n*10 + int64(c-'0')
	}
	return n, sync, true
}
