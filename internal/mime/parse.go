package mime

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
)

// Limits, as in Dovecot 2.3's message parser (so that BODYSTRUCTURE of
// pathological messages matches it).
const (
	// MaxNesting is the deepest nesting of multipart and message/rfc822
	// parts: a multipart at depth MaxNesting-1 (the root is at depth 0)
	// is reported as a leaf with its declared type; a message/rfc822
	// there keeps its encapsulated message, but that is a leaf.
	MaxNesting = 100
	// MaxParts is the most parts in a message; after that boundary lines
	// are no longer recognised.
	MaxParts = 10000
	// MaxHeaderBytes is how much of one part's header is kept in memory
	// (Part.Header, Message.RawHeader). Beyond it only the fields the
	// parser needs (Content-*, MIME-Version and the ENVELOPE fields) are
	// kept, up to twice as much again.
	MaxHeaderBytes = 1 << 20
	// maxKeptHeaders bounds the header bytes kept in Part.Header over
	// all parts of a message.
	maxKeptHeaders = 4 << 20
	// maxBoundaryLen truncates excessively long boundary parameters.
	maxBoundaryLen = 70 + 10

	readBufSize = 64 << 10
)

// readerPool recycles the line readers: Parse keeps no reference to their
// buffers (header bytes are copied out).
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

type frame struct {
	part  *Part
	depth int

	inHeader     bool
	hdr          []byte
	hdrOver      bool // over MaxHeaderBytes: only needed fields are kept
	hdrKeep      bool // the current field is kept (when hdrOver)
	leaf         bool // at the nesting limit: not parsed further
	mimeChild    bool // child of a multipart: Content-* always apply
	msgRoot      bool // root of a message (top level or message/rfc822)
	parentDigest bool

	boundary []byte // active boundary of a multipart
	active   bool
	digest   bool

	nlBody int64 // LF count at BodyStart
}

type parser struct {
	off         int64
	nl          int64 // LFs before off
	prevTerm    int   // length of the previous line's terminator
	lastByte    byte
	stack       []*frame
	nActive     int // frames with an active boundary
	total       int
	rawHeader   []byte
	rootOver    bool
	root        *Part
	boundaryEnd int64 // offset just after the last boundary line
	keptHeaders int   // header bytes kept in Part.Header so far
	scratch     []byte
}

// Parse reads a whole message from r and returns its structure. It reads r
// to EOF. The only errors are those of r. Memory use is bounded by the
// header sizes (see MaxHeaderBytes), not by the body.
//
// The tree follows Dovecot 2.3's message parser: a boundary line is a line
// that starts with "--" followed by the boundary of any enclosing
// multipart (the innermost first; the rest of the line is ignored, so
// trailing white space is allowed); "--" after the boundary makes it the
// close delimiter. The line break before a boundary line belongs to the
// boundary (RFC 2046 §5.1.1). A part without its close delimiter ends where
// an enclosing boundary or the message ends. A multipart without a
// boundary parameter (or without any boundary line) has no parts; its
// BODYSTRUCTURE shows one empty text/plain part, as Dovecot's does.
// Boundary lines are recognised in headers too: one ends the header there.
// Line counts are LF counts, so CRLF and bare LF count alike; offsets are
// those of the bytes as given.
func Parse(r io.Reader) (*Message, error) {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() {
		br.Reset(nil)
		readerPool.Put(br)
	}()
	root := &Part{}
	p := &parser{root: root, boundaryEnd: -1}
	p.stack = append(p.stack, &frame{part: root, inHeader: true, msgRoot: true})
	p.total = 1
	lineStart := true
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			p.chunk(chunk, lineStart)
			lineStart = chunk[len(chunk)-1] == '\n'
		}
		if err == nil || err == bufio.ErrBufferFull {
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		return nil, err
	}
	p.finish()
	m := &Message{Size: p.off, Root: root}
	if !p.rootOver {
		m.RawHeader = p.rawHeader
	}
	return m, nil
}

