package imapserver

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/bucketmail/bucketmail/internal/imapwire"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/mime"
)

// fetchBatch is how many messages are read from the index at once.
const fetchBatch = 64

// maxPartHeader bounds a part header read from the blob for
// BODY[n.HEADER.FIELDS (...)] (the only case that holds bytes in memory).
const maxPartHeader = 1 << 20

// loadMessages returns copies of the index rows of uids (missing ones are
// skipped). Copies, because a *Message is only valid inside the callback
// and responses are written only after the store call returned.
func (c *conn) loadMessages(uids []uint32) (map[uint32]*mailstore.Message, error) {
	out := make(map[uint32]*mailstore.Message, len(uids))
	err := c.acct.Messages(c.ctx, c.sel.mb.ID, uids, func(m *mailstore.Message) error {
		cp := *m
		cp.Flags = slices.Clone(m.Flags)
		cp.Header = bytes.Clone(m.Header)
		out[m.UID] = &cp
		return nil
	})
	return out, err
}

// cmdFetch implements FETCH and UID FETCH (RFC 3501 §6.4.5, RFC 9051
// §6.4.5, RFC 3516 BINARY). Body data is streamed from the store.
func (c *conn) cmdFetch(tag string, uid bool) error {
	set, err := c.spSeqSetSP()
	if err != nil {
		return err
	}
	items, err := c.dec.FetchItems()
	if err != nil {
		return err
	}
	s := c.sel
	idx, err := c.endSetCommand(set, uid)
	if err != nil {
		return err
	}
	if uid && !slices.ContainsFunc(items, func(it imapwire.FetchItem) bool { return it.Attr == imapwire.FetchUID }) {
		items = append([]imapwire.FetchItem{{Attr: imapwire.FetchUID}}, items...)
	}
	needMsg, setSeen := false, false
	for _, it := range items {
		switch it.Attr {
		case imapwire.FetchUID, imapwire.FetchFlags:
		default:
			needMsg = true
		}
		switch it.Attr {
		case imapwire.FetchBodySection, imapwire.FetchBinary:
			setSeen = setSeen || !it.Peek
		case imapwire.FetchRFC822, imapwire.FetchRFC822Text:
			setSeen = true
		}
	}
	if s.readOnly {
		setSeen = false
	}
	var missing []uint32 // UIDs whose blob object is gone
	for start := 0; start < len(idx); start += fetchBatch {
		batch := idx[start:min(start+fetchBatch, len(idx))]
		var msgs map[uint32]*mailstore.Message
		if needMsg || setSeen {
			if msgs, err = c.loadMessages(s.uidsOf(batch)); err != nil {
				return err
			}
		}
		// Prepare every message of the batch first: anything that can fail
		// (opening bodies, unknown encodings) fails before \Seen is set
		// and before a response starts, and becomes the tagged answer.
		var jobs []fetchJob
		closeAll := func() {
			for _, j := range jobs {
				j.close()
			}
		}
		for _, i := range batch {
			e := &s.msgs[i]
			if e.expunged {
				continue // RFC 2180 §4.1.3: nothing to say about it
			}
			var m *mailstore.Message
			if msgs != nil {
				if m = msgs[e.uid]; m == nil {
					continue // expunged meanwhile by another session
				}
			}
			j := fetchJob{i: i, e: e, m: m}
			err := c.prepareItems(&j, items)
			if errors.Is(err, mailstore.ErrMissingObject) {
				// Issue 3 §6: that message gets no response, the rest
				// of the range is served, the tagged answer says which.
				j.close()
				missing = append(missing, e.uid)
				continue
			}
			jobs = append(jobs, j)
			if err != nil {
				closeAll()
				return err
			}
		}
		seenSet := map[uint32]bool{}
		if setSeen {
			var unseen []uint32
			for _, j := range jobs {
				if !slices.Contains(j.e.flags, mailstore.FlagSeen) {
					unseen = append(unseen, j.e.uid)
				}
			}
			if len(unseen) > 0 {
				c.syncDue = true
				changed, _, err := c.acct.StoreFlags(c.ctx, s.mb.ID, unseen, mailstore.Add, []string{mailstore.FlagSeen}, 0)
				if err != nil {
					closeAll()
					return err
				}
				for _, st := range changed {
					if i := s.find(st.UID); i >= 0 {
						s.msgs[i].flags = st.Flags
						seenSet[st.UID] = true
					}
				}
			}
		}
		for k, j := range jobs {
			err := c.writeFetch(&j, items, seenSet[j.e.uid])
			j.close()
			if err != nil {
				for _, rest := range jobs[k+1:] {
					rest.close()
				}
				return err
			}
		}
	}
	if len(missing) > 0 {
		return c.missingObjects(missing)
	}
	return nil
}

