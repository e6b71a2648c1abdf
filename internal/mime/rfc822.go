package mime

// A tokenizer for structured header values (RFC 5322 §3.2, RFC 2045 §5.1)
// that behaves like Dovecot's lib-mail rfc822-parser, so that what it
// accepts, skips and returns on malformed input is what Dovecot's IMAP
// server reports. Methods returning int use Dovecot's convention: 1 =
// more input follows, 0 = end of input, -1 = syntax error.

// atext classes: 1 = atext, 2 = alpha/digit, 4 = atext but a MIME tspecial.
// 8-bit bytes count as atext (UTF-8, RFC 6532).
var atextChars = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			t[c] = 2
		case c >= 0x80:
			t[c] = 1
		}
	}
	for _, c := range "!#$%&'*+-^_`{|}~" {
		t[c] = 1
	}
	for _, c := range "/=?" {
		t[c] = 4
	}
	return t
}()

func isAtext(c byte) bool            { return atextChars[c] != 0 }
func isAtextNonTspecial(c byte) bool { return atextChars[c]&3 != 0 }

type rfcParser struct {
	data []byte
	pos  int
	// trackComment makes skipLWSP record the last comment's text.
	trackComment bool
	lastComment  []byte
	// nulRepl, when set, replaces NUL in quoted strings and comments;
	// otherwise a NUL in a quoted string is an error.
	nulRepl string
}

func (p *rfcParser) more() bool { return p.pos < len(p.data) }

// cur returns the current byte, or 0 at the end (Dovecot reads the C
// string's terminator there).
func (p *rfcParser) cur() byte {
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

// at reports whether the current byte is c (false at end).
func (p *rfcParser) at(c byte) bool { return p.pos < len(p.data) && p.data[p.pos] == c }

func (p *rfcParser) skipComment() int {
	if p.trackComment {
		p.lastComment = p.lastComment[:0]
	}
	p.pos++
	start := p.pos
	level := 1
	for ; p.pos < len(p.data); p.pos++ {
		switch p.data[p.pos] {
		case 0:
			if p.trackComment && p.nulRepl != "" {
				p.lastComment = append(p.lastComment, p.data[start:p.pos]...)
				p.lastComment = append(p.lastComment, p.nulRepl...)
				start = p.pos + 1
			}
		case '(':
			level++
		case ')':
			level--
			if level == 0 {
				if p.trackComment {
					p.lastComment = append(p.lastComment, p.data[start:p.pos]...)
				}
				p.pos++
				return 1
			}
		case '\n':
			if p.trackComment {
				seg := p.data[start:p.pos]
				if n := len(seg); n > 0 && seg[n-1] == '\r' {
					seg = seg[:n-1]
				}
				p.lastComment = append(p.lastComment, seg...)
				start = p.pos + 1
			}
		case '\\':
			p.pos++
			if p.pos >= len(p.data) {
				return -1
			}
			if c := p.data[p.pos]; c == '\r' || c == '\n' || c == 0 {
				p.pos--
				break
			}
			if p.trackComment {
				p.lastComment = append(p.lastComment, p.data[start:p.pos-1]...)
			}
			start = p.pos
		}
	}
	return -1
}

// skipLWSP skips white space and comments.
func (p *rfcParser) skipLWSP() int {
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			p.pos++
			continue
		}
		if c != '(' {
			break
		}
		if p.skipComment() < 0 {
			return -1
		}
	}
	if p.pos < len(p.data) {
		return 1
	}
	return 0
}

// mimeToken appends an RFC 2045 token (plus '.') to dst.
func (p *rfcParser) mimeToken(dst []byte) ([]byte, int) {
	start := p.pos
	for ; p.pos < len(p.data); p.pos++ {
		c := p.data[p.pos]
		if isAtextNonTspecial(c) || c == '.' {
			continue
		}
		dst = append(dst, p.data[start:p.pos]...)
		return dst, p.skipLWSP()
	}
	return append(dst, p.data[start:]...), 0
}

// atom appends an atom.
func (p *rfcParser) atom(dst []byte) ([]byte, int) {
	if p.pos >= len(p.data) || !isAtext(p.data[p.pos]) {
		return dst, -1
	}
	start := p.pos
	for p.pos++; p.pos < len(p.data); p.pos++ {
		if !isAtext(p.data[p.pos]) {
			dst = append(dst, p.data[start:p.pos]...)
			return dst, p.skipLWSP()
		}
	}
	return append(dst, p.data[start:]...), 0
}

// atomOrDot appends atext and '.' characters (obs-phrase).
// Like Dovecot's, it accepts an empty atom (so "<addr>" is a name-addr
// with an empty display name).
func (p *rfcParser) atomOrDot(dst []byte) ([]byte, int) {
	start := p.pos
	for ; p.pos < len(p.data); p.pos++ {
		c := p.data[p.pos]
		if !isAtext(c) && c != '.' {
			dst = append(dst, p.data[start:p.pos]...)
			return dst, p.skipLWSP()
		}
	}
	return append(dst, p.data[start:]...), 0
}

// dotAtom appends a dot-atom, allowing white space around dots as RFC 822
// did.
func (p *rfcParser) dotAtom(dst []byte) ([]byte, int) {
	if p.pos >= len(p.data) || !isAtext(p.data[p.pos]) {
		return dst, -1
	}
	start := p.pos
	p.pos++
	for p.pos < len(p.data) {
		if isAtext(p.data[p.pos]) {
			p.pos++
			continue
		}
		if start == p.pos {
			return dst, -1
		}
		dst = append(dst, p.data[start:p.pos]...)
		r := p.skipLWSP()
		if r <= 0 {
			return dst, r
		}
		if p.data[p.pos] != '.' {
			return dst, 1
		}
		p.pos++
		dst = append(dst, '.')
		if r = p.skipLWSP(); r <= 0 {
			return dst, r
		}
		start = p.pos
	}
	return append(dst, p.data[start:]...), 0
}

