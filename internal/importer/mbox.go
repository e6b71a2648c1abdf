// Package importer reads existing mail for import: mbox files and Maildir
// folders. It only reads and splits; storing is the caller's job (the
// `bucketmail import` command spools each message and appends it).
//
// # mbox
//
// Mbox splits an mbox file (RFC 4155; mboxo and mboxrd) into messages:
//
//   - A message starts after a "From " line (the From_ line) that is the
//     first line of the file or follows a blank line ("\n" or "\r\n", also
//     "\r\r\n"). A "From " line after a non-blank line belongs to the body.
//     A UTF-8 byte order mark and blank lines before the first From_ line
//     are skipped; any other text there means the input is not an mbox
//     (ErrNotMbox).
//   - The From_ line is not part of the message. Its date (asctime form,
//     "Mon Jan  2 15:04:05 2006", optionally with a numeric or named zone
//     before or after the year; also "2006-01-02 15:04:05 -0700") becomes
//     the INTERNALDATE; without a zone it is read as UTC. An unparsable
//     date gives the zero time (the caller picks a default, e.g. now).
//   - The blank line before a From_ line, and a blank last line of the
//     file, is the separator (RFC 4155 §2: "each message ... terminated by
//     an empty line") and not part of the message, as in Dovecot, mutt and
//     Python's mailbox module. Every other byte is passed through as is:
//     line ends are not changed and ">From " is NOT un-quoted. The file's
//     flavour (mboxo or mboxrd) cannot be told from its content, and
//     Dovecot does not un-quote either, so a message reads the same as it
//     did in Dovecot's mbox. The bytes equal corpus.SplitMbox's split
//     minus that separator line.
//   - Content-Length headers (mboxcl) are ignored: they are unreliable and
//     a message with an unquoted "From " body line after a blank line is
//     split there, as by every From_-based reader.
//
// Compared with Dovecot's mbox reader (TestMboxDovecot, and
// TestMboxDovecotCorpus: 140 corpus files byte-identical, same
// INTERNALDATE), the differences are: Dovecot needs a From_ line with a
// parsable sender and date (it refuses "From user at host  date" and ISO
// dates, and treats "From " lines without a date as body text); it drops
// the last line end of a file that lacks the final blank line (we keep
// it); and it hides its state headers (Status, X-Status, X-Keywords,
// X-UID, X-IMAPbase) and honours Content-Length, where we keep every byte.
//
// The input is streamed: fn gets a reader that ends at the next separator
// and the splitter holds at most one line (up to 64 KiB of it) in memory.
//
// # Maildir
//
// Maildir reads one Maildir folder (cur/ and new/, never tmp/); Subfolders
// lists its Maildir++ subfolders; see maildir.go.
package importer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrNotMbox: the input does not start with a From_ line.
var ErrNotMbox = errors.New("importer: not an mbox file (no \"From \" line at the start)")

const (
	mboxBuf     = 64 << 10
	maxFromLine = 1024 // bytes of a From_ line kept for the date
)

var fromPrefix = []byte("From ")

// Mbox calls fn for each message of the mbox read from r, in file order,
// with a reader of the message's bytes and its INTERNALDATE (zero if the
// From_ line has none that parses). The reader is valid only until fn
// returns; what fn does not read is skipped. An error from fn stops the
// split and is returned (wrapped, with the message number); a read error
// from r is returned wrapped. An empty input has no messages and is not
// an error. See the package doc for the format.
func Mbox(ctx context.Context, r io.Reader, fn func(msg io.Reader, internalDate time.Time) error) error {
	br := bufio.NewReaderSize(r, mboxBuf)
	if b, _ := br.Peek(3); string(b) == "\xef\xbb\xbf" {
		br.Discard(3)
	}
	// Skip blank lines up to the first From_ line.
	var from []byte
	for from == nil {
		if b, _ := br.Peek(len(fromPrefix)); bytes.Equal(b, fromPrefix) {
			var err error
			if from, err = readFromLine(br); err != nil {
				return fmt.Errorf("importer: mbox: %w", err)
			}
			break
		}
		line, err := br.ReadSlice('\n')
		switch {
		case err == io.EOF && len(line) == 0:
			return nil // empty, or only blank lines
		case err != nil && err != io.EOF && err != bufio.ErrBufferFull:
			return fmt.Errorf("importer: mbox: %w", err)
		case err != nil || !isBlank(line):
			return ErrNotMbox
		}
	}
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("importer: mbox message %d: %w", n, err)
		}
		m := &mboxMessage{br: br, lineStart: true}
		if err := fn(m, ParseFromLine(string(from))); err != nil {
			return fmt.Errorf("importer: mbox message %d: %w", n, err)
		}
		if _, err := io.Copy(io.Discard, m); err != nil {
			return fmt.Errorf("importer: mbox message %d: %w", n, err)
		}
		if m.next == nil {
			return nil
		}
		from = m.next
	}
}

