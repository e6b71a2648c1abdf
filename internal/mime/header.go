package mime

import "bytes"

// ParseHeader splits raw header bytes (as found at [HeaderStart,BodyStart))
// into fields. It never fails.
//
// RFC 5322 §2.2: a field is a line "name:value" followed by continuation
// lines that start with white space. A line without a colon becomes a field
// whose Name is the whole line and whose Value is empty (Dovecot does the
// same). The blank line that ends a header, and anything after it, is not
// a field. Name has trailing white space removed ("Subject :" is
// "Subject"). Value is unfolded: the line breaks (CR and LF) are removed
// and the white space that follows them kept, as Dovecot does for IMAP.
func ParseHeader(raw []byte) Header {
	var h Header
	forEachField(raw, func(name, rawField []byte, value []byte) {
		h = append(h, HeaderField{Name: string(name), Raw: rawField, Value: string(value)})
	})
	return h
}

// forEachField calls fn for each field of raw with the name, the whole
// field and the unfolded value (valid only during the call when it had to
// be unfolded).
func forEachField(raw []byte, fn func(name, rawField, value []byte)) {
	var buf []byte
	for len(raw) > 0 {
		// One field: first line and its continuation lines.
		end := lineEnd(raw, 0)
		if isBlankLine(raw[:end]) {
			return
		}
		for end < len(raw) && (raw[end] == ' ' || raw[end] == '\t') {
			end = lineEnd(raw, end)
		}
		field := raw[:end:end]
		raw = raw[end:]

		first := field[:lineEnd(field, 0)]
		var name, value []byte
		colon := bytes.IndexByte(first, ':')
		if colon < 0 {
			name = trimEOL(first)
		} else {
			name = first[:colon]
			for n := len(name); n > 0 && (name[n-1] == ' ' || name[n-1] == '\t'); n-- {
				name = name[:n-1]
			}
			value = field[colon+1:]
			for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
				value = value[1:]
			}
		}
		if bytes.IndexByte(value, '\r') >= 0 || bytes.IndexByte(value, '\n') >= 0 {
			buf = buf[:0]
			for _, c := range value {
				if c != '\r' && c != '\n' {
					buf = append(buf, c)
				}
			}
			value = buf
		}
		fn(name, field, value)
	}
}

// lineEnd returns the index just after the LF ending the line that starts
// at i, or len(b).
func lineEnd(b []byte, i int) int {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 0 {
		return len(b)
	}
	return i + j + 1
}

func isBlankLine(l []byte) bool {
	return len(l) == 1 && l[0] == '\n' || len(l) == 2 && l[0] == '\r' && l[1] == '\n'
}

func trimEOL(l []byte) []byte {
	if n := len(l); n > 0 && l[n-1] == '\n' {
		l = l[:n-1]
		if n := len(l); n > 0 && l[n-1] == '\r' {
			l = l[:n-1]
		}
	}
	return l
}

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

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && equalFold(s[:len(prefix)], prefix)
}

// cstr returns s up to its first NUL: Dovecot keeps header values in C
// strings, so a NUL ends them.
func cstr(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i]
		}
	}
	return s
}