// missingObjects logs, once per command, the UIDs whose blob object is
// missing (see bucketmail fsck) and returns the tagged answer: NO
// [UNAVAILABLE] naming up to 10 of them.
func (c *conn) missingObjects(uids []uint32) error {
	c.log.Warn("imap: message objects missing from the blob store", slog.String("mailbox", c.sel.mb.Name),
		slog.Any("uids", uids))
	var b strings.Builder
	for k, u := range uids {
		if k == 10 {
			b.WriteString(",...")
			break
		}
		if k > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(u), 10))
	}
	return no("UNAVAILABLE", "Some messages could not be fetched (UID "+b.String()+": object missing)")
}

// fetchJob is one message's FETCH response, prepared.
type fetchJob struct {
	i    int // index in selected.msgs
	e    *msgEntry
	m    *mailstore.Message
	prep []*preparedItem // by item index; nil for items without body data
}

func (j *fetchJob) close() {
	for _, p := range j.prep {
		if p != nil && p.rc != nil {
			p.rc.Close()
			p.rc = nil
		}
	}
}

// prepareItems works out and opens the body data of j's items.
func (c *conn) prepareItems(j *fetchJob, items []imapwire.FetchItem) error {
	j.prep = make([]*preparedItem, len(items))
	for k, it := range items {
		switch it.Attr {
		case imapwire.FetchBodySection, imapwire.FetchBinary, imapwire.FetchBinarySize,
			imapwire.FetchRFC822, imapwire.FetchRFC822Header, imapwire.FetchRFC822Text:
			p, err := c.prepareSection(j.m, it)
			if err != nil {
				return err
			}
			j.prep[k] = p
			if err := c.openSection(j.m, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// preparedItem is a fetch item whose data size is known before the
// response line starts (so that a failure can still become a tagged NO).
type preparedItem struct {
	label  string
	null   bool          // NIL
	data   []byte        // in-memory data, when src is nil
	off, n int64         // blob range when !mem (after partial); n is the literal size
	rawOff int64         // the undecoded part, for BINARY with decoding
	rc     io.ReadCloser // opened by openSection
	rawN   int64
	mem    bool
	// binary decoding
	decode   string // transfer encoding to undo ("" for none)
	skip     int64  // decoded bytes to skip (partial)
	literal8 bool
	size     int64 // BINARY.SIZE value
}

// writeFetch writes one "* n FETCH (...)" response.
func (c *conn) writeFetch(j *fetchJob, items []imapwire.FetchItem, seenChanged bool) error {
	i, e, m, prep := j.i, j.e, j.m, j.prep
	enc := c.enc
	enc.Raw("* " + strconv.Itoa(i+1) + " FETCH (")
	wroteFlags := false
	for k, it := range items {
		if k > 0 {
			enc.SP()
		}
		switch it.Attr {
		case imapwire.FetchUID:
			enc.Raw("UID " + strconv.FormatUint(uint64(e.uid), 10))
		case imapwire.FetchFlags:
			enc.Raw("FLAGS ").Flags(c.clientFlags(e))
			wroteFlags = true
		case imapwire.FetchInternalDate:
			enc.Raw("INTERNALDATE ").DateTime(m.InternalDate)
		case imapwire.FetchRFC822Size:
			enc.Raw("RFC822.SIZE " + strconv.FormatInt(m.Size, 10))
		case imapwire.FetchEnvelope:
			enc.Raw("ENVELOPE ").Raw(m.Envelope)
		case imapwire.FetchBody:
			enc.Raw("BODY ").Raw(m.Body)
		case imapwire.FetchBodyStructure:
			enc.Raw("BODYSTRUCTURE ").Raw(m.BodyStructure)
		case imapwire.FetchModSeq:
			enc.Raw("MODSEQ (" + strconv.FormatUint(m.ModSeq, 10) + ")")
		default:
			if err := c.writeSection(m, prep[k]); err != nil {
				return err
			}
		}
	}
	if seenChanged && !wroteFlags {
		enc.Raw(" FLAGS ").Flags(c.clientFlags(e))
	}
	e.flagsDue = false
	enc.Raw(")").CRLF()
	return nil
}

// sectionLabel renders the section part of a BODY[...] label.
func sectionLabel(sec imapwire.Section) string {
	var b strings.Builder
	for i, n := range sec.Path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.Itoa(n))
	}
	if sec.Specifier != imapwire.SpecNone {
		if len(sec.Path) > 0 {
			b.WriteByte('.')
		}
		b.WriteString(string(sec.Specifier))
	}
	if sec.Specifier == imapwire.SpecHeaderFields || sec.Specifier == imapwire.SpecHeaderNotFields {
		b.WriteString(" (")
		for i, f := range sec.Fields {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(astringField(f))
		}
		b.WriteByte(')')
	}
	return b.String()
}

// astringField writes a header field name as an atom when it is one, else
// quoted.
func astringField(f string) string {
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return strconv.Quote(f)
		}
	}
	if f == "" {
		return `""`
	}
	return f
}