func (p *parser) advance(chunk []byte) {
	p.off += int64(len(chunk))
	n := len(chunk)
	if chunk[n-1] == '\n' {
		p.nl++
		prev := p.lastByte
		if n >= 2 {
			prev = chunk[n-2]
		}
		if prev == '\r' {
			p.prevTerm = 2
		} else {
			p.prevTerm = 1
		}
	}
	p.lastByte = chunk[n-1]
}

func (p *parser) chunk(chunk []byte, lineStart bool) {
	f := p.stack[len(p.stack)-1]
	// Dovecot recognises boundary lines in headers too: a boundary ends
	// the header (and the part) there.
	if lineStart && p.nActive > 0 && len(chunk) >= 2 && chunk[0] == '-' && chunk[1] == '-' {
		if k, end := p.findBoundary(chunk); k >= 0 {
			p.boundaryLine(k, end, chunk)
			return
		}
	}
	if f.inHeader {
		if lineStart && isBlankLine(chunk) {
			f.hdr = append(f.hdr, chunk...)
			p.advance(chunk)
			p.endHeader(f, p.off, false)
			return
		}
		p.keepHeader(f, chunk, lineStart)
		p.advance(chunk)
		return
	}
	p.advance(chunk)
}

// keepHeader stores header bytes, bounded by MaxHeaderBytes.
func (p *parser) keepHeader(f *frame, chunk []byte, lineStart bool) {
	if !f.hdrOver && len(f.hdr)+len(chunk) > MaxHeaderBytes {
		f.hdrOver = true
	}
	if !f.hdrOver {
		f.hdr = append(f.hdr, chunk...)
		return
	}
	if lineStart && len(chunk) > 0 && chunk[0] != ' ' && chunk[0] != '\t' {
		name := chunk
		if i := bytes.IndexByte(chunk, ':'); i >= 0 {
			name = bytes.TrimRight(chunk[:i], " \t")
		}
		f.hdrKeep = hasPrefixFoldB(name, "content-") || equalFoldB(name, "mime-version") || isEnvelopeField(name)
	}
	if f.hdrKeep && len(f.hdr)+len(chunk) <= 2*MaxHeaderBytes {
		f.hdr = append(f.hdr, chunk...)
	}
}

func hasPrefixFoldB(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && equalFoldB(b[:len(prefix)], prefix)
}

// findBoundary returns the stack index of the multipart whose boundary
// the line is, and whether it is a close delimiter; -1 if none.
func (p *parser) findBoundary(line []byte) (int, bool) {
	if p.total >= MaxParts {
		return -1, false
	}
	data := line[2:]
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		data = data[:i]
		if n := len(data); n > 0 && data[n-1] == '\r' {
			data = data[:n-1]
		}
	}
	best := -1
	for i := len(p.stack) - 1; i >= 0; i-- {
		f := p.stack[i]
		if !f.active {
			continue
		}
		b := f.boundary
		if len(b) <= len(data) && bytes.Equal(data[:len(b)], b) &&
			(best < 0 || len(p.stack[best].boundary) < len(b)) {
			best = i
			if len(b) == len(data) {
				break
			}
		}
	}
	if best < 0 {
		return -1, false
	}
	b := p.stack[best].boundary
	end := len(data) >= len(b)+2 && data[len(b)] == '-' && data[len(b)+1] == '-'
	return best, end
}

// boundaryLine handles a boundary line of the multipart at stack index k.
func (p *parser) boundaryLine(k int, end bool, line []byte) {
	L := p.off
	// The line break before a boundary line belongs to it (RFC 2046
	// §5.1.1), unless it ends the previous boundary line. Dovecot takes
	// it from the body of the innermost part when that body has bytes
	// (and then from every part that ends here); otherwise from the
	// header that precedes it, and the enclosing parts keep it.
	t := 0
	if L != p.boundaryEnd {
		t = p.prevTerm
	}
	if len(p.stack) > k+1 {
		top := p.stack[len(p.stack)-1]
		if !top.inHeader && top.part.BodyStart < L {
			for len(p.stack) > k+1 {
				p.closeTop(L, t)
			}
		} else {
			p.closeShrunk(L, t)
			for len(p.stack) > k+1 {
				p.closeTop(L, 0)
			}
		}
	}
	m := p.stack[k]
	p.advance(line)
	p.boundaryEnd = p.off
	if end {
		m.active = false
		p.nActive--
		// Dovecot forgets boundaries of parts closed in between too;
		// closeTop already deactivated them.
		return
	}
	child := &Part{HeaderStart: p.off}
	m.part.Parts = append(m.part.Parts, child)
	p.total++
	p.stack = append(p.stack, &frame{part: child, depth: m.depth + 1, inHeader: true,
		mimeChild: true, parentDigest: m.digest})
}