// quotedString appends the content of a quoted string starting at '"'.
func (p *rfcParser) quotedString(dst []byte) ([]byte, int) {
	p.pos++
	start := p.pos
	for ; p.pos < len(p.data); p.pos++ {
		switch p.data[p.pos] {
		case 0:
			if p.nulRepl == "" {
				return dst, -1
			}
			dst = append(dst, p.data[start:p.pos]...)
			dst = append(dst, p.nulRepl...)
			start = p.pos + 1
		case '"':
			dst = append(dst, p.data[start:p.pos]...)
			p.pos++
			return dst, p.skipLWSP()
		case '\n':
			seg := p.data[start:p.pos]
			if n := len(seg); n > 0 && seg[n-1] == '\r' {
				seg = seg[:n-1]
			}
			dst = append(dst, seg...)
			start = p.pos + 1
		case '\\':
			p.pos++
			if p.pos >= len(p.data) {
				return dst, -1
			}
			dst = append(dst, p.data[start:p.pos-1]...)
			start = p.pos
		}
	}
	return dst, -1
}

// phrase appends words separated by single spaces (RFC 5322 phrase and
// obs-phrase).
func (p *rfcParser) phrase(dst []byte) ([]byte, int) {
	if p.pos >= len(p.data) {
		return dst, 0
	}
	if p.data[p.pos] == '.' {
		return dst, -1
	}
	for {
		var r int
		if p.data[p.pos] == '"' {
			dst, r = p.quotedString(dst)
		} else {
			dst, r = p.atomOrDot(dst)
		}
		if r <= 0 {
			return dst, r
		}
		c := p.data[p.pos]
		if !isAtext(c) && c != '"' && c != '.' {
			break
		}
		dst = append(dst, ' ')
	}
	return dst, p.skipLWSP()
}

// domain appends a domain after '@' (dot-atom or domain-literal).
func (p *rfcParser) domain(dst []byte) ([]byte, int) {
	p.pos++ // '@'
	if r := p.skipLWSP(); r <= 0 {
		return dst, -1
	}
	if p.data[p.pos] == '[' {
		return p.domainLiteral(dst)
	}
	return p.dotAtom(dst)
}

func (p *rfcParser) domainLiteral(dst []byte) ([]byte, int) {
	start := p.pos
	for p.pos++; p.pos < len(p.data); p.pos++ {
		switch p.data[p.pos] {
		case '\\':
			p.pos++
			if p.pos >= len(p.data) {
				return dst, -1
			}
		case '[':
			return dst, -1
		case ']':
			p.pos++
			dst = appendNoLF(dst, p.data[start:p.pos])
			return dst, p.skipLWSP()
		}
	}
	return dst, -1
}

func appendNoLF(dst, s []byte) []byte {
	for _, c := range s {
		if c != '\r' && c != '\n' {
			dst = append(dst, c)
		}
	}
	return dst
}

// contentType parses "type/subtype" into dst (as written). It fails (r <
// 0) when either token is missing or something other than parameters
// follows, as Dovecot's rfc822_parse_content_type does; dst then holds
// nothing, or just the type when the value is a lone token.
func (p *rfcParser) contentType(dst []byte) ([]byte, int) {
	n := len(dst)
	if p.skipLWSP() <= 0 {
		return dst[:n], -1
	}
	var r int
	dst, r = p.mimeToken(dst)
	if r <= 0 {
		// "type" alone: Dovecot keeps it (subtype "")
		return dst, -1
	}
	if len(dst) == n || p.data[p.pos] != '/' {
		return dst[:n], -1
	}
	p.pos++
	if p.skipLWSP() <= 0 {
		return dst[:n], -1
	}
	dst = append(dst, '/')
	dst, r = p.mimeToken(dst)
	if r < 0 || r > 0 && p.data[p.pos] != ';' {
		return dst[:n], -1
	}
	return dst, r
}

// contentParam parses one ";name=value". r: 1 ok, 0 end, -1 broken.
func (p *rfcParser) contentParam(tmp []byte) (key, value []byte, r int) {
	if p.pos >= len(p.data) {
		return nil, nil, 0
	}
	if p.data[p.pos] != ';' {
		return nil, nil, -1
	}
	p.pos++
	if p.skipLWSP() <= 0 {
		return nil, nil, -1
	}
	tmp = tmp[:0]
	tmp, r = p.mimeToken(tmp)
	if r <= 0 {
		return nil, nil, -1
	}
	keyLen := len(tmp)
	if p.data[p.pos] != '=' {
		return nil, nil, -1
	}
	p.pos++
	if r = p.skipLWSP(); r <= 0 {
		// no value
	} else if p.data[p.pos] == '"' {
		tmp, r = p.quotedString(tmp)
	} else if p.data[p.pos] == '=' {
		// broken input: name==?utf-8?b?...?=
		for p.pos < len(p.data) {
			c := p.data[p.pos]
			if c == ';' || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				break
			}
			tmp = append(tmp, c)
			p.pos++
		}
	} else {
		tmp, r = p.mimeToken(tmp)
	}
	if r < 0 {
		return nil, nil, -1
	}
	return tmp[:keyLen], tmp[keyLen:], 1
}
