package imapserver

import (
	"bytes"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"sync"
)

// tracer logs protocol lines at debug level (Options.Trace). Credentials
// never reach the log: a LOGIN or AUTHENTICATE line is logged as its tag
// and command only, and every further client line is redacted until the
// command ends (SASL responses, literals carrying the password). Literal
// data (APPEND and FETCH bodies) is never logged, only its size.
type tracer struct {
	log *slog.Logger

	mu     sync.Mutex
	redact string // tag of the LOGIN/AUTHENTICATE in progress, or ""
	in     lineTrace
	out    lineTrace
}

// lineTrace is the state of one direction.
type lineTrace struct {
	buf     []byte // the line so far, up to traceMax bytes
	tail    []byte // its last bytes, to spot a literal header at the end
	skip    int64  // literal bytes still to pass over
	skipped int64
}

const (
	traceMax  = 200
	traceTail = 24
)

var (
	authLine   = regexp.MustCompile(`(?i)^(\S+\s+(?:LOGIN|AUTHENTICATE))(?:\s|$)`)
	literalEnd = regexp.MustCompile(`~?\{(\d{1,18})\+?\}$`)
)

func (t *tracer) client(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.feed(&t.in, p, func(line []byte) {
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
	t.feed(&t.out, p, func(line []byte) {
		t.log.Debug("imap: S: " + string(line))
	})
}

// feed splits p into lines, calling fn for each complete one (truncated
// to traceMax bytes) and for each literal (as "<n literal bytes>").
func (t *tracer) feed(lt *lineTrace, p []byte, fn func([]byte)) {
	for len(p) > 0 {
		if lt.skip > 0 {
			k := min(lt.skip, int64(len(p)))
			lt.skip -= k
			lt.skipped += k
			p = p[k:]
			if lt.skip == 0 {
				fn([]byte("<" + strconv.FormatInt(lt.skipped, 10) + " literal bytes>"))
				lt.skipped = 0
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if room := traceMax - len(lt.buf); room > 0 {
			lt.buf = append(lt.buf, seg[:min(room, len(seg))]...)
		}
		lt.tail = append(lt.tail, seg[max(0, len(seg)-traceTail):]...)
		if len(lt.tail) > traceTail {
			lt.tail = lt.tail[len(lt.tail)-traceTail:]
		}
		if i < 0 {
			return
		}
		fn(bytes.TrimRight(lt.buf, "\r"))
		if m := literalEnd.FindSubmatch(bytes.TrimRight(lt.tail, "\r")); m != nil {
			lt.skip, _ = strconv.ParseInt(string(m[1]), 10, 64)
		}
		lt.buf, lt.tail = lt.buf[:0], lt.tail[:0]
		p = p[i+1:]
	}
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
