package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"
)

// RawIMAP is a minimal IMAP client that keeps every response byte-exact,
// for comparing two servers' answers. It is not a general client: one
// command at a time, synchronising literals only.
type RawIMAP struct {
	conn     net.Conn
	r        *bufio.Reader
	tag      int
	Greeting []byte
	Timeout  time.Duration // per command; default 2 min
}

// DialRaw connects and reads the greeting.
func DialRaw(addr string) (*RawIMAP, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	r := &RawIMAP{conn: c, r: bufio.NewReaderSize(c, 64<<10), Timeout: 2 * time.Minute}
	c.SetDeadline(time.Now().Add(r.Timeout))
	g, err := r.ReadResponse()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	r.Greeting = g
	return r, nil
}

// Close closes the connection.
func (r *RawIMAP) Close() error { return r.conn.Close() }

var literalEnd = regexp.MustCompile(`~?\{(\d+)\+?\}\r\n$`)

// ReadResponse reads one response with its literals inlined as the server
// sent them ("{n}\r\n" followed by n octets), without the final CRLF.
func (r *RawIMAP) ReadResponse() ([]byte, error) {
	var buf []byte
	for {
		line, err := r.r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		buf = append(buf, line...)
		m := literalEnd.FindSubmatch(line)
		if m == nil {
			return bytes.TrimSuffix(buf, []byte("\r\n")), nil
		}
		n, err := strconv.Atoi(string(m[1]))
		if err != nil {
			return nil, err
		}
		start := len(buf)
		buf = append(buf, make([]byte, n)...)
		if _, err := ioReadFull(r.r, buf[start:]); err != nil {
			return nil, err
		}
	}
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Cmd sends "TAG line" and returns the untagged responses (and
// continuation requests) and the tagged completion, e.g. "OK done".
// With lit, line must end in "{n}" for it: the literal is sent after the
// server's continuation request, followed by more (the rest of the
// command line, often ""). If the server refuses the literal, the
// tagged response is returned and the literal is not sent.
func (r *RawIMAP) Cmd(line string, lit []byte, more string) (untagged [][]byte, tagged []byte, err error) {
	r.tag++
	tag := fmt.Sprintf("r%d", r.tag)
	r.conn.SetDeadline(time.Now().Add(r.Timeout))
	if _, err := fmt.Fprintf(r.conn, "%s %s\r\n", tag, line); err != nil {
		return nil, nil, err
	}
	if lit != nil {
		resp, err := r.ReadResponse()
		if err != nil {
			return nil, nil, err
		}
		if !bytes.HasPrefix(resp, []byte("+")) {
			for !bytes.HasPrefix(resp, []byte(tag+" ")) {
				untagged = append(untagged, resp)
				if resp, err = r.ReadResponse(); err != nil {
					return nil, nil, err
				}
			}
			return untagged, resp[len(tag)+1:], nil
		}
		if _, err := r.conn.Write(lit); err != nil {
			return nil, nil, err
		}
		if _, err := fmt.Fprintf(r.conn, "%s\r\n", more); err != nil {
			return nil, nil, err
		}
	}
	for {
		resp, err := r.ReadResponse()
		if err != nil {
			return untagged, nil, err
		}
		if bytes.HasPrefix(resp, []byte(tag+" ")) {
			return untagged, resp[len(tag)+1:], nil
		}
		untagged = append(untagged, resp)
	}
}

// MustOK runs Cmd without a literal and returns the untagged responses,
// or an error unless the completion is OK.
func (r *RawIMAP) MustOK(line string) ([][]byte, error) {
	u, tagged, err := r.Cmd(line, nil, "")
	if err != nil {
		return u, fmt.Errorf("%s: %w", line, err)
	}
	if !bytes.HasPrefix(tagged, []byte("OK")) {
		return u, fmt.Errorf("%s: %s", line, tagged)
	}
	return u, nil
}

// Login logs in with LOGIN (quoted strings).
func (r *RawIMAP) Login(user, pass string) error {
	_, err := r.MustOK(fmt.Sprintf("LOGIN %s %s", Quote(user), Quote(pass)))
	return err
}

// Append APPENDs msg to mailbox and returns the UID from APPENDUID
// (RFC 4315), or the server's tagged answer as an error.
func (r *RawIMAP) Append(mailbox string, msg []byte) (uint32, error) {
	_, tagged, err := r.Cmd(fmt.Sprintf("APPEND %s {%d}", Quote(mailbox), len(msg)), msg, "")
	if err != nil {
		return 0, err
	}
	if !bytes.HasPrefix(tagged, []byte("OK")) {
		return 0, fmt.Errorf("APPEND: %s", tagged)
	}
	m := appendUID.FindSubmatch(tagged)
	if m == nil {
		return 0, fmt.Errorf("APPEND: no APPENDUID in %q", tagged)
	}
	uid, err := strconv.ParseUint(string(m[1]), 10, 32)
	return uint32(uid), err
}

var appendUID = regexp.MustCompile(`\[APPENDUID \d+ (\d+)\]`)

// Quote returns s as an IMAP quoted string.
func Quote(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// FetchItems parses one "* n FETCH (...)" response into its items: key
// (upper-cased as sent, e.g. "BODY[1.MIME]") to value, plus the raw bytes
// of each value as the server sent them.
func FetchItems(resp []byte) (seq uint32, items map[string]Value, raw map[string][]byte, err error) {
	var n int
	i := bytes.Index(resp, []byte(" FETCH ("))
	if !bytes.HasPrefix(resp, []byte("* ")) || i < 0 {
		return 0, nil, nil, fmt.Errorf("not a FETCH response: %.80q", resp)
	}
	n, err = strconv.Atoi(string(resp[2:i]))
	if err != nil {
		return 0, nil, nil, err
	}
	p := &Parser{b: resp, i: i + len(" FETCH ")}
	v, err := p.Value()
	if err != nil {
		return 0, nil, nil, err
	}
	if v.Kind != List || len(v.List)%2 != 0 {
		return 0, nil, nil, fmt.Errorf("FETCH: odd item list in %.200q", resp)
	}
	items = map[string]Value{}
	raw = map[string][]byte{}
	for k := 0; k < len(v.List); k += 2 {
		key := string(bytes.ToUpper(v.List[k].Str))
		items[key] = v.List[k+1]
		raw[key] = resp[v.List[k+1].Start:v.List[k+1].End]
	}
	return uint32(n), items, raw, nil
}
