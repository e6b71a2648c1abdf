package mime

import (
	"bufio"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
	"golang.org/x/text/encoding/unicode"
)

// DecodeHeaderValue decodes RFC 2047 encoded words (and raw UTF-8 / 8-bit
// per RFC 6532) in a header value to UTF-8, for SEARCH and SORT. It never
// fails; undecodable words are left as they are.
//
// White space between two adjacent encoded words is dropped (RFC 2047
// §6.2). Encoded words are also recognised inside quoted strings and
// without surrounding white space, as mailers produce them. The charset
// may carry an RFC 2231 language suffix ("utf-8*en"). Raw bytes that are
// not valid UTF-8 are read as ISO-8859-1.
func DecodeHeaderValue(v string) string {
	if !strings.Contains(v, "=?") {
		return toUTF8Lenient(v)
	}
	var b strings.Builder
	// Adjacent encoded words in the same charset are decoded together:
	// mailers split multi-byte characters (and ISO-2022 escape
	// sequences) across words.
	var pendCharset string
	var pendRaw []byte
	var pendWords []string
	flush := func() {
		if len(pendWords) == 0 {
			return
		}
		if dec, ok := convertCharset(pendCharset, pendRaw); ok {
			b.WriteString(dec)
		} else {
			b.WriteString(toUTF8Lenient(strings.Join(pendWords, "")))
		}
		pendCharset, pendRaw, pendWords = "", pendRaw[:0], pendWords[:0]
	}
	lastWasWord := false
	for len(v) > 0 {
		i := strings.Index(v, "=?")
		if i < 0 {
			flush()
			b.WriteString(toUTF8Lenient(v))
			break
		}
		text := v[:i]
		word, charset, raw, rest, ok := encodedWord(v[i:])
		if !ok {
			flush()
			b.WriteString(toUTF8Lenient(v[:i+2]))
			v = v[i+2:]
			lastWasWord = false
			continue
		}
		adjacent := lastWasWord && isAllWS(text)
		if !adjacent || !strings.EqualFold(charset, pendCharset) {
			flush()
		}
		if !adjacent {
			b.WriteString(toUTF8Lenient(text))
		}
		pendCharset = charset
		pendRaw = append(pendRaw, raw...)
		pendWords = append(pendWords, word)
		lastWasWord = true
		v = rest
	}
	flush()
	return b.String()
}

func isAllWS(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// encodedWord parses "=?charset?B|Q?text?=" at the start of s and returns
// the word, its charset (without an RFC 2231 language) and decoded bytes.
// ok is false when s does not start with an encoded word in a known
// charset.
func encodedWord(s string) (word, charset string, raw []byte, rest string, ok bool) {
	// s starts with "=?"
	q1 := strings.IndexByte(s[2:], '?')
	if q1 < 0 {
		return
	}
	q1 += 2
	if q1+2 >= len(s) || s[q1+2] != '?' {
		return
	}
	enc := s[q1+1]
	end := strings.Index(s[q1+3:], "?=")
	if end < 0 {
		return
	}
	end += q1 + 3
	charset = s[2:q1]
	text := s[q1+3 : end]
	if strings.ContainsAny(charset, " \t\r\n") || strings.ContainsAny(text, " \t\r\n") {
		return
	}
	if i := strings.IndexByte(charset, '*'); i >= 0 {
		charset = charset[:i]
	}
	if !charsetKnown(charset) {
		return
	}
	switch enc {
	case 'B', 'b':
		raw = decodeBase64Lenient([]byte(text))
	case 'Q', 'q':
		raw = make([]byte, 0, len(text))
		for i := 0; i < len(text); i++ {
			c := text[i]
			switch {
			case c == '_':
				raw = append(raw, ' ')
			case c == '=' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]):
				raw = append(raw, unhex(text[i+1])<<4|unhex(text[i+2]))
				i += 2
			default:
				raw = append(raw, c)
			}
		}
	default:
		return
	}
	return s[:end+2], charset, raw, s[end+2:], true
}

func charsetKnown(charset string) bool {
	switch strings.ToLower(charset) {
	case "utf-8", "utf8", "us-ascii", "ascii", "", "utf-16":
		return true
	}
	return charsetEncoding(charset) != nil
}

// charsetEncoding finds a decoder for a MIME charset name (IANA names and
// the WHATWG aliases mailers use, e.g. ks_c_5601-1987).
func charsetEncoding(name string) encoding.Encoding {
	name = strings.ToLower(strings.TrimSpace(name))
	if e, err := htmlindex.Get(name); err == nil && e != nil {
		return e
	}
	if e, err := ianaindex.MIME.Encoding(name); err == nil && e != nil {
		return e
	}
	if e, err := ianaindex.IANA.Encoding(name); err == nil && e != nil {
		return e
	}
	return nil
}

