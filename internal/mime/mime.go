// Package mime parses the MIME structure of a message (RFC 2045, 2046,
// 5322) once, at delivery, recording the byte offsets of every part's
// header and body, and renders the IMAP ENVELOPE and BODYSTRUCTURE
// (RFC 3501 §7.4.2, RFC 9051 §7.5.2) from it.
//
// The reference is Dovecot 2.3: on the shared corpus, ENVELOPE,
// BODYSTRUCTURE, BODY and every BODY[n] / BODY[n.MIME] range are byte for
// byte what Dovecot answers, except the RFC-justified cases listed in
// DIFFERENCES.md (TestDovecotDump checks it when the dump is present).
//
// Parsing never fails on malformed input: whatever the bytes are, Parse
// returns a tree that covers them (a missing boundary ends the part at the
// end of its parent, a bad header line is kept as it is). Only an error
// from the reader is returned. Memory is bounded: bodies are scanned, not
// kept; header bytes are kept only up to a limit per part
// (MaxHeaderBytes); nesting is capped at MaxNesting.
//
// Offsets are in bytes from the start of the message, as given (bare LF
// is not rewritten). For a part p:
//
//	[p.HeaderStart, p.BodyStart)  its header, including the blank line
//	                              (IMAP BODY[n.MIME], or BODY[HEADER] of the root)
//	[p.BodyStart, p.End)          its body (IMAP BODY[n]; BODY[TEXT] of the root)
//
// A multipart's body includes preamble, boundaries and epilogue. The line
// break before a boundary line belongs to the boundary (RFC 2046 §5.1.1),
// so a part's body ends before it; when a header runs straight into a
// boundary line, the header gives up its last line break instead (as
// Dovecot counts it). For message/rfc822 (and message/global) p.Message is
// the encapsulated message's root part, whose HeaderStart == p.BodyStart.
// Part maps IMAP section numbers (RFC 3501 §6.4.5) to parts.
//
// EncodeStructure/DecodeStructure store the tree (with the encoded
// envelopes of every message root, so BODYSTRUCTURE needs no blob read) in
// a compact, versioned form for the index.
package mime

// HeaderField is one header field as it appears in the message.
type HeaderField struct {
	Name  string // as written, e.g. "Content-Type"
	Raw   []byte // the whole field, name through the CRLF/LF after the last continuation line
	Value string // value with leading white space trimmed and CR/LF removed (unfolded), raw bytes (no RFC 2047 decoding)
}

// Header is the ordered list of a part's header fields.
type Header []HeaderField

// Param is a Content-Type or Content-Disposition parameter as IMAP
// BODYSTRUCTURE reports it (RFC 3501 §7.4.2 body-fld-param), following
// Dovecot: RFC 2231 continuations (name*0, name*1, ...) are joined, an
// extended parameter keeps its trailing "*" in Name and its
// charset'lang'%XX value undecoded, and RFC 2047 words are left as they
// are. Use DecodeParam for the decoded UTF-8 value.
type Param struct {
	Name  string // as written, e.g. "charset" or "filename*"
	Value string
}

// Part is one node of the MIME tree.
type Part struct {
	HeaderStart int64
	BodyStart   int64
	End         int64
	Lines       int64 // LF count in [BodyStart, End) (IMAP body-fld-lines; CRLF and LF count alike)

	// Content-Type, defaulted as RFC 2045 §5.2 says (text/plain
	// charset=us-ascii; message/rfc822 inside multipart/digest). Type and
	// Subtype are as IMAP reports them: the case written in the header
	// (Dovecot keeps it), "" when the header is unparsable.
	Type, Subtype string
	Params        []Param

	ID, Description, Encoding, MD5 string // Content-ID, -Description, -Transfer-Encoding ("" when absent: IMAP says "7bit"), -MD5
	Disposition                    string // "" when absent
	DispositionParams              []Param
	Language                       []string
	Location                       string

	// Present records which of the optional fields above were in the
	// header: IMAP reports a present but empty field as "" and a missing
	// one as NIL.
	Present Presence

	// Multipart is true when the part was parsed as a multipart (a
	// multipart/* type within the nesting limit). Parts may then still
	// be empty (no boundary parameter, or no boundary line): IMAP shows
	// one empty text/plain part, and Part([]int{1}) returns one.
	Multipart bool

	// Envelope is the encoded IMAP ENVELOPE of the message whose root
	// this part is: set on the top-level root and on every Message root.
	Envelope string

	// Header is the part's header (nil after DecodeStructure: headers are
	// read from the blob by offset when needed). To bound memory, parts
	// other than the root may have a nil Header when the message's
	// headers add up to more than 4 MiB, and only the first
	// MaxHeaderBytes of one header are kept (see Parse).
	Header Header

	Parts []*Part // children of a multipart
	// Message is the root of an encapsulated message/rfc822 or
	// message/global message. Its HeaderStart is BodyStart; its End is
	// End, except when its header is cut short by a boundary line: it
	// then ends before the line break that precedes the boundary (which
	// Dovecot counts in this part's body but not in the message's header).
	Message *Part

	// parse-time flags for Dovecot's plain-7bit check (not encoded)
	textFlag, hasSubtype bool
	// global marks a message/global Message (RFC 6532)
	global bool
}

// Presence records which optional Content-* fields were present, so that
// an empty field (IMAP "") is told apart from a missing one (NIL).
type Presence uint8

// Presence bits.
const (
	HasID Presence = 1 << iota
	HasDescription
	HasMD5
	HasDisposition
	HasLocation
)

// Message is the result of Parse.
type Message struct {
	Size int64 // total bytes read
	Root *Part
	// RawHeader is the top-level header bytes, as stored (for SEARCH
	// HEADER, BODY[HEADER.FIELDS] and SORT without touching the blob). It
	// is nil when the header is longer than MaxHeaderBytes: read it from
	// the blob at [Root.HeaderStart, Root.BodyStart) then.
	RawHeader []byte
}
