package mailstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"strings"

	"github.com/bucketmail/bucketmail/internal/mime"
)

// indexData is what the index row holds besides state, computed once per
// Incoming (a message delivered to several recipients is parsed once).
type indexData struct {
	envelope, bodyStructure, body string
	structure                     []byte
	header                        []byte
	subject, from, to, cc, bcc    string
	messageID                     string
	date                          sql.NullInt64
	rawSubject, rawFrom, rawTo    string // undecoded, for blob metadata hints
	rawDate                       string
}

// MemSpoolMax is the largest message Spool keeps in memory; a larger one
// spills to a file in the spool dir. Creating, writing and removing a
// temporary file costs far more CPU than a typical message's bytes, and a
// delivery is only answered after the blob store has the bytes durably,
// so the spool itself never needs to be on disk.
const MemSpoolMax = 1 << 20

func (s *Store) spool(ctx context.Context, r io.Reader, crlf bool, maxSize int64) (in *Incoming, err error) {
	sw := &spoolWriter{dir: s.opts.SpoolDir}
	defer func() {
		if err != nil {
			sw.discard()
		}
	}()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(sw, h), 64<<10)
	lw := &limitWriter{w: bw, max: maxSize}
	var w io.Writer = lw
	var cw *crlfWriter
	if crlf {
		cw = &crlfWriter{w: lw}
		w = cw
	}
	_, err = io.Copy(w, ctxReader{ctx, r})
	if errors.Is(err, errTooLarge) {
		// Drain the sender so that the protocol can answer (LMTP 552
		// after DATA); the bytes are not stored.
		io.Copy(io.Discard, ctxReader{ctx, r})
		return nil, fmt.Errorf("mailstore: spool: %w: more than %d bytes", ErrTooLarge, maxSize)
	}
	if err != nil {
		return nil, fmt.Errorf("mailstore: spool: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("mailstore: spool: %w", err)
	}
	size := lw.n
	in = &Incoming{Size: size, spooled: true}
	if sw.f != nil {
		in.path, in.f = sw.f.Name(), sw.f
	} else {
		in.mem = sw.buf.Bytes()
	}
	copy(in.SHA256[:], h.Sum(nil))

	if err := parseIncoming(in); err != nil {
		s.log.Error("mailstore: spool: parse failed", "size", size, "err", err)
		return nil, fmt.Errorf("mailstore: spool: %w", err)
	}
	return in, nil
}

// spoolWriter keeps up to MemSpoolMax bytes in memory, then moves them to
// a temporary file in dir and writes the rest there.
type spoolWriter struct {
	dir string
	buf bytes.Buffer
	f   *os.File
}

func (w *spoolWriter) Write(p []byte) (int, error) {
	if w.f == nil && w.buf.Len()+len(p) <= MemSpoolMax {
		return w.buf.Write(p)
	}
	if w.f == nil {
		f, err := os.CreateTemp(w.dir, "in-*")
		if err != nil {
			return 0, err
		}
		w.f = f
		if _, err := f.Write(w.buf.Bytes()); err != nil {
			return 0, err
		}
		w.buf = bytes.Buffer{}
	}
	return w.f.Write(p)
}

// discard removes the spill file, if any.
func (w *spoolWriter) discard() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
	}
}

// parseIncoming parses the spooled message and computes its index data.
// mime.Parse never fails on bad input; a panic in it is a parser bug, and
// is turned into an error so that one message cannot take the server
// down.
func parseIncoming(in *Incoming) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parse: panic: %v", r)
		}
	}()
	parsed, err := mime.Parse(bufio.NewReaderSize(in.reader(), 64<<10))
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	if parsed.Size != in.Size || parsed.Root == nil {
		return fmt.Errorf("parse: parser read %d bytes of %d", parsed.Size, in.Size)
	}
	in.Parsed = parsed
	in.idx = buildIndexData(parsed)
	return nil
}

func buildIndexData(p *mime.Message) *indexData {
	hdr := p.Root.Header
	if hdr == nil {
		hdr = mime.ParseHeader(p.RawHeader)
	}
	get := func(name string) string { v, _ := hdr.Get(name); return v }
	d := &indexData{
		envelope:      mime.Envelope(hdr),
		bodyStructure: p.Root.BodyStructure(true),
		body:          p.Root.BodyStructure(false),
		structure:     mime.EncodeStructure(p.Root),
		header:        p.RawHeader,
		rawSubject:    get("Subject"),
		rawFrom:       get("From"),
		rawTo:         get("To"),
		rawDate:       get("Date"),
		messageID:     strings.TrimSpace(get("Message-ID")),
	}
	if d.header == nil {
		d.header = []byte{}
	}
	if d.structure == nil {
		d.structure = []byte{}
	}
	d.subject = mime.DecodeHeaderValue(d.rawSubject)
	d.from = mime.DecodeHeaderValue(d.rawFrom)
	d.to = mime.DecodeHeaderValue(d.rawTo)
	d.cc = mime.DecodeHeaderValue(get("Cc"))
	d.bcc = mime.DecodeHeaderValue(get("Bcc"))
	if t, err := mail.ParseDate(strings.TrimSpace(d.rawDate)); err == nil {
		d.date = sql.NullInt64{Int64: t.Unix(), Valid: true}
	}
	return d
}

func (in *Incoming) close() error {
	if in == nil || !in.spooled {
		return nil
	}
	in.spooled = false
	in.mem = nil
	if in.f == nil {
		return nil
	}
	err := in.f.Close()
	if rerr := os.Remove(in.path); err == nil && !errors.Is(rerr, os.ErrNotExist) {
		err = rerr
	}
	in.f = nil
	return err
}

// reader returns a fresh seekable reader of the spooled bytes (safe for
// concurrent use: each reader reads its own offset of the shared bytes or
// file, with ReadAt).
func (in *Incoming) reader() io.ReadSeeker {
	if in.f == nil {
		return bytes.NewReader(in.mem)
	}
	return io.NewSectionReader(in.f, 0, in.Size)
}

var errTooLarge = errors.New("too large")

// limitWriter counts bytes and fails with errTooLarge past max (> 0).
type limitWriter struct {
	w   io.Writer
	n   int64
	max int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.max > 0 && l.n+int64(len(p)) > l.max {
		return 0, errTooLarge
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	return n, err
}

// crlfWriter writes a CR before every LF not already preceded by one
// (also across Write calls). A lone CR is kept as it is.
type crlfWriter struct {
	w      io.Writer
	lastCR bool
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		i := bytes.IndexByte(p[done:], '\n')
		if i < 0 {
			if _, err := c.w.Write(p[done:]); err != nil {
				return done, err
			}
			c.lastCR = p[len(p)-1] == '\r'
			return len(p), nil
		}
		seg := p[done : done+i]
		prevCR := c.lastCR
		if i > 0 {
			prevCR = seg[i-1] == '\r'
		}
		if _, err := c.w.Write(seg); err != nil {
			return done, err
		}
		if prevCR {
			if _, err := c.w.Write([]byte{'\n'}); err != nil {
				return done, err
			}
		} else {
			if _, err := c.w.Write([]byte{'\r', '\n'}); err != nil {
				return done, err
			}
		}
		c.lastCR = false
		done += i + 1
	}
	return len(p), nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