// messageRoot returns the root part, synthesising one from the sizes when
// the index has no structure.
func messageRoot(m *mailstore.Message) *mime.Part {
	if m.Structure != nil {
		return m.Structure
	}
	return &mime.Part{HeaderStart: 0, BodyStart: int64(len(m.Header)), End: m.Size}
}

// prepareSection works out where the data of a body item comes from.
func (c *conn) prepareSection(m *mailstore.Message, it imapwire.FetchItem) (*preparedItem, error) {
	root := messageRoot(m)
	p := &preparedItem{}
	sec := it.Section
	switch it.Attr {
	case imapwire.FetchRFC822:
		p.label = "RFC822"
		p.off, p.n = 0, m.Size
		return p, nil
	case imapwire.FetchRFC822Header:
		p.label = "RFC822.HEADER"
		p.off, p.n = 0, root.BodyStart
		return p, nil
	case imapwire.FetchRFC822Text:
		p.label = "RFC822.TEXT"
		p.off, p.n = root.BodyStart, m.Size-root.BodyStart
		return p, nil
	case imapwire.FetchBinary, imapwire.FetchBinarySize:
		return c.prepareBinary(m, root, it)
	}
	p.label = "BODY[" + sectionLabel(sec) + "]"
	if it.Partial != nil {
		p.label += "<" + strconv.FormatUint(uint64(it.Partial.Offset), 10) + ">"
	}
	// msg is the message whose header/text the specifier refers to.
	msg := root
	part := root
	if len(sec.Path) > 0 {
		part = root.Part(sec.Path)
		if part == nil {
			p.null = true
			return p, nil
		}
		msg = part.Message
	}
	switch sec.Specifier {
	case imapwire.SpecNone:
		if len(sec.Path) == 0 {
			p.off, p.n = 0, m.Size
		} else {
			p.off, p.n = part.BodyStart, part.End-part.BodyStart
		}
	case imapwire.SpecMIME:
		p.off, p.n = part.HeaderStart, part.BodyStart-part.HeaderStart
	case imapwire.SpecHeader:
		if msg == nil {
			p.null = true
			return p, nil
		}
		p.off, p.n = msg.HeaderStart, msg.BodyStart-msg.HeaderStart
	case imapwire.SpecText:
		if msg == nil {
			p.null = true
			return p, nil
		}
		p.off, p.n = msg.BodyStart, msg.End-msg.BodyStart
	case imapwire.SpecHeaderFields, imapwire.SpecHeaderNotFields:
		if msg == nil {
			p.null = true
			return p, nil
		}
		var raw []byte
		if msg == root && m.Header != nil {
			raw = m.Header
		} else {
			n := min(msg.BodyStart-msg.HeaderStart, maxPartHeader)
			rc, err := c.acct.OpenBody(c.ctx, m, msg.HeaderStart, n)
			if err != nil {
				return nil, err
			}
			raw = make([]byte, n)
			k, err := io.ReadFull(rc, raw)
			rc.Close()
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				return nil, err
			}
			raw = raw[:k]
		}
		p.mem = true
		p.data = filterHeader(raw, sec.Fields, sec.Specifier == imapwire.SpecHeaderNotFields)
		p.n = int64(len(p.data))
	}
	if p.n < 0 {
		p.n = 0
	}
	applyPartial(p, it.Partial)
	return p, nil
}