// closeTop ends the innermost open part at offset L-strip (L is the start
// of a boundary line or the end of the message; strip the length of the
// line break before a boundary line).
func (p *parser) closeTop(L int64, strip int) {
	f := p.stack[len(p.stack)-1]
	if f.inHeader {
		p.endHeader(f, L-int64(strip), true)
		if strip > 0 {
			f.nlBody = p.nl - 1
		}
	}
	end, nlEnd := L-int64(strip), p.nl
	if strip > 0 {
		nlEnd--
	}
	if end < f.part.BodyStart {
		end, nlEnd = f.part.BodyStart, f.nlBody
	}
	f.part.End = end
	f.part.Lines = nlEnd - f.nlBody
	if f.part.Message != nil && f.part.Message.End == 0 && f.part.Message.HeaderStart == L {
		// an encapsulated message that never started
		f.part.Message.End = L
	}
	if f.active {
		f.active = false
		p.nActive--
	}
	p.stack = p.stack[:len(p.stack)-1]
}

// closeShrunk closes the innermost part when a boundary line follows its
// header or its empty body: the line break t before the boundary is taken
// from that header.
func (p *parser) closeShrunk(L int64, t int) {
	f := p.stack[len(p.stack)-1]
	if f.inHeader && L > f.part.HeaderStart || !f.inHeader {
		if !f.inHeader {
			// empty body after the header's blank line
			f.part.BodyStart = L - int64(t)
			if t > 0 {
				f.nlBody = p.nl - 1
			}
			if c := f.part.Message; c != nil {
				c.HeaderStart, c.BodyStart, c.End = f.part.BodyStart, f.part.BodyStart, f.part.BodyStart
			}
		}
		p.closeTop(L, t)
		return
	}
	// An encapsulated message with an empty header: its rfc822 part
	// gives up its header's blank line.
	p.closeTop(L, 0)
	if len(p.stack) == 0 {
		return
	}
	parent := p.stack[len(p.stack)-1]
	if parent.part.Message == f.part && !parent.inHeader && parent.part.BodyStart == L {
		p.closeShrunk(L, t)
	}
}

func (p *parser) finish() {
	for len(p.stack) > 0 {
		p.closeTop(p.off, 0)
	}
	root := p.root
	if isPlain7bit(root) {
		// Dovecot writes a plain 7-bit text root in its canonical form.
		root.Type, root.Subtype, root.Params, root.Encoding = "text", "plain", nil, ""
	}
}

// isPlain7bit is Dovecot's imap_bodystructure_is_plain_7bit: a text/plain
// part with at most charset=us-ascii, 7bit and no other Content-* field.
func isPlain7bit(p *Part) bool {
	if p.Multipart || p.Message != nil || !p.textFlag {
		return false
	}
	if p.hasSubtype && !equalFold(p.Subtype, "plain") {
		return false
	}
	switch len(p.Params) {
	case 0:
	case 1:
		if !equalFold(p.Params[0].Name, "charset") || !equalFold(p.Params[0].Value, "us-ascii") {
			return false
		}
	default:
		return false
	}
	if p.Encoding != "" && !equalFold(p.Encoding, "7bit") {
		return false
	}
	return p.Present == 0 && p.Language == nil
}

