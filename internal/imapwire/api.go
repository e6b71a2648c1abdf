package imapwire

// This file holds the Decoder and Encoder types, their constructors and
// the errors of the package. The methods live in decoder.go, search.go,
// fetch.go, params.go, encoder.go, strings.go and mutf7.go; their
// signatures and doc comments are the contract imapserver programs
// against.

import (
	"bufio"
	"errors"
)

// SyntaxError is a malformed command. The server answers it with
// "tag BAD <Msg>" (or "* BAD <Msg>" when the tag itself could not be
// read) and then calls Decoder.DiscardLine.
//
// Err, when set, is a sentinel of this package (ErrLiteralTooLarge,
// ErrBadCharset, ErrLineTooLong) that errors.Is finds
// through the SyntaxError, so the server can pick a more precise response
// (NO [TOOBIG], NO [BADCHARSET ...]).
type SyntaxError struct {
	Msg string
	Err error
}

func (e *SyntaxError) Error() string { return "imapwire: syntax error: " + e.Msg }

// Unwrap returns the sentinel carried by the error, if any.
func (e *SyntaxError) Unwrap() error { return e.Err }

// ErrLiteralTooLarge is found by errors.Is in the *SyntaxError returned
// when a literal exceeds the decoder's limit for its context (MaxLiteral
// for strings, MaxStream for Literal). The literal's header has been
// consumed; DiscardLine does the right thing for both literal kinds (see
// DiscardLine). A {n+} over MaxLiteralPlus (LITERAL-) is a plain
// *SyntaxError without this sentinel: RFC 7888 §4 wants BAD for it.
var ErrLiteralTooLarge = errors.New("imapwire: literal too large")

// ErrBadCharset is found by errors.Is in the *SyntaxError returned by
// Search for a CHARSET other than US-ASCII or UTF-8. The server answers
// "tag NO [BADCHARSET (UTF-8 US-ASCII)] ..." (RFC 3501 §6.4.4, RFC 9051
// §7.1) instead of BAD, then calls DiscardLine.
var ErrBadCharset = errors.New("imapwire: unsupported charset")

// ErrLineTooLong is found by errors.Is in the *SyntaxError returned when a
// command line holds more than MaxLine bytes outside literals.
var ErrLineTooLong = errors.New("imapwire: command line too long")

// ErrAuthCancelled is returned by AuthResponse and DecodeAuthData when the
// client sent "*" to cancel an AUTHENTICATE exchange (RFC 3501 §6.2.2).
// It is not a syntax error: the server answers "tag BAD" (RFC 9051 §6.2.2)
// and does not call DiscardLine (the line has been consumed).
var ErrAuthCancelled = errors.New("imapwire: authentication cancelled by client")

// Defaults used when the corresponding Decoder field is 0.
const (
	DefaultMaxLine        = 64 << 10 // bytes of a command line outside literals
	DefaultMaxLiteral     = 64 << 10 // bytes of a literal read into a string
	DefaultMaxSearchDepth = 32       // nesting of (), NOT and OR in SEARCH

	// LiteralMinusMax is the largest {n+} a LITERAL- server accepts
	// (RFC 7888 §4). Set Decoder.MaxLiteralPlus to it to enforce LITERAL-.
	LiteralMinusMax = 4096
)

// Decoder reads commands from a client. It is not safe for concurrent use.
// See the package documentation for how a server drives it.
//
// Synchronizing literals ({n}\r\n): before reading the literal's bytes the
// decoder calls the Continue function given to NewDecoder, which must
// write "+ ..." to the client and flush. It does so only for a literal
// within its limits (LiteralHeader lets the server decide first); a
// refused one gets no "+" and DiscardLine ends the command there. Non-synchronizing literals
// ({n+}, RFC 7888) are read at once. LITERAL- limits {n+} to 4096 bytes;
// the decoder accepts larger ones anyway when MaxLiteralPlus is 0.
type Decoder struct {
	r *bufio.Reader
	// Continue is called before a synchronizing literal's bytes are read.
	Continue func() error
	// MaxLiteral bounds literals read into strings (not those streamed by
	// Literal). Default 64 KiB when 0.
	MaxLiteral int64
	// UTF8 allows raw UTF-8 in quoted strings (RFC 9051, RFC 6855).
	UTF8 bool

	// MaxLine bounds the bytes of one command line outside literals,
	// CRLF included. Default DefaultMaxLine when 0.
	MaxLine int
	// MaxLiteralPlus bounds non-synchronizing literals {n+} (all of them,
	// also those streamed by Literal); 0 means no extra bound. Set it to
	// LiteralMinusMax when the server advertises LITERAL- (RFC 7888 §4).
	MaxLiteralPlus int64
	// MaxStream bounds the literals returned by Literal / Literal8 (APPEND
	// data); 0 means unbounded. A synchronizing literal over the bound is
	// refused before Continue is called, so the client never sends it.
	MaxStream int64
	// MaxSearchDepth bounds the nesting of parentheses, NOT and OR in a
	// search program. Default DefaultMaxSearchDepth when 0.
	MaxSearchDepth int

	inLine  bool  // a command line has been started and not finished
	eol     bool  // the LF of the current physical line has been consumed
	lineLen int   // bytes of the current line outside literals
	pending int64 // bytes of an accepted literal not yet consumed

	announced     int64 // literal header read by LiteralHeader, not yet accepted
	announcedSync bool
	hasAnnounced  bool

	tail    [24]byte // ring of the last bytes of the line since the last literal
	tailPos int      // bytes written to tail since the last reset
}

// NewDecoder returns a decoder reading from r.
func NewDecoder(r *bufio.Reader, cont func() error) *Decoder {
	return &Decoder{r: r, Continue: cont}
}

// Encoder writes responses. It is not safe for concurrent use.
//
// Write errors are sticky in the underlying bufio.Writer and reported by
// Flush; the chained methods therefore return no error.
type Encoder struct {
	w *bufio.Writer
	// UTF8 lets strings carry raw UTF-8 in quoted form (after ENABLE
	// UTF8=ACCEPT or IMAP4rev2); otherwise 8-bit strings become literals.
	UTF8 bool

	scratch [64]byte // number and date formatting without allocation
}

// NewEncoder returns an encoder writing to w.
func NewEncoder(w *bufio.Writer) *Encoder { return &Encoder{w: w} }
