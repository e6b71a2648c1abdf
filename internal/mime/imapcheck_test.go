package mime

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A strict checker for the RFC 3501 §9 / RFC 9051 §9 grammar of body,
// body extension and envelope, used on everything BodyStructure and
// Envelope produce.

type sexp struct {
	kind  byte // 'N' NIL, 's' string, 'n' number, 'l' list
	str   string
	num   int64
	items []sexp
}

type sexpReader struct {
	s   string
	pos int
}

var errSyntax = errors.New("imap syntax")

func (r *sexpReader) fail(msg string) error {
	return fmt.Errorf("%w at %d: %s (near %q)", errSyntax, r.pos, msg, r.s[r.pos:min(len(r.s), r.pos+40)])
}

func (r *sexpReader) read() (sexp, error) {
	if r.pos >= len(r.s) {
		return sexp{}, r.fail("unexpected end")
	}
	switch c := r.s[r.pos]; {
	case c == '(':
		r.pos++
		var l sexp
		l.kind = 'l'
		for {
			if r.pos >= len(r.s) {
				return l, r.fail("unterminated list")
			}
			if r.s[r.pos] == ')' {
				r.pos++
				return l, nil
			}
			if n := len(l.items); n > 0 {
				// items are separated by one SP, except that a list
				// may directly follow a list (body-type-mpart: 1*body)
				if r.s[r.pos] == ' ' {
					r.pos++
				} else if !(l.items[n-1].kind == 'l' && r.s[r.pos] == '(') {
					return l, r.fail("missing space")
				}
			}
			it, err := r.read()
			if err != nil {
				return l, err
			}
			l.items = append(l.items, it)
		}
	case c == '"':
		r.pos++
		var b strings.Builder
		for {
			if r.pos >= len(r.s) {
				return sexp{}, r.fail("unterminated quoted")
			}
			c := r.s[r.pos]
			r.pos++
			switch {
			case c == '"':
				return sexp{kind: 's', str: b.String()}, nil
			case c == '\\':
				if r.pos >= len(r.s) || (r.s[r.pos] != '"' && r.s[r.pos] != '\\') {
					return sexp{}, r.fail("bad escape")
				}
				b.WriteByte(r.s[r.pos])
				r.pos++
			case c == '\r' || c == '\n' || c == 0 || c >= 0x80:
				return sexp{}, r.fail("bad char in quoted")
			default:
				b.WriteByte(c)
			}
		}
	case c == '{':
		end := strings.Index(r.s[r.pos:], "}\r\n")
		if end < 0 {
			return sexp{}, r.fail("bad literal")
		}
		n, err := strconv.Atoi(r.s[r.pos+1 : r.pos+end])
		if err != nil || n < 0 {
			return sexp{}, r.fail("bad literal length")
		}
		start := r.pos + end + 3
		if start+n > len(r.s) {
			return sexp{}, r.fail("short literal")
		}
		r.pos = start + n
		v := r.s[start : start+n]
		if strings.IndexByte(v, 0) >= 0 {
			return sexp{}, r.fail("NUL in literal")
		}
		return sexp{kind: 's', str: v}, nil
	case c >= '0' && c <= '9':
		start := r.pos
		for r.pos < len(r.s) && r.s[r.pos] >= '0' && r.s[r.pos] <= '9' {
			r.pos++
		}
		n, err := strconv.ParseInt(r.s[start:r.pos], 10, 64)
		if err != nil || n > 1<<32-1 {
			return sexp{}, r.fail("bad number")
		}
		return sexp{kind: 'n', num: n}, nil
	case strings.HasPrefix(r.s[r.pos:], "NIL"):
		r.pos += 3
		return sexp{kind: 'N'}, nil
	}
	return sexp{}, r.fail("unexpected byte")
}

func parseSexp(s string) (sexp, error) {
	r := &sexpReader{s: s}
	v, err := r.read()
	if err != nil {
		return v, err
	}
	if r.pos != len(s) {
		return v, r.fail("trailing bytes")
	}
	return v, nil
}

func isStr(x sexp) bool  { return x.kind == 's' }
func isNStr(x sexp) bool { return x.kind == 's' || x.kind == 'N' }

func checkParams(x sexp) error {
	if x.kind == 'N' {
		return nil
	}
	if x.kind != 'l' || len(x.items) == 0 || len(x.items)%2 != 0 {
		return fmt.Errorf("body-fld-param: %v", x)
	}
	for _, it := range x.items {
		if !isStr(it) {
			return fmt.Errorf("body-fld-param item not a string")
		}
	}
	return nil
}

func checkDsp(x sexp) error {
	if x.kind == 'N' {
		return nil
	}
	if x.kind != 'l' || len(x.items) != 2 || !isStr(x.items[0]) {
		return fmt.Errorf("body-fld-dsp")
	}
	return checkParams(x.items[1])
}