// readFromLine consumes a From_ line and returns its first maxFromLine
// bytes without the line end.
func readFromLine(br *bufio.Reader) ([]byte, error) {
	var keep []byte
	for {
		frag, err := br.ReadSlice('\n')
		if room := maxFromLine - len(keep); room > 0 {
			keep = append(keep, frag[:min(room, len(frag))]...)
		}
		switch err {
		case nil, io.EOF:
			return bytes.TrimRight(keep, "\r\n"), nil
		case bufio.ErrBufferFull:
			continue
		default:
			return nil, err
		}
	}
}

// isBlank reports whether a complete line is empty: only CR and LF bytes,
// the rule corpus.SplitMbox uses.
func isBlank(line []byte) bool {
	for _, c := range line {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return len(line) > 0 && line[len(line)-1] == '\n'
}

// mboxMessage reads one message: lines up to the next separator.
type mboxMessage struct {
	br        *bufio.Reader
	lineStart bool   // the next byte from br starts a line
	prevBlank bool   // the last complete line was blank
	held      []byte // a blank line held back: dropped if a From_ line or EOF follows
	out       []byte // owned bytes to hand out first (a released held line)
	outAlias  []byte // then bytes aliasing br's buffer (valid until the next br read)
	done      bool
	next      []byte // the From_ line that ended the message; nil at end of input
	err       error
}

func (m *mboxMessage) Read(p []byte) (int, error) {
	for {
		if len(m.out) > 0 {
			n := copy(p, m.out)
			m.out = m.out[n:]
			return n, nil
		}
		if len(m.outAlias) > 0 {
			n := copy(p, m.outAlias)
			m.outAlias = m.outAlias[n:]
			return n, nil
		}
		if m.err != nil {
			return 0, m.err
		}
		if m.done {
			return 0, io.EOF
		}
		m.step()
	}
}

// step reads the next line (or line fragment) into out/outAlias, or ends
// the message.
func (m *mboxMessage) step() {
	if m.lineStart && m.prevBlank {
		if b, _ := m.br.Peek(len(fromPrefix)); bytes.Equal(b, fromPrefix) {
			m.next, m.err = readFromLine(m.br)
			if m.next == nil && m.err == nil {
				m.next = []byte{}
			}
			m.held, m.done = nil, true
			return
		}
	}
	frag, err := m.br.ReadSlice('\n')
	switch err {
	case nil, io.EOF, bufio.ErrBufferFull:
	default:
		m.err = err
		return
	}
	if err == io.EOF && len(frag) == 0 {
		m.held, m.done = nil, true // a blank last line is the terminator
		return
	}
	blank := m.lineStart && err == nil && isBlank(frag)
	if m.held != nil {
		m.out, m.held = m.held, nil
	}
	if blank {
		m.held = append([]byte(nil), frag...)
	} else {
		m.outAlias = frag
	}
	m.lineStart = err == nil
	if m.lineStart {
		m.prevBlank = blank
	}
	if err == io.EOF {
		m.done = true
	}
}

// fromLayouts are the date forms seen in From_ lines, after the fields
// are joined with single spaces.
var fromLayouts = []string{
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 2006 -0700",
	"Mon Jan 2 15:04:05 -0700 2006",
	"Mon Jan 2 15:04:05 MST 2006",
	"Mon Jan 2 15:04:05 2006 MST",
	"Mon Jan 2 15:04 2006",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
}

// ParseFromLine returns the date of a From_ line ("From sender date",
// with or without the "From " prefix and line end), or the zero time if
// none parses. The sender may contain spaces (e.g. "user at example.com"),
// so the date is searched from every field after the first.
func ParseFromLine(line string) time.Time {
	line = strings.TrimPrefix(line, "From ")
	f := strings.Fields(line)
	for i := 1; i < len(f); i++ {
		s := strings.Join(f[i:], " ")
		for _, layout := range fromLayouts {
			if t, err := time.Parse(layout, s); err == nil {
				return t
			}
		}
	}
	return time.Time{}
}
