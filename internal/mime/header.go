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
	return parseHeader(raw, 0)
}

// parseHeader is ParseHeader with a capacity hint; the strings share one
// copy of raw.
func parseHeader(raw []byte, hint int) Header {
	h := make(Header, 0, hint)
	var s string
	forEachField(raw, func(fp fieldPos, value []byte) {
		if s == "" {
			s = string(raw)
		}
		f := HeaderField{Name: s[fp.nameStart:fp.nameEnd], Raw: raw[fp.start:fp.end:fp.end]}
		if fp.valueStart >= 0 {
			f.Value = s[fp.valueStart:fp.valueEnd]
		} else {
			f.Value = string(value)
		}
		h = append(h, f)
	})
	return h
}

// fieldPos locates a field in the raw header: [start,end) is the whole
// field, [nameStart,nameEnd) its name and, when the value needed no
// unfolding, [valueStart,valueEnd) its value (valueStart is -1 otherwise).
type fieldPos struct {
	start, end           int
	nameStart, nameEnd   int
	valueStart, valueEnd int
}

// forEachField calls fn for each field of raw with its position and its
// unfolded value (valid only during the call).
func forEachField(raw []byte, fn func(fp fieldPos, value []byte)) {
	var buf []byte
	pos := 0
	for pos < len(raw) {
		// One field: first line and its continuation lines.
		end := lineEnd(raw, pos)
		if isBlankLine(raw[pos:end]) {
			return
		}
		firstEnd := end
		for end < len(raw) && (raw[end] == ' ' || raw[end] == '\t') {
			end = lineEnd(raw, end)
		}
		fp := fieldPos{start: pos, end: end, nameStart: pos}
		first := raw[pos:firstEnd]
		var value []byte
		colon := bytes.IndexByte(first, ':')
		if colon < 0 {
			fp.nameEnd = pos + len(trimEOL(first))
			fp.valueStart, fp.valueEnd = pos, pos
		} else {
			n := colon
			for n > 0 && (first[n-1] == ' ' || first[n-1] == '\t') {
				n--
			}
			fp.nameEnd = pos + n
			v := pos + colon + 1
			for v < end && (raw[v] == ' ' || raw[v] == '\t') {
				v++
			}
			value = raw[v:end]
			if end == firstEnd {
				// one line: the value is contiguous
				t := trimEOL(value)
				if bytes.IndexByte(t, '\r') < 0 && bytes.IndexByte(t, '\n') < 0 {
					fp.valueStart, fp.valueEnd = v, v+len(t)
					fn(fp, t)
					pos = end
					continue
				}
			}
		}
		fp.valueStart = -1
		buf = buf[:0]
		for _, c := range value {
			if c != '\r' && c != '\n' {
				buf = append(buf, c)
			}
		}
		if colon < 0 {
			fp.valueStart = fp.valueEnd
		}
		fn(fp, buf)
		pos = end
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