// applyPartial narrows p to <offset.count> (RFC 3501 §6.4.5).
func applyPartial(p *preparedItem, part *imapwire.Partial) {
	if part == nil {
		return
	}
	start := min(int64(part.Offset), p.n)
	n := min(int64(part.Count), p.n-start)
	if p.mem {
		p.data = p.data[start : start+n]
	} else if p.decode == "" {
		p.off += start
	} else {
		p.skip = start
	}
	p.n = n
}

// filterHeader returns the fields of raw named (not) in names, followed by
// the blank line (RFC 3501 §6.4.5 HEADER.FIELDS / HEADER.FIELDS.NOT).
func filterHeader(raw []byte, names []string, not bool) []byte {
	var out []byte
	for _, f := range mime.ParseHeader(raw) {
		in := slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, f.Name) })
		if in != not {
			out = append(out, f.Raw...)
		}
	}
	return append(out, '\r', '\n')
}

// identityEncoding reports whether a Content-Transfer-Encoding leaves
// bytes as they are; known reports whether BINARY can decode it at all.
func identityEncoding(enc string) (identity, known bool) {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "", "7bit", "8bit", "binary":
		return true, true
	case "base64", "quoted-printable":
		return false, true
	}
	return false, false
}

// prepareBinary prepares BINARY[section]<partial> and BINARY.SIZE[section]
// (RFC 3516 §4.2): the part's content with its transfer encoding undone.
// The decoded size is learned by a first decoding pass (no buffering).
func (c *conn) prepareBinary(m *mailstore.Message, root *mime.Part, it imapwire.FetchItem) (*preparedItem, error) {
	sec := it.Section
	p := &preparedItem{}
	label := "[" + sectionLabel(imapwire.Section{Path: sec.Path}) + "]"
	if it.Attr == imapwire.FetchBinarySize {
		p.label = "BINARY.SIZE" + label
	} else {
		p.label = "BINARY" + label
		if it.Partial != nil {
			p.label += "<" + strconv.FormatUint(uint64(it.Partial.Offset), 10) + ">"
		}
	}
	if len(sec.Path) == 0 {
		p.off, p.n = 0, m.Size
	} else {
		part := root.Part(sec.Path)
		if part == nil {
			p.null = true
			return p, nil
		}
		p.off, p.n = part.BodyStart, part.End-part.BodyStart
		if len(part.Parts) == 0 && part.Message == nil {
			identity, known := identityEncoding(part.Encoding)
			if !known {
				return nil, no("UNKNOWN-CTE", "Unknown Content-Transfer-Encoding "+strconv.Quote(part.Encoding))
			}
			if !identity {
				p.decode = strings.ToLower(strings.TrimSpace(part.Encoding))
			}
		}
	}
	// First pass: decoded size and whether there is a NUL (literal8).
	rc, err := c.acct.OpenBody(c.ctx, m, p.off, p.n)
	if err != nil {
		return nil, err
	}
	var r io.Reader = rc
	if p.decode != "" {
		r = mime.NewDecoder(p.decode, rc)
	}
	size, hasNUL, err := scanDecoded(r)
	rc.Close()
	if err != nil {
		return nil, err
	}
	p.size = size
	if it.Attr == imapwire.FetchBinarySize {
		return p, nil
	}
	p.literal8 = hasNUL
	p.rawOff, p.rawN = p.off, p.n
	p.n = size
	applyPartial(p, it.Partial)
	return p, nil
}

