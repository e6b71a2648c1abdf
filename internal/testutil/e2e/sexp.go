package e2e

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Kind is the kind of a parsed IMAP value.
type Kind int

// Value kinds.
const (
	Atom   Kind = iota // atom or number, as sent (e.g. 42, BODY[1], \Seen)
	String             // quoted string or literal: Str is the value
	Nil                // NIL
	List               // parenthesised list
)

// Value is one parsed IMAP value (RFC 3501 §4). Strings sent quoted and
// as literals are the same Value: the form is not part of the meaning.
type Value struct {
	Kind       Kind
	Str        []byte  // Atom and String
	List       []Value // List
	Start, End int     // byte offsets in the parsed response
}

// Equal reports whether a and b mean the same: same structure, strings
// and atoms byte-equal.
func Equal(a, b Value) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case Nil:
		return true
	case List:
		if len(a.List) != len(b.List) {
			return false
		}
		for i := range a.List {
			if !Equal(a.List[i], b.List[i]) {
				return false
			}
		}
		return true
	}
	return bytes.Equal(a.Str, b.Str)
}

// String renders v canonically: strings Go-quoted, lists in parentheses.
func (v Value) String() string {
	var b strings.Builder
	v.write(&b)
	return b.String()
}

func (v Value) write(b *strings.Builder) {
	switch v.Kind {
	case Nil:
		b.WriteString("NIL")
	case Atom:
		b.Write(v.Str)
	case String:
		b.WriteString(strconv.Quote(string(v.Str)))
	case List:
		b.WriteByte('(')
		for i, e := range v.List {
			if i > 0 {
				b.WriteByte(' ')
			}
			e.write(b)
		}
		b.WriteByte(')')
	}
}

// Parser parses IMAP values from a response with inlined literals.
type Parser struct {
	b []byte
	i int
}

// ParseValue parses one value from b (e.g. a BODYSTRUCTURE as sent).
func ParseValue(b []byte) (Value, error) {
	p := &Parser{b: b}
	v, err := p.Value()
	if err != nil {
		return v, err
	}
	if p.i != len(b) {
		return v, fmt.Errorf("trailing bytes after value: %.40q", b[p.i:])
	}
	return v, nil
}

func (p *Parser) errf(format string, args ...any) error {
	return fmt.Errorf("imap value at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

// Value parses the next value, skipping leading spaces.
func (p *Parser) Value() (Value, error) {
	for p.i < len(p.b) && p.b[p.i] == ' ' {
		p.i++
	}
	if p.i >= len(p.b) {
		return Value{}, p.errf("unexpected end")
	}
	start := p.i
	switch c := p.b[p.i]; c {
	case '(':
		p.i++
		v := Value{Kind: List, Start: start}
		for {
			for p.i < len(p.b) && p.b[p.i] == ' ' {
				p.i++
			}
			if p.i >= len(p.b) {
				return v, p.errf("unterminated list")
			}
			if p.b[p.i] == ')' {
				p.i++
				v.End = p.i
				return v, nil
			}
			e, err := p.Value()
			if err != nil {
				return v, err
			}
			v.List = append(v.List, e)
		}
	case '"':
		p.i++
		var s []byte
		for {
			if p.i >= len(p.b) {
				return Value{}, p.errf("unterminated quoted string")
			}
			c := p.b[p.i]
			if c == '"' {
				p.i++
				break
			}
			if c == '\\' {
				p.i++
				if p.i >= len(p.b) {
					return Value{}, p.errf("unterminated quoted string")
				}
				c = p.b[p.i]
			}
			s = append(s, c)
			p.i++
		}
		if s == nil {
			s = []byte{}
		}
		return Value{Kind: String, Str: s, Start: start, End: p.i}, nil
	case '{', '~':
		j := bytes.IndexByte(p.b[p.i:], '}')
		if j < 0 {
			return Value{}, p.errf("bad literal")
		}
		num := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(string(p.b[p.i:p.i+j]), "~"), "{"), "+")
		n, err := strconv.Atoi(num)
		if err != nil {
			return Value{}, p.errf("bad literal length %q", num)
		}
		body := p.i + j + 3 // "}\r\n"
		if body+n > len(p.b) {
			return Value{}, p.errf("short literal")
		}
		p.i = body + n
		return Value{Kind: String, Str: p.b[body : body+n], Start: start, End: p.i}, nil
	case ')':
		return Value{}, p.errf("unexpected )")
	}
	// atom, possibly with a [section] that may contain spaces and parens
	j := p.i
	depth := 0
	for j < len(p.b) {
		c := p.b[j]
		if c == '[' {
			depth++
		} else if c == ']' {
			depth--
		} else if depth == 0 && (c == ' ' || c == '(' || c == ')') {
			break
		}
		j++
	}
	a := p.b[p.i:j]
	p.i = j
	if len(a) == 0 {
		return Value{}, p.errf("empty atom")
	}
	if strings.EqualFold(string(a), "NIL") {
		return Value{Kind: Nil, Start: start, End: j}, nil
	}
	return Value{Kind: Atom, Str: a, Start: start, End: j}, nil
}

