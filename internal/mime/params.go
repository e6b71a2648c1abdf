package mime

import (
	"sort"
	"strconv"
	"strings"
)

// parseParams reads the parameters after a Content-Type or
// Content-Disposition value (RFC 2045 §5.1) and joins RFC 2231 §3
// continuations the way Dovecot's rfc2231_parse does:
//   - plain parameters come first, in order;
//   - then each RFC 2231 parameter (name*N, name*N*, name*), sorted by
//     name, its sections joined; the name keeps a trailing "*" when the
//     first section is extended and the value is not decoded;
//   - when a section is missing, the sections are reported one by one under
//     their written names.
//
// A malformed parameter is skipped up to the next ';'.
func parseParams(p *rfcParser) []Param {
	type sect struct {
		key      string
		idx      int
		extended bool
		value    string
	}
	var out []Param
	var sects []sect
	var tmp []byte
	for {
		key, value, r := p.contentParam(tmp)
		if r == 0 {
			break
		}
		if r < 0 {
			if p.pos >= len(p.data) {
				break
			}
			p.pos++
			continue
		}
		k := cstr(string(key))
		v := cstr(string(value))
		star := strings.IndexByte(k, '*')
		if star < 0 {
			out = append(out, Param{Name: k, Value: v})
			continue
		}
		s := sect{key: k[:star], value: v}
		rest := k[star:] // starts with '*'
		i := 0
		if len(rest) > 1 {
			i = 1
			for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
				s.idx = s.idx*10 + int(rest[i]-'0')
				i++
			}
		}
		if i < len(rest) && rest[i] == '*' {
			s.extended = true
			i++
		}
		if i != len(rest) {
			out = append(out, Param{Name: k, Value: v})
			continue
		}
		sects = append(sects, s)
	}
	if len(sects) == 0 {
		return out
	}
	sort.SliceStable(sects, func(i, j int) bool {
		if c := compareFold(sects[i].key, sects[j].key); c != 0 {
			return c < 0
		}
		return sects[i].idx < sects[j].idx
	})
	for i := 0; i < len(sects); {
		j := i
		ok, haveExt := true, false
		next := 0
		for ; j < len(sects) && equalFold(sects[i].key, sects[j].key); j++ {
			if sects[j].idx != next {
				ok = false
			}
			if sects[j].extended {
				haveExt = true
			}
			next++
		}
		if !ok {
			for k := i; k < j; k++ {
				name := sects[k].key + "*" + strconv.Itoa(sects[k].idx)
				if sects[k].extended {
					name += "*"
				}
				out = append(out, Param{Name: name, Value: sects[k].value})
			}
		} else {
			var b strings.Builder
			if !sects[i].extended && haveExt {
				b.WriteString("''")
			}
			for k := i; k < j; k++ {
				if !sects[k].extended && haveExt {
					b.WriteString(strings.ReplaceAll(sects[k].value, "%", "%25"))
				} else {
					b.WriteString(sects[k].value)
				}
			}
			name := sects[i].key
			if sects[i].extended {
				name += "*"
			}
			out = append(out, Param{Name: name, Value: b.String()})
		}
		i = j
	}
	return out
}

func compareFold(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := lower(a[i]), lower(b[i])
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// DecodeParam returns a parameter's name without the RFC 2231 "*" and its
// value decoded to UTF-8: an extended value (charset'lang'%XX, RFC 2231
// §4) is percent-decoded and converted from its charset; RFC 2047 encoded
// words, which some mailers put in parameters, are decoded too. It never
// fails: undecodable input is returned as it is.
func DecodeParam(p Param) (name, value string) {
	name = p.Name
	if strings.HasSuffix(name, "*") {
		name = strings.TrimSuffix(name, "*")
		if v, ok := decode2231(p.Value); ok {
			return name, v
		}
		return name, p.Value
	}
	if strings.Contains(p.Value, "=?") {
		return name, DecodeHeaderValue(p.Value)
	}
	return name, toUTF8Lenient(p.Value)
}

// decode2231 decodes charset'lang'%XX.
func decode2231(v string) (string, bool) {
	q1 := strings.IndexByte(v, '\'')
	if q1 < 0 {
		return "", false
	}
	q2 := strings.IndexByte(v[q1+1:], '\'')
	if q2 < 0 {
		return "", false
	}
	charset := v[:q1]
	enc := v[q1+1+q2+1:]
	raw := make([]byte, 0, len(enc))
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		if c == '%' && i+2 < len(enc) && isHex(enc[i+1]) && isHex(enc[i+2]) {
			raw = append(raw, unhex(enc[i+1])<<4|unhex(enc[i+2]))
			i += 2
			continue
		}
		raw = append(raw, c)
	}
	if charset == "" {
		return toUTF8Lenient(string(raw)), true
	}
	s, ok := convertCharset(charset, raw)
	return s, ok
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// Param returns the decoded value (see DecodeParam) of the first
// Content-Type parameter named name (case-insensitive, without "*"), and
// whether there was one.
func (p *Part) Param(name string) (string, bool) { return findParam(p.Params, name) }

// DispositionParam is Param for Content-Disposition parameters, e.g.
// "filename".
func (p *Part) DispositionParam(name string) (string, bool) {
	return findParam(p.DispositionParams, name)
}

func findParam(ps []Param, name string) (string, bool) {
	for _, x := range ps {
		n, v := DecodeParam(x)
		if equalFold(n, name) {
			return v, true
		}
	}
	return "", false
}
