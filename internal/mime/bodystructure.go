package mime

import "strconv"

// Dovecot writes an empty text/plain part for a multipart that has no
// parts (RFC 3501 body-type-mpart needs at least one).
const (
	emptyBody          = `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)`
	emptyBodyStructure = `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)`
)

// BodyStructure returns the IMAP BODYSTRUCTURE (extended=true) or BODY
// (extended=false) of p, encoded as IMAP syntax (RFC 3501 §7.4.2,
// RFC 9051 §7.5.2), e.g.
// ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 12 1 NIL NIL NIL NIL).
//
// It is byte for byte what Dovecot 2.3 writes: type and subtype as written
// in the header ("message" "rfc822" for an encapsulated message); a text
// part without a charset parameter gets ("charset" "us-ascii") appended;
// parameters are in header order with RFC 2231 continuations joined (see
// Param); the size is End-BodyStart octets of the stored bytes; text and
// message/rfc822 parts give their line count; strings that cannot be
// quoted (8-bit, CR, LF, more than four '"' or '\') are literals {n}CRLF.
func (p *Part) BodyStructure(extended bool) string {
	return string(p.appendBodyStructure(make([]byte, 0, 256), extended))
}

func (p *Part) appendBodyStructure(b []byte, ext bool) []byte {
	b = append(b, '(')
	if p.Multipart {
		if len(p.Parts) == 0 {
			if ext {
				b = append(b, emptyBodyStructure...)
			} else {
				b = append(b, emptyBody...)
			}
		}
		for _, c := range p.Parts {
			b = c.appendBodyStructure(b, ext)
		}
		b = append(b, ' ')
		b = appendString(b, p.Subtype)
		if ext {
			b = append(b, ' ')
			b = appendParams(b, p.Params, false)
			b = p.appendCommonExt(b)
		}
		return append(b, ')')
	}
	text := false
	if p.Message != nil {
		if p.global {
			b = append(b, `"message" "global"`...)
		} else {
			b = append(b, `"message" "rfc822"`...)
		}
	} else {
		text = equalFold(p.Type, "text")
		b = appendString(b, p.Type)
		b = append(b, ' ')
		b = appendString(b, p.Subtype)
	}
	b = append(b, ' ')
	b = appendParams(b, p.Params, text)
	b = append(b, ' ')
	b = appendNString(b, p.ID, p.Present&HasID != 0)
	b = append(b, ' ')
	b = appendNString(b, p.Description, p.Present&HasDescription != 0)
	b = append(b, ' ')
	if p.Encoding != "" {
		b = appendString(b, p.Encoding)
	} else {
		b = append(b, `"7bit"`...)
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, p.End-p.BodyStart, 10)
	if text {
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Lines, 10)
	} else if p.Message != nil {
		b = append(b, ' ')
		env := p.Message.Envelope
		if env == "" {
			env = "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
		}
		b = append(b, env...)
		b = append(b, ' ')
		b = p.Message.appendBodyStructure(b, ext)
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Lines, 10)
	}
	if ext {
		b = append(b, ' ')
		b = appendNString(b, p.MD5, p.Present&HasMD5 != 0)
		b = p.appendCommonExt(b)
	}
	return append(b, ')')
}

// appendCommonExt appends " disposition language location".
func (p *Part) appendCommonExt(b []byte) []byte {
	b = append(b, ' ')
	if p.Present&HasDisposition == 0 {
		b = append(b, "NIL"...)
	} else {
		b = append(b, '(')
		b = appendString(b, p.Disposition)
		b = append(b, ' ')
		b = appendParams(b, p.DispositionParams, false)
		b = append(b, ')')
	}
	b = append(b, ' ')
	if len(p.Language) == 0 {
		b = append(b, "NIL"...)
	} else {
		b = append(b, '(')
		for i, l := range p.Language {
			if i > 0 {
				b = append(b, ' ')
			}
			b = appendString(b, l)
		}
		b = append(b, ')')
	}
	b = append(b, ' ')
	return appendNString(b, p.Location, p.Present&HasLocation != 0)
}

func appendParams(b []byte, ps []Param, defaultCharset bool) []byte {
	if !defaultCharset && len(ps) == 0 {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	seen := false
	for i, x := range ps {
		if i > 0 {
			b = append(b, ' ')
		}
		if defaultCharset && equalFold(x.Name, "charset") {
			seen = true
		}
		b = appendString(b, x.Name)
		b = append(b, ' ')
		b = appendString(b, x.Value)
	}
	if defaultCharset && !seen {
		if len(ps) > 0 {
			b = append(b, ' ')
		}
		b = append(b, `"charset" "us-ascii"`...)
	}
	return append(b, ')')
}

// Part returns the part at an IMAP section path (RFC 3501 §6.4.5: "1.2.3"
// as []int{1,2,3}) or nil if there is none. An empty path is the root.
//
// Numbering follows the RFC (and Dovecot): the parts of a message are
// those of its body: the children of a multipart body, or the body itself
// as part 1 for a non-multipart body (also when it is message/rfc822:
// BODY[1] of such a message is the whole encapsulated message). The
// subparts of a message/rfc822 part are those of the encapsulated
// message. A multipart without parts has an empty part 1, as its
// BODYSTRUCTURE shows one.
func (p *Part) Part(path []int) *Part {
	if len(path) == 0 {
		return p
	}
	cur := p.bodyPart(path[0])
	for _, n := range path[1:] {
		switch {
		case cur == nil:
			return nil
		case cur.Message != nil:
			cur = cur.Message.bodyPart(n)
		case cur.Multipart:
			cur = cur.bodyPart(n)
		default:
			return nil
		}
	}
	return cur
}

// bodyPart returns part n of the body of the message whose root is p.
func (p *Part) bodyPart(n int) *Part {
	if !p.Multipart {
		if n == 1 {
			return p
		}
		return nil
	}
	if len(p.Parts) == 0 && n == 1 {
		return &Part{HeaderStart: p.End, BodyStart: p.End, End: p.End, Type: "text", Subtype: "plain"}
	}
	if n < 1 || n > len(p.Parts) {
		return nil
	}
	return p.Parts[n-1]
}