// endHeader processes a part's header, which ends at bodyStart, and sets
// up the parsing of its body. closing is set when the part ends there too
// (a boundary line or the end of the message ended the header): a
// multipart then has no parts, a message/rfc822 an empty message.
func (p *parser) endHeader(f *frame, bodyStart int64, closing bool) {
	part := f.part
	f.inHeader = false
	part.BodyStart = bodyStart
	f.nlBody = p.nl
	if len(p.stack) == 1 && f == p.stack[0] {
		p.rawHeader = f.hdr
		p.rootOver = f.hdrOver
	}
	ci := p.contentInfo(f)
	if f.msgRoot {
		part.Envelope = ci.env.encode()
	}
	// Part.Header is kept for all parts up to maxKeptHeaders bytes in
	// all; beyond that only the root keeps it (Content-* fields and
	// envelopes are parsed all the same).
	if part == p.root || p.keptHeaders+len(f.hdr) <= maxKeptHeaders {
		part.Header = ci.header
		p.keptHeaders += len(f.hdr)
	}

	multipart, rfc822 := ci.multipart, ci.rfc822
	part.textFlag = ci.text
	part.hasSubtype = ci.hasType
	if !ci.isMIME {
		multipart, rfc822 = false, false
		part.textFlag, part.hasSubtype = false, false
	}
	if !ci.hasType || !ci.isMIME {
		if f.parentDigest {
			part.Type, part.Subtype = "message", "rfc822"
			rfc822 = true
		} else {
			part.Type, part.Subtype = "text", "plain"
			part.textFlag = true
		}
	}
	if f.leaf && rfc822 {
		// Not parsed, so it cannot be reported as a message (RFC 3501
		// §9 body-type-msg needs its envelope and body): an opaque part
		// (RFC 2046 §4.5.1).
		part.Type, part.Subtype, part.textFlag = "application", "octet-stream", false
	}
	if f.leaf || multipart && f.depth+1 >= MaxNesting {
		multipart, rfc822 = false, false
	}
	// At the nesting limit a message/rfc822 part still gets its
	// encapsulated message (RFC 3501 §9 body-type-msg needs an envelope
	// and a body), but that message is not parsed further.
	leafChild := rfc822 && f.depth+1 >= MaxNesting
	switch {
	case multipart:
		part.Multipart = true
		if ci.hasBoundary && !closing {
			f.boundary = ci.boundary
			f.active = true
			p.nActive++
		}
		f.digest = ci.digest
	case rfc822:
		part.global = ci.global
		child := &Part{HeaderStart: bodyStart}
		part.Message = child
		p.total++
		cf := &frame{part: child, depth: f.depth + 1, inHeader: true, msgRoot: true, leaf: leafChild}
		if closing {
			p.endHeader(cf, bodyStart, true)
			child.End = bodyStart
		} else {
			p.stack = append(p.stack, cf)
		}
	}
}

type contentInfo struct {
	header      Header
	env         envelope
	isMIME      bool
	hasType     bool
	multipart   bool
	digest      bool
	rfc822      bool
	global      bool
	text        bool
	hasBoundary bool
	boundary    []byte
}

