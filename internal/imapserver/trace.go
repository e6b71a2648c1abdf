package imapserver

import (
	"bytes"
	"io"
	"log/slog"
	"regexp"
	"sync"
)

// tracer logs protocol lines at debug level (Options.Trace). Credentials
// never reach the log: a LOGIN or AUTHENTICATE line is logged as its tag
// and command only, and every further client line is redacted until the
// command ends (SASL responses, literals carrying the password).
type tracer struct {
	log *slog.Logger

	mu      sync.Mutex
	redact  string // tag of the LOGIN/AUTHENTICATE in progress, or ""
	inLine  []byte
	outLine []byte
}

const traceMax = 200

var authLine = regexp.MustCompile(`(?i)^(\S+\s+(?:LOGIN|AUTHENTICATE))(?:\s|$)`)

func (t *tracer) client(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inLine = t.feed(t.inLine, p, func(line []byte) {
		if m := authLine.FindSubmatch(line); m != nil {
			t.redact = string(bytes.Fields(line)[0])
			t.log.Debug("imap: C: " + string(m[1]) + " <redacted>")
			return
		}
		if t.redact != "" {
			t.log.Debug("imap: C: <redacted>")
			return
		}
		t.log.Debug("imap: C: " + string(line))
	})
}

func (t *tracer) server(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.outLine = t.feed(t.outLine, p, func(line []byte) {
		t.log.Debug("imap: S: " + string(line))
	})
}

// feed splits p into lines, calling fn for each complete one (truncated
// to traceMax bytes); the unfinished rest is returned.
func (t *tracer) feed(buf, p []byte, fn func([]byte)) []byte {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := traceMax - len(buf)
			if room > 0 {
				buf = append(buf, p[:min(room, len(p))]...)
			}
			return buf
		}
		room := traceMax - len(buf)
		if room > 0 {
			buf = append(buf, p[:min(room, i)]...)
		}
		fn(bytes.TrimRight(buf, "\r"))
		buf = buf[:0]
		p = p[i+1:]
	}
	return buf
}

// endCommand ends redaction after the tagged response of the command
// that started it.
func (t *tracer) endCommand(tag string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.redact == tag {
		t.redact = ""
	}
	t.mu.Unlock()
}

type traceReader struct {
	r io.Reader
	t *tracer
}

func (r *traceReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.client(p[:n])
	}
	return n, err
}

type traceWriter struct {
	w io.Writer
	t *tracer
}

func (w *traceWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if n > 0 {
		w.t.server(p[:n])
	}
	return n, err
}