func checkLang(x sexp) error {
	if isNStr(x) {
		return nil
	}
	if x.kind != 'l' || len(x.items) == 0 {
		return fmt.Errorf("body-fld-lang")
	}
	for _, it := range x.items {
		if !isStr(it) {
			return fmt.Errorf("body-fld-lang item")
		}
	}
	return nil
}

// checkExt checks body-fld-dsp, body-fld-lang, body-fld-loc and
// extensions starting at items[i].
func checkExt(items []sexp) error {
	if len(items) > 0 {
		if err := checkDsp(items[0]); err != nil {
			return err
		}
	}
	if len(items) > 1 {
		if err := checkLang(items[1]); err != nil {
			return err
		}
	}
	if len(items) > 2 && !isNStr(items[2]) {
		return fmt.Errorf("body-fld-loc")
	}
	return nil
}

func checkBody(x sexp, extended bool, depth int) error {
	if depth > 2*MaxNesting+4 {
		return fmt.Errorf("too deep")
	}
	if x.kind != 'l' || len(x.items) == 0 {
		return fmt.Errorf("body is not a non-empty list")
	}
	items := x.items
	if items[0].kind == 'l' {
		// body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
		i := 0
		for i < len(items) && items[i].kind == 'l' {
			if err := checkBody(items[i], extended, depth+1); err != nil {
				return err
			}
			i++
		}
		if i >= len(items) || !isStr(items[i]) {
			return fmt.Errorf("multipart: missing subtype")
		}
		rest := items[i+1:]
		if !extended {
			if len(rest) != 0 {
				return fmt.Errorf("BODY multipart has extension data")
			}
			return nil
		}
		if len(rest) < 1 {
			return fmt.Errorf("BODYSTRUCTURE multipart lacks extension data")
		}
		if err := checkParams(rest[0]); err != nil {
			return err
		}
		return checkExt(rest[1:])
	}
	// body-type-1part
	if len(items) < 7 || !isStr(items[0]) || !isStr(items[1]) {
		return fmt.Errorf("1part: type/subtype")
	}
	if err := checkParams(items[2]); err != nil {
		return err
	}
	if !isNStr(items[3]) || !isNStr(items[4]) || !isStr(items[5]) || items[6].kind != 'n' {
		return fmt.Errorf("1part: body-fields")
	}
	rest := items[7:]
	typ, sub := strings.ToLower(items[0].str), strings.ToLower(items[1].str)
	switch {
	case typ == "message" && (sub == "rfc822" || sub == "global"):
		if len(rest) < 3 {
			return fmt.Errorf("message/rfc822 lacks envelope, body, lines")
		}
		if err := checkEnvelope(rest[0]); err != nil {
			return err
		}
		if err := checkBody(rest[1], extended, depth+1); err != nil {
			return err
		}
		if rest[2].kind != 'n' {
			return fmt.Errorf("message/rfc822 lines")
		}
		rest = rest[3:]
	case typ == "text":
		if len(rest) < 1 || rest[0].kind != 'n' {
			return fmt.Errorf("text lines")
		}
		rest = rest[1:]
	}
	if !extended {
		if len(rest) != 0 {
			return fmt.Errorf("BODY has extension data")
		}
		return nil
	}
	if len(rest) < 1 || !isNStr(rest[0]) {
		return fmt.Errorf("BODYSTRUCTURE lacks body-fld-md5")
	}
	return checkExt(rest[1:])
}

func checkAddrList(x sexp) error {
	if x.kind == 'N' {
		return nil
	}
	if x.kind != 'l' || len(x.items) == 0 {
		return fmt.Errorf("address list")
	}
	for _, a := range x.items {
		if a.kind != 'l' || len(a.items) != 4 {
			return fmt.Errorf("address")
		}
		for _, f := range a.items {
			if !isNStr(f) {
				return fmt.Errorf("address field")
			}
		}
	}
	return nil
}

func checkEnvelope(x sexp) error {
	if x.kind != 'l' || len(x.items) != 10 {
		return fmt.Errorf("envelope needs 10 items")
	}
	it := x.items
	if !isNStr(it[0]) || !isNStr(it[1]) || !isNStr(it[8]) || !isNStr(it[9]) {
		return fmt.Errorf("envelope strings")
	}
	for _, a := range it[2:8] {
		if err := checkAddrList(a); err != nil {
			return err
		}
	}
	return nil
}

// checkIMAPBody reports whether s is a valid body (extended=false) or
// BODYSTRUCTURE value.
func checkIMAPBody(s string, extended bool) error {
	x, err := parseSexp(s)
	if err != nil {
		return err
	}
	return checkBody(x, extended, 0)
}

// checkIMAPEnvelope reports whether s is a valid ENVELOPE value.
func checkIMAPEnvelope(s string) error {
	x, err := parseSexp(s)
	if err != nil {
		return err
	}
	return checkEnvelope(x)
}