// contentInfo reads the Content-* fields of a part's header into the
// part, as Dovecot's message-part-data does: the first of each field
// wins, and without MIME-Version or Content-Type (outside a multipart) the
// Content-* fields are ignored (RFC 2045 §4).
func (p *parser) contentInfo(f *frame) contentInfo {
	var ci contentInfo
	part := f.part
	ci.isMIME = f.mimeChild
	var c Part
	seenType, seenCTE := false, false
	ci.header = parseHeader(f.hdr, bytes.Count(f.hdr, []byte{'\n'}))
	for _, hf := range ci.header {
		name, raw, value := hf.Name, hf.Raw, hf.Value
		if f.msgRoot && isEnvelopeField([]byte(name)) {
			ci.env.add(name, raw, value)
		}
		if equalFold(name, "mime-version") {
			ci.isMIME = true
			continue
		}
		if !hasPrefixFold(name, "content-") {
			continue
		}
		sub := name[len("content-"):]
		switch {
		case equalFold(sub, "type"):
			ci.isMIME = true
			if seenType {
				continue
			}
			seenType = true
			ci.hasType = true
			p.parseContentType(&c, []byte(value), &ci)
		case equalFold(sub, "transfer-encoding"):
			if seenCTE {
				continue
			}
			seenCTE = true
			rp := rfcParser{data: []byte(value)}
			rp.skipLWSP()
			tok, r := rp.mimeToken(nil)
			if r >= 0 && rp.skipLWSP() == 0 && len(tok) > 0 {
				c.Encoding = cstr(string(tok))
			}
		case equalFold(sub, "id"):
			if c.Present&HasID == 0 {
				c.ID, c.Present = cstr(value), c.Present|HasID
			}
		case equalFold(sub, "md5"):
			if c.Present&HasMD5 == 0 {
				c.MD5, c.Present = cstr(value), c.Present|HasMD5
			}
		case equalFold(sub, "description"):
			if c.Present&HasDescription == 0 {
				c.Description, c.Present = cstr(value), c.Present|HasDescription
			}
		case equalFold(sub, "location"):
			if c.Present&HasLocation == 0 {
				c.Location, c.Present = cstr(value), c.Present|HasLocation
			}
		case equalFold(sub, "language"):
			if c.Language == nil {
				c.Language = parseLanguage([]byte(value))
			}
		case equalFold(sub, "disposition"):
			if c.DispositionParams == nil {
				rp := rfcParser{data: []byte(value)}
				rp.skipLWSP()
				tok, r := rp.mimeToken(nil)
				if r >= 0 {
					c.Disposition = cstr(string(tok))
					c.Present |= HasDisposition
					c.DispositionParams = parseParams(&rp)
				}
			}
		}
	}
	if ci.isMIME {
		part.Type, part.Subtype, part.Params = c.Type, c.Subtype, c.Params
		part.ID, part.Description, part.Encoding, part.MD5 = c.ID, c.Description, c.Encoding, c.MD5
		part.Disposition, part.DispositionParams = c.Disposition, c.DispositionParams
		part.Language, part.Location, part.Present = c.Language, c.Location, c.Present
	}
	return ci
}

func (p *parser) parseContentType(c *Part, value []byte, ci *contentInfo) {
	rp := rfcParser{data: value}
	rp.skipLWSP()
	ct, r := rp.contentType(p.scratch[:0])
	p.scratch = ct
	if i := bytes.IndexByte(ct, '/'); i >= 0 {
		c.Type, c.Subtype = cstr(string(ct[:i])), cstr(string(ct[i+1:]))
	} else {
		c.Type = cstr(string(ct))
	}
	switch {
	case equalFoldB(ct, "message/rfc822"):
		ci.rfc822 = true
	case equalFoldB(ct, "message/global"):
		// RFC 6532 §3.7, RFC 9051 §9 media-message: an encapsulated
		// message too (Dovecot 2.3 treats it as a leaf; see
		// DIFFERENCES.md).
		ci.rfc822 = true
		ci.global = true
	case hasPrefixFoldB(ct, "text") && (len(ct) == 4 || ct[4] == '/'):
		ci.text = true
	case hasPrefixFoldB(ct, "multipart/"):
		ci.multipart = true
		ci.digest = equalFoldB(ct[len("multipart/"):], "digest")
	}
	// The parser finds the boundary even in a broken Content-Type; the
	// BODYSTRUCTURE parameters are only read from a valid one.
	params := parseParams(&rp)
	if r >= 0 {
		c.Params = params
	}
	if ci.multipart {
		for _, x := range params {
			if equalFold(x.Name, "boundary") {
				b := x.Value
				if len(b) > maxBoundaryLen {
					b = b[:maxBoundaryLen]
				}
				ci.boundary = []byte(b)
				ci.hasBoundary = true
				break
			}
		}
	}
}

// parseLanguage parses Content-Language (RFC 3282): a comma-separated list
// of language tags.
func parseLanguage(value []byte) []string {
	rp := rfcParser{data: value}
	var langs []string
	rp.skipLWSP()
	var tok []byte
	for rp.more() {
		tok = tok[:0]
		var r int
		tok, r = rp.atom(tok)
		if r >= 0 && len(tok) > 0 {
			langs = append(langs, cstr(string(tok)))
		}
		if !rp.at(',') {
			break
		}
		rp.pos++
		rp.skipLWSP()
	}
	return langs
}
