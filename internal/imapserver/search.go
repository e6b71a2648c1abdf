package imapserver

import (
	"io"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/encoding/htmlindex"

	"github.com/bucketmail/bucketmail/internal/imapwire"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/mime"
)

// searchBatch is how many messages are read from the index at once.
const searchBatch = 256

// cmdSearch implements SEARCH and UID SEARCH (RFC 3501 §6.4.4, RFC 9051
// §6.4.4) with ESEARCH return options (RFC 4731) and SAVE (RFC 5182).
// Header keys use the index's copy of the header; BODY and TEXT stream the
// text parts from the store, undoing transfer encodings and charsets.
func (c *conn) cmdSearch(tag string, uid bool) error {
	// Be liberal: many clients (go-imap among them) send UTF-8 search
	// strings quoted after CHARSET UTF-8; the values are UTF-8 anyway.
	c.dec.UTF8 = true
	cmd, err := c.dec.Search()
	c.dec.UTF8 = c.utf8
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	s := c.sel
	needMsg := keyNeedsMessage(cmd.Key)
	var matched []int
	for start := 0; start < len(s.msgs); start += searchBatch {
		end := min(start+searchBatch, len(s.msgs))
		var msgs map[uint32]*mailstore.Message
		if needMsg {
			uids := make([]uint32, 0, end-start)
			for i := start; i < end; i++ {
				if !s.msgs[i].expunged {
					uids = append(uids, s.msgs[i].uid)
				}
			}
			if msgs, err = c.loadMessages(uids); err != nil {
				return err
			}
		}
		for i := start; i < end; i++ {
			e := &s.msgs[i]
			if e.expunged {
				continue
			}
			sc := &searchCtx{c: c, idx: i, e: e}
			if needMsg {
				if sc.m = msgs[e.uid]; sc.m == nil {
					continue
				}
			}
			ok, err := sc.match(cmd.Key)
			if err != nil {
				return err
			}
			if ok {
				matched = append(matched, i)
			}
		}
	}
	nums := make([]uint32, len(matched))
	for k, i := range matched {
		if uid {
			nums[k] = s.msgs[i].uid
		} else {
			nums[k] = uint32(i + 1)
		}
	}
	ret := cmd.Return
	if ret == nil && c.rev2 {
		ret = &imapwire.SearchReturn{All: true}
	}
	if ret == nil {
		c.enc.Raw("* SEARCH")
		for _, n := range nums {
			c.enc.Raw(" " + strconv.FormatUint(uint64(n), 10))
		}
		c.enc.CRLF()
		return nil
	}
	if !ret.Min && !ret.Max && !ret.All && !ret.Count && !ret.Save {
		ret = &imapwire.SearchReturn{All: true}
	}
	if ret.Save {
		// RFC 5182 §2.4: with only MIN and/or MAX, only those are saved.
		var save []int
		if !ret.All && !ret.Count && (ret.Min || ret.Max) && len(matched) > 0 {
			if ret.Min {
				save = append(save, matched[0])
			}
			if ret.Max && (!ret.Min || len(matched) > 1) {
				save = append(save, matched[len(matched)-1])
			}
		} else {
			save = matched
		}
		c.saved = c.saved[:0]
		for _, i := range save {
			c.saved = append(c.saved, s.msgs[i].uid)
		}
		if !ret.Min && !ret.Max && !ret.All && !ret.Count {
			return nil // SAVE alone: no ESEARCH response
		}
	}
	c.enc.Raw("* ESEARCH (TAG ").String(tag).Raw(")")
	if uid {
		c.enc.Raw(" UID")
	}
	if ret.Min && len(nums) > 0 {
		c.enc.Raw(" MIN " + strconv.FormatUint(uint64(nums[0]), 10))
	}
	if ret.Max && len(nums) > 0 {
		c.enc.Raw(" MAX " + strconv.FormatUint(uint64(nums[len(nums)-1]), 10))
	}
	if ret.Count {
		c.enc.Raw(" COUNT " + strconv.Itoa(len(nums)))
	}
	if ret.All && len(nums) > 0 {
		c.enc.Raw(" ALL " + formatSet(nums))
	}
	c.enc.CRLF()
	return nil
}