// convertCharset converts raw bytes in charset to UTF-8; false when the
// charset is unknown.
func convertCharset(charset string, raw []byte) (string, bool) {
	switch strings.ToLower(charset) {
	case "utf-8", "utf8", "us-ascii", "ascii", "":
		return toUTF8Lenient(string(raw)), true
	case "utf-16":
		// RFC 2781: big-endian unless a BOM says otherwise.
		out, err := unicode.UTF16(unicode.BigEndian, unicode.UseBOM).NewDecoder().Bytes(raw)
		return string(out), err == nil
	}
	e := charsetEncoding(charset)
	if e == nil {
		return "", false
	}
	out, err := e.NewDecoder().Bytes(raw)
	if err != nil {
		return "", false
	}
	return toUTF8Lenient(string(out)), true
}

// toUTF8Lenient returns s if it is valid UTF-8, else s read as ISO-8859-1.
func toUTF8Lenient(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/4)
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

var b64val = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alpha); i++ {
		t[alpha[i]] = byte(i)
	}
	return t
}()

func decodeBase64Lenient(src []byte) []byte {
	var d b64state
	out := make([]byte, 0, len(src)*3/4+3)
	out = d.decode(out, src)
	return d.flush(out)
}

// b64state is a lenient base64 decoder: it skips bytes outside the
// alphabet, treats '=' as the end of a quantum and goes on after it.
type b64state struct {
	q [4]byte
	n int
}

func (d *b64state) decode(out, src []byte) []byte {
	for _, c := range src {
		if c == '=' {
			out = d.flush(out)
			continue
		}
		v := b64val[c]
		if v == 0xff {
			continue
		}
		d.q[d.n] = v
		d.n++
		if d.n == 4 {
			out = append(out, d.q[0]<<2|d.q[1]>>4, d.q[1]<<4|d.q[2]>>2, d.q[2]<<6|d.q[3])
			d.n = 0
		}
	}
	return out
}

func (d *b64state) flush(out []byte) []byte {
	switch d.n {
	case 2:
		out = append(out, d.q[0]<<2|d.q[1]>>4)
	case 3:
		out = append(out, d.q[0]<<2|d.q[1]>>4, d.q[1]<<4|d.q[2]>>2)
	}
	d.n = 0
	return out
}

// NewDecoder returns a reader that undoes a Content-Transfer-Encoding
// ("base64", "quoted-printable", case-insensitive; others pass through)
// for IMAP BINARY[] (RFC 3516). Bad input is decoded leniently, never an
// error: base64 skips bytes outside its alphabet; quoted-printable keeps a
// '=' that does not start "=XX" or a soft line break, and drops white
// space at the end of lines (RFC 2045 §6.7 rule 3). Errors of r are
// returned.
func NewDecoder(encoding string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "base64":
		return &b64Reader{r: r, in: make([]byte, 8192)}
	case "quoted-printable":
		return &qpReader{br: bufio.NewReaderSize(r, 8192)}
	}
	return r
}

type b64Reader struct {
	r   io.Reader
	in  []byte
	out []byte
	st  b64state
	err error
}

func (d *b64Reader) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		n, err := d.r.Read(d.in)
		d.out = d.st.decode(d.out[:0], d.in[:n])
		if err != nil {
			d.out = d.st.flush(d.out)
			d.err = err
		}
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

type qpReader struct {
	br   *bufio.Reader
	line []byte
	out  []byte
	err  error
}

func (q *qpReader) Read(p []byte) (int, error) {
	for len(q.out) == 0 {
		if q.err != nil {
			return 0, q.err
		}
		line, err := q.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A very long line: decode what we have, no line end.
			q.out = qpDecode(q.line[:0], line, false)
			q.line = q.out
			continue
		}
		q.out = qpDecode(q.line[:0], line, true)
		q.line = q.out
		if err != nil {
			q.err = err
		}
	}
	n := copy(p, q.out)
	q.out = q.out[n:]
	return n, nil
}

// qpDecode decodes one line (with its line end when complete).
func qpDecode(dst, line []byte, complete bool) []byte {
	eol := ""
	body := line
	if complete {
		if n := len(body); n > 0 && body[n-1] == '\n' {
			body = body[:n-1]
			eol = "\n"
			if n := len(body); n > 0 && body[n-1] == '\r' {
				body = body[:n-1]
				eol = "\r\n"
			}
		}
		// trailing white space is padding (RFC 2045 §6.7 rule 3)
		for n := len(body); n > 0 && (body[n-1] == ' ' || body[n-1] == '\t'); n-- {
			body = body[:n-1]
		}
	}
	soft := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '=' {
			dst = append(dst, c)
			continue
		}
		if i+2 < len(body) && isHex(body[i+1]) && isHex(body[i+2]) {
			dst = append(dst, unhex(body[i+1])<<4|unhex(body[i+2]))
			i += 2
			continue
		}
		if i == len(body)-1 && complete {
			soft = true
			break
		}
		dst = append(dst, c)
	}
	if !soft {
		dst = append(dst, eol...)
	}
	return dst
}