// PartPaths returns every part specifier of a BODYSTRUCTURE (or BODY)
// value, depth first, numbered per RFC 3501 §6.4.5: a non-multipart
// message has part "1"; the children of a multipart are 1, 2, ...; a
// message/rfc822 (or message/global) part n has the encapsulated
// message's parts below it as n.1, n.2, ... (n.1 being its body when that
// is not multipart).
func PartPaths(bs Value) []string {
	if isMultipart(bs) {
		return multipartPaths(bs, "")
	}
	return append([]string{"1"}, childPaths(bs, "1")...)
}

// MessageParts returns the part specifiers of PartPaths whose part is an
// encapsulated message (message/rfc822 or message/global with an
// envelope), for BODY[p.HEADER] and BODY[p.TEXT].
func MessageParts(bs Value) []string {
	var out []string
	var walk func(v Value, path string)
	walk = func(v Value, path string) {
		if isMultipart(v) {
			n := 0
			for _, c := range v.List {
				if c.Kind != List {
					break
				}
				n++
				p := strconv.Itoa(n)
				if path != "" {
					p = path + "." + p
				}
				walk(c, p)
			}
			return
		}
		if v.Kind != List || len(v.List) < 9 {
			return
		}
		t, s := strings.ToUpper(string(v.List[0].Str)), strings.ToUpper(string(v.List[1].Str))
		if t != "MESSAGE" || (s != "RFC822" && s != "GLOBAL") || v.List[8].Kind != List || path == "" {
			return
		}
		out = append(out, path)
		inner := v.List[8]
		if isMultipart(inner) {
			walk(inner, path)
		} else {
			walk(inner, path+".1")
		}
	}
	if isMultipart(bs) {
		walk(bs, "")
	}
	// A non-multipart message whose body is itself a message: part 1.
	if !isMultipart(bs) && bs.Kind == List && len(bs.List) >= 9 {
		walk(bs, "1")
	}
	return out
}

func isMultipart(v Value) bool {
	return v.Kind == List && len(v.List) > 0 && v.List[0].Kind == List
}

func multipartPaths(v Value, prefix string) []string {
	var out []string
	n := 0
	for _, c := range v.List {
		if c.Kind != List {
			break
		}
		n++
		p := prefix + strconv.Itoa(n)
		out = append(out, p)
		out = append(out, childPaths(c, p)...)
	}
	return out
}

func childPaths(v Value, path string) []string {
	if isMultipart(v) {
		return multipartPaths(v, path+".")
	}
	if v.Kind != List || len(v.List) < 9 {
		return nil
	}
	t, s := strings.ToUpper(string(v.List[0].Str)), strings.ToUpper(string(v.List[1].Str))
	if t != "MESSAGE" || (s != "RFC822" && s != "GLOBAL") || v.List[8].Kind != List {
		return nil
	}
	inner := v.List[8]
	if isMultipart(inner) {
		return multipartPaths(inner, path+".")
	}
	return append([]string{path + ".1"}, childPaths(inner, path+".1")...)
}