// keyNeedsMessage reports whether evaluating k needs the index row (not
// only UID, sequence number and flags).
func keyNeedsMessage(k *imapwire.SearchKey) bool {
	switch k.Op {
	case imapwire.SearchAnd, imapwire.SearchOr, imapwire.SearchNot:
		return slices.ContainsFunc(k.Sub, keyNeedsMessage)
	case imapwire.SearchBefore, imapwire.SearchOn, imapwire.SearchSince,
		imapwire.SearchSentBefore, imapwire.SearchSentOn, imapwire.SearchSentSince,
		imapwire.SearchLarger, imapwire.SearchSmaller, imapwire.SearchHeader,
		imapwire.SearchBcc, imapwire.SearchCc, imapwire.SearchFrom, imapwire.SearchTo,
		imapwire.SearchSubject, imapwire.SearchBody, imapwire.SearchText, imapwire.SearchModSeq:
		return true
	}
	return false
}

// searchCtx evaluates a search program against one message.
type searchCtx struct {
	c      *conn
	idx    int
	e      *msgEntry
	m      *mailstore.Message
	header mime.Header
	parsed bool
}

func (sc *searchCtx) hdr() mime.Header {
	if !sc.parsed {
		sc.parsed = true
		sc.header = mime.ParseHeader(sc.m.Header)
	}
	return sc.header
}

func (sc *searchCtx) hasFlag(f string) bool {
	return slices.ContainsFunc(sc.e.flags, func(x string) bool { return strings.EqualFold(x, f) })
}

