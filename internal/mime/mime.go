// Package mime parses the MIME structure of a message (RFC 2045, 2046,
// 5322) once, at delivery, recording the byte offsets of every part's
// header and body, and renders the IMAP ENVELOPE and BODYSTRUCTURE
// (RFC 3501 §7.4.2, RFC 9051 §7.5.2) from it.
//
// Parsing never fails on malformed input: whatever the bytes are, Parse
// returns a tree that covers them (a missing boundary ends the part at the
// end of its parent, a bad header line is kept as it is). Only an error
// from the reader is returned. Memory is bounded: bodies are scanned, not
// kept; header bytes are kept only up to a limit per part.
//
// Offsets are in bytes from the start of the message. For a part p:
//
//	[p.HeaderStart, p.BodyStart)  its header, including the blank line
//	[p.BodyStart, p.End)          its body (IMAP BODY[n] / BODY[n.TEXT])
//
// A multipart's body includes preamble, boundaries and epilogue. For
// message/rfc822 (and message/global) p.Message is the encapsulated
// message's root part, whose HeaderStart == p.BodyStart.
package mime

import (
	"io"
)

// HeaderField is one header field as it appears in the message.
type HeaderField struct {
	Name  string // as written, e.g. "Content-Type"
	Raw   []byte // the whole field, name through the CRLF/LF after the last continuation line
	Value string // unfolded value with leading white space trimmed, raw bytes (no RFC 2047 decoding)
}

// Header is the ordered list of a part's header fields.
type Header []HeaderField

// Get returns the unfolded value of the first field named name
// (case-insensitive), and whether there was one.
func (h Header) Get(name string) (string, bool) {
	for _, f := range h {
		if equalFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Param is a Content-Type or Content-Disposition parameter after RFC 2231
// decoding (continuations joined, charset'lang'%XX decoded to UTF-8).
type Param struct {
	Name  string // as written, e.g. "charset"
	Value string
}

// Part is one node of the MIME tree.
type Part struct {
	HeaderStart int64
	BodyStart   int64
	End         int64
	Lines       int64 // lines in the body (IMAP body-fld-lines)

	// Content-Type, defaulted as RFC 2045 §5.2 says (text/plain
	// charset=us-ascii; message/rfc822 inside multipart/digest). Type and
	// Subtype are as IMAP reports them (Dovecot's case conventions).
	Type, Subtype string
	Params        []Param

	ID, Description, Encoding, MD5 string // Content-ID, -Description, -Transfer-Encoding (default "7bit"), -MD5
	Disposition                    string // "" when absent
	DispositionParams              []Param
	Language                       []string
	Location                       string

	// Header is the part's header (nil after DecodeStructure: headers are
	// read from the blob by offset when needed).
	Header Header

	Parts   []*Part // children of a multipart
	Message *Part   // root of an encapsulated message/rfc822
}

// Message is the result of Parse.
type Message struct {
	Size int64 // total bytes read
	Root *Part
	// RawHeader is the top-level header bytes, as stored (for SEARCH
	// HEADER, BODY[HEADER.FIELDS] and SORT without touching the blob).
	RawHeader []byte
}

// Parse reads a whole message from r and returns its structure. It reads r
// to EOF. The only errors are those of r.
func Parse(r io.Reader) (*Message, error) {
	panic("mime.Parse: not implemented")
}

// ParseHeader splits raw header bytes (as found at [HeaderStart,BodyStart))
// into fields. It never fails.
func ParseHeader(raw []byte) Header {
	panic("mime.ParseHeader: not implemented")
}

// Part returns the part at an IMAP section path (RFC 3501 §6.4.5: "1.2.3"
// as []int{1,2,3}) or nil if there is none. An empty path is the root.
// Path numbering follows the RFC: a non-multipart message has part 1 (its
// body); the children of a message/rfc822 are those of its encapsulated
// message's body.
func (p *Part) Part(path []int) *Part {
	panic("mime.Part.Part: not implemented")
}

// BodyStructure returns the IMAP BODYSTRUCTURE (extended=true) or BODY
// (extended=false) of p, encoded as IMAP syntax, e.g.
// ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 12 1 NIL NIL NIL NIL).
// Strings that cannot be quoted (8-bit, CR, LF, NUL, too long) are sent
// as literals {n}\r\n...
func (p *Part) BodyStructure(extended bool) string {
	panic("mime.Part.BodyStructure: not implemented")
}

// Envelope returns the IMAP ENVELOPE of a message whose header is h,
// encoded as IMAP syntax (RFC 3501 §7.4.2).
func Envelope(h Header) string {
	panic("mime.Envelope: not implemented")
}

// EncodeStructure serialises the tree below p without headers, for the
// index. DecodeStructure reverses it (Header fields are nil).
func EncodeStructure(p *Part) []byte {
	panic("mime.EncodeStructure: not implemented")
}

// DecodeStructure decodes bytes made by EncodeStructure.
func DecodeStructure(b []byte) (*Part, error) {
	panic("mime.DecodeStructure: not implemented")
}

// DecodeHeaderValue decodes RFC 2047 encoded words (and raw UTF-8 / 8-bit
// per RFC 6532) in a header value to UTF-8, for SEARCH and SORT. It never
// fails; undecodable words are left as they are.
func DecodeHeaderValue(v string) string {
	panic("mime.DecodeHeaderValue: not implemented")
}

// NewDecoder returns a reader that undoes a Content-Transfer-Encoding
// ("base64", "quoted-printable"; others pass through) for IMAP BINARY[]
// (RFC 3516). Bad input is decoded leniently, never an error.
func NewDecoder(encoding string, r io.Reader) io.Reader {
	panic("mime.NewDecoder: not implemented")
}