func scanDecoded(r io.Reader) (n int64, hasNUL bool, err error) {
	buf := make([]byte, 32<<10)
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if !hasNUL && bytes.IndexByte(buf[:k], 0) >= 0 {
			hasNUL = true
		}
		if err == io.EOF {
			return n, hasNUL, nil
		}
		if err != nil {
			return n, hasNUL, err
		}
	}
}

// writeSection writes a prepared body item: label, SP, literal or NIL.
// Exactly p.n bytes are written; if the blob yields fewer (damaged
// object), the rest is padded with spaces to keep the protocol in step,
// and the problem is logged.
func (c *conn) writeSection(m *mailstore.Message, p *preparedItem) error {
	enc := c.enc
	enc.Raw(p.label).SP()
	if strings.HasPrefix(p.label, "BINARY.SIZE") {
		if p.null {
			enc.Raw("NIL")
		} else {
			enc.Raw(strconv.FormatInt(p.size, 10))
		}
		return nil
	}
	if p.null {
		enc.Raw("NIL")
		return nil
	}
	enc.LiteralHeader(p.n, p.literal8)
	if p.n == 0 {
		return nil
	}
	if p.mem {
		enc.Write(bytes.ReplaceAll(p.data, []byte{0}, []byte{0x80}))
		return nil
	}
	var r io.Reader = p.rc
	if p.decode != "" {
		dr := mime.NewDecoder(p.decode, p.rc)
		if p.skip > 0 {
			io.CopyN(io.Discard, dr, p.skip)
		}
		r = dr
	}
	if !p.literal8 {
		// RFC 3501 §9 / RFC 9051 §9: a literal is CHAR8, which excludes
		// NUL. Like Dovecot, send 0x80 in its place (sizes do not change).
		r = nulReplacer{r}
	}
	written, err := io.CopyN(enc, r, p.n)
	if c.io.get() != nil {
		return errConnDone
	}
	if written < p.n {
		// The literal's size is on the wire: the only honest way out is to
		// drop the connection, so that the client keeps no damaged copy.
		c.log.Error("imap: message body shorter than indexed; closing connection", slog.Uint64("uid", uint64(m.UID)),
			slog.Int64("want", p.n), slog.Int64("got", written), slog.Any("err", err))
		c.state = stateLogout
		return errConnDone
	}
	return nil
}

// openSection opens the blob range a prepared item streams from.
func (c *conn) openSection(m *mailstore.Message, p *preparedItem) error {
	if p.null || p.mem || p.n == 0 || strings.HasPrefix(p.label, "BINARY.SIZE") {
		return nil
	}
	off, n := p.off, p.n
	if p.decode != "" {
		off, n = p.rawOff, p.rawN
	}
	rc, err := c.acct.OpenBody(c.ctx, m, off, n)
	if err != nil {
		return err
	}
	p.rc = rc
	return nil
}

// nulReplacer replaces NUL bytes with 0x80.
type nulReplacer struct{ r io.Reader }

func (n nulReplacer) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	for b := p[:k]; ; {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			break
		}
		b[i] = 0x80
		b = b[i+1:]
	}
	return k, err
}