// inSet reports whether n is in a sequence set, "*" being max.
func inSet(set imapwire.SeqSet, n, max uint32) bool {
	for _, r := range set.Ranges {
		lo, hi := r.Start, r.Stop
		if lo == 0 {
			lo = max
		}
		if hi == 0 {
			hi = max
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if n >= lo && n <= hi {
			return true
		}
	}
	return false
}

// dayNumber turns a time into a comparable calendar day in its own zone
// (RFC 3501 §6.4.4: dates disregard time and timezone).
func dayNumber(t time.Time) int {
	y, m, d := t.Date()
	return y*10000 + int(m)*100 + d
}

func (sc *searchCtx) match(k *imapwire.SearchKey) (bool, error) {
	s := sc.c.sel
	switch k.Op {
	case imapwire.SearchAll:
		return true, nil
	case imapwire.SearchAnd:
		for _, sub := range k.Sub {
			if ok, err := sc.match(sub); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
	case imapwire.SearchOr:
		for _, sub := range k.Sub {
			if ok, err := sc.match(sub); ok || err != nil {
				return ok, err
			}
		}
		return false, nil
	case imapwire.SearchNot:
		ok, err := sc.match(k.Sub[0])
		return !ok, err
	case imapwire.SearchSeqSet:
		if k.Set.Saved {
			return slices.Contains(sc.c.saved, sc.e.uid), nil
		}
		return inSet(k.Set, uint32(sc.idx+1), uint32(len(s.msgs))), nil
	case imapwire.SearchUID:
		if k.Set.Saved {
			return slices.Contains(sc.c.saved, sc.e.uid), nil
		}
		return inSet(k.Set, sc.e.uid, s.maxUID()), nil
	case imapwire.SearchAnswered:
		return sc.hasFlag(mailstore.FlagAnswered), nil
	case imapwire.SearchDeleted:
		return sc.hasFlag(mailstore.FlagDeleted), nil
	case imapwire.SearchDraft:
		return sc.hasFlag(mailstore.FlagDraft), nil
	case imapwire.SearchFlagged:
		return sc.hasFlag(mailstore.FlagFlagged), nil
	case imapwire.SearchSeen:
		return sc.hasFlag(mailstore.FlagSeen), nil
	case imapwire.SearchUnanswered:
		return !sc.hasFlag(mailstore.FlagAnswered), nil
	case imapwire.SearchUndeleted:
		return !sc.hasFlag(mailstore.FlagDeleted), nil
	case imapwire.SearchUndraft:
		return !sc.hasFlag(mailstore.FlagDraft), nil
	case imapwire.SearchUnflagged:
		return !sc.hasFlag(mailstore.FlagFlagged), nil
	case imapwire.SearchUnseen:
		return !sc.hasFlag(mailstore.FlagSeen), nil
	case imapwire.SearchRecent:
		return sc.e.recent, nil
	case imapwire.SearchNew:
		return sc.e.recent && !sc.hasFlag(mailstore.FlagSeen), nil
	case imapwire.SearchOld:
		return !sc.e.recent, nil
	case imapwire.SearchKeyword:
		return sc.hasFlag(k.Value), nil
	case imapwire.SearchUnkeyword:
		return !sc.hasFlag(k.Value), nil
	case imapwire.SearchBefore:
		return dayNumber(sc.m.InternalDate) < dayNumber(k.Date), nil
	case imapwire.SearchOn:
		return dayNumber(sc.m.InternalDate) == dayNumber(k.Date), nil
	case imapwire.SearchSince:
		return dayNumber(sc.m.InternalDate) >= dayNumber(k.Date), nil
	case imapwire.SearchSentBefore, imapwire.SearchSentOn, imapwire.SearchSentSince:
		v, ok := sc.hdr().Get("Date")
		if !ok {
			return false, nil
		}
		t, err := mail.ParseDate(strings.TrimSpace(v))
		if err != nil {
			return false, nil
		}
		d, want := dayNumber(t), dayNumber(k.Date)
		switch k.Op {
		case imapwire.SearchSentBefore:
			return d < want, nil
		case imapwire.SearchSentOn:
			return d == want, nil
		}
		return d >= want, nil
	case imapwire.SearchLarger:
		return sc.m.Size > k.Number, nil
	case imapwire.SearchSmaller:
		return sc.m.Size < k.Number, nil
	case imapwire.SearchModSeq:
		return int64(sc.m.ModSeq) >= k.Number, nil
	case imapwire.SearchHeader:
		return sc.headerContains(k.Field, k.Value), nil
	case imapwire.SearchBcc, imapwire.SearchCc, imapwire.SearchFrom, imapwire.SearchTo, imapwire.SearchSubject:
		return sc.headerContains(string(k.Op), k.Value), nil
	case imapwire.SearchBody:
		return sc.bodyContains(k.Value)
	case imapwire.SearchText:
		if sc.headerText(k.Value) {
			return true, nil
		}
		return sc.bodyContains(k.Value)
	}
	return false, nil
}

// headerContains: some field named name whose decoded value contains
// value, case-insensitively; an empty value matches any such field.
func (sc *searchCtx) headerContains(name, value string) bool {
	needle := strings.ToLower(value)
	for _, f := range sc.hdr() {
		if !strings.EqualFold(f.Name, name) {
			continue
		}
		if needle == "" || strings.Contains(strings.ToLower(mime.DecodeHeaderValue(f.Value)), needle) {
			return true
		}
	}
	return false
}

// headerText: any header field (name or decoded value) contains value.
func (sc *searchCtx) headerText(value string) bool {
	needle := strings.ToLower(value)
	for _, f := range sc.hdr() {
		if strings.Contains(strings.ToLower(f.Name+": "+mime.DecodeHeaderValue(f.Value)), needle) {
			return true
		}
	}
	return false
}

// bodyContains streams the text parts of the message (RFC 3501 §6.4.4
// BODY), decoded, looking for value case-insensitively.
func (sc *searchCtx) bodyContains(value string) (bool, error) {
	needle := strings.ToLower(value)
	if needle == "" {
		return true, nil
	}
	root := messageRoot(sc.m)
	var leaves []*mime.Part
	var walk func(p *mime.Part)
	walk = func(p *mime.Part) {
		switch {
		case len(p.Parts) > 0:
			for _, ch := range p.Parts {
				walk(ch)
			}
		case p.Message != nil:
			walk(p.Message)
		case p.Type == "" || strings.EqualFold(p.Type, "text"):
			leaves = append(leaves, p)
		}
	}
	walk(root)
	for _, p := range leaves {
		ok, err := sc.partContains(p, needle)
		if ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

func (sc *searchCtx) partContains(p *mime.Part, needle string) (bool, error) {
	c := sc.c
	rc, err := c.acct.OpenBody(c.ctx, sc.m, p.BodyStart, p.End-p.BodyStart)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	var r io.Reader = rc
	if identity, known := identityEncoding(p.Encoding); known && !identity {
		r = mime.NewDecoder(p.Encoding, r)
	}
	if cs := paramValue(p.Params, "charset"); cs != "" && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
		if e, err := htmlindex.Get(cs); err == nil {
			r = e.NewDecoder().Reader(r)
		}
	}
	return streamContains(r, needle)
}

func paramValue(params []mime.Param, name string) string {
	for _, p := range params {
		if strings.EqualFold(p.Name, name) {
			return p.Value
		}
	}
	return ""
}

// streamContains reports whether the lower-cased text of r contains
// needle (already lower-case), reading in chunks and keeping an overlap so
// that a match across chunk boundaries is found.
func streamContains(r io.Reader, needle string) (bool, error) {
	buf := make([]byte, 32<<10)
	var tail string
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunk := tail + strings.ToLower(string(buf[:n]))
			if strings.Contains(chunk, needle) {
				return true, nil
			}
			if keep := len(needle) - 1; len(chunk) > keep {
				tail = chunk[len(chunk)-keep:]
			} else {
				tail = chunk
			}
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			// A damaged body or charset error ends the search of this
			// part, not the command.
			return false, nil
		}
	}
}
