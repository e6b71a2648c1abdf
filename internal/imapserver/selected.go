package imapserver

import (
	"errors"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bucketmail/bucketmail/internal/imapwire"
	"github.com/bucketmail/bucketmail/internal/mailstore"
)

// msgEntry is one message as the client knows it: its sequence number is
// its index in selected.msgs plus one.
type msgEntry struct {
	uid      uint32
	flags    []string // as last reported to the client (sorted, no \Recent)
	recent   bool
	expunged bool // expunged in the store; EXPUNGE not yet sent
	flagsDue bool // flags changed; FETCH FLAGS not yet sent
}

// selected is the state of the selected mailbox (RFC 3501 §3.3).
type selected struct {
	mb       mailstore.Mailbox // ID, Name, UIDValidity at SELECT time
	readOnly bool
	msgs     []msgEntry
	modseq   uint64 // changes up to here are known
	keywords []string

	exists      int // EXISTS as the client knows it
	recentCount int
	withheld    int // entries with expunged set
	key         recentKey
}

// find returns the index of uid, or -1.
func (s *selected) find(uid uint32) int {
	i := sort.Search(len(s.msgs), func(i int) bool { return s.msgs[i].uid >= uid })
	if i < len(s.msgs) && s.msgs[i].uid == uid {
		return i
	}
	return -1
}

func (s *selected) maxUID() uint32 {
	if len(s.msgs) == 0 {
		return 0
	}
	return s.msgs[len(s.msgs)-1].uid
}

// resolve returns the indices (ascending, unique) of the messages named by
// a sequence set, of sequence numbers or (uid) of UIDs. Message numbers
// beyond EXISTS are a BAD; UIDs that do not exist are ignored (RFC 3501
// §6.4.8). saved is the SEARCHRES result (RFC 5182), as UIDs.
func (s *selected) resolve(set imapwire.SeqSet, uid bool, saved []uint32) ([]int, error) {
	var idx []int
	if set.Saved {
		for _, u := range saved {
			if i := s.find(u); i >= 0 {
				idx = append(idx, i)
			}
		}
		return idx, nil
	}
	n := len(s.msgs)
	for _, r := range set.Ranges {
		if uid {
			if n == 0 {
				continue
			}
			lo, hi := r.Start, r.Stop
			if lo == 0 {
				lo = s.maxUID()
			}
			if hi == 0 {
				hi = s.maxUID()
			}
			if lo > hi {
				lo, hi = hi, lo
			}
			i := sort.Search(n, func(i int) bool { return s.msgs[i].uid >= lo })
			for ; i < n && s.msgs[i].uid <= hi; i++ {
				idx = append(idx, i)
			}
			continue
		}
		lo, hi := r.Start, r.Stop
		if lo == 0 {
			lo = uint32(n)
		}
		if hi == 0 {
			hi = uint32(n)
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if lo == 0 { // "*" on an empty mailbox
			continue
		}
		if int64(hi) > int64(n) {
			return nil, bad("Invalid message sequence number")
		}
		for i := lo; i <= hi; i++ {
			idx = append(idx, int(i-1))
		}
	}
	slices.Sort(idx)
	return slices.Compact(idx), nil
}

// uidsOf returns the UIDs of entries at idx, skipping withheld expunged ones.
func (s *selected) uidsOf(idx []int) []uint32 {
	uids := make([]uint32, 0, len(idx))
	for _, i := range idx {
		if !s.msgs[i].expunged {
			uids = append(uids, s.msgs[i].uid)
		}
	}
	return uids
}

func (c *conn) cmdSelect(tag string) error  { return c.selectMailbox(false) }
func (c *conn) cmdExamine(tag string) error { return c.selectMailbox(true) }

// deselect leaves the selected state.
func (c *conn) deselect() {
	if c.sel != nil {
		c.sel = nil
		c.saved = nil
		c.log = c.baseLog.With("user", c.user.Account)
	}
	if c.state == stateSelected {
		c.state = stateAuth
	}
}

// selectMailbox implements SELECT and EXAMINE (RFC 3501 §6.3.1-2, RFC 9051
// §6.3.2-3).
func (c *conn) selectMailbox(readOnly bool) error {
	name, err := c.spMailbox()
	if err != nil {
		return err
	}
	if !c.dec.AtEOL() { // select-params (CONDSTORE, QRESYNC) are not supported
		return &imapwire.SyntaxError{Msg: "unsupported SELECT parameters"}
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if c.sel != nil {
		c.deselect()
		c.untaggedStatus(okCode("CLOSED", "Previous mailbox closed"))
	}
	mb, err := c.acct.Mailbox(c.ctx, name)
	if err != nil {
		return err
	}
	states, err := c.acct.States(c.ctx, mb.ID)
	if err != nil {
		return err
	}
	s := &selected{mb: mb, readOnly: readOnly, modseq: mb.HighestModSeq,
		key: recentKey{account: c.acct.Name(), mailboxID: mb.ID}}
	s.msgs = make([]msgEntry, len(states))
	kw := map[string]bool{}
	unseen := 0
	for i, st := range states {
		s.msgs[i] = msgEntry{uid: st.UID, flags: st.Flags}
		seen := false
		for _, f := range st.Flags {
			if !strings.HasPrefix(f, `\`) {
				kw[f] = true
			}
			if f == mailstore.FlagSeen {
				seen = true
			}
		}
		if !seen && unseen == 0 {
			unseen = i + 1
		}
	}
	prev := c.srv.recent.claim(s.key, s.maxUID(), readOnly)
	for i := range s.msgs {
		if s.msgs[i].uid > prev {
			s.msgs[i].recent = true
			s.recentCount++
		}
	}
	for k := range kw {
		s.keywords = append(s.keywords, k)
	}
	slices.Sort(s.keywords)
	s.exists = len(s.msgs)
	c.sel = s
	c.state = stateSelected
	c.lastSync = time.Now() // a commit after States publishes a wake-up
	c.log = c.baseLog.With(slog.String("user", c.user.Account), slog.String("mailbox", mb.Name))

	c.writeFlagsResponses()
	c.enc.Raw("* " + strconv.Itoa(s.exists) + " EXISTS").CRLF()
	if !c.rev2 {
		c.enc.Raw("* " + strconv.Itoa(s.recentCount) + " RECENT").CRLF()
		if unseen > 0 {
			c.untaggedStatus(okCode("UNSEEN "+strconv.Itoa(unseen), "First unseen"))
		}
	}
	c.untaggedStatus(okCode("UIDVALIDITY "+strconv.FormatUint(uint64(mb.UIDValidity), 10), "UIDs valid"))
	c.untaggedStatus(okCode("UIDNEXT "+strconv.FormatUint(uint64(mb.UIDNext), 10), "Predicted next UID"))
	if c.rev2 {
		c.enc.Raw("* LIST () \"/\" ").Mailbox(mb.Name).CRLF()
	}
	if readOnly {
		return okCode("READ-ONLY", "EXAMINE completed")
	}
	return okCode("READ-WRITE", "SELECT completed")
}

var systemFlags = []string{`\Answered`, `\Flagged`, `\Deleted`, `\Seen`, `\Draft`}

// writeFlagsResponses writes FLAGS and the PERMANENTFLAGS response code.
func (c *conn) writeFlagsResponses() {
	s := c.sel
	flags := append(slices.Clone(systemFlags), s.keywords...)
	c.enc.Raw("* FLAGS ").Flags(flags).CRLF()
	if s.readOnly {
		c.untaggedStatus(okCode("PERMANENTFLAGS ()", "No permanent flags permitted"))
		return
	}
	c.untaggedStatus(okCode("PERMANENTFLAGS ("+strings.Join(append(flags, `\*`), " ")+")", "Flags permitted"))
}

// noteKeywords records keywords seen in flags; it reports whether a new
// one appeared (the client is then sent new FLAGS, RFC 3501 §7.2.6).
func (s *selected) noteKeywords(flags []string) bool {
	added := false
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			continue
		}
		if i, ok := slices.BinarySearch(s.keywords, f); !ok {
			s.keywords = slices.Insert(s.keywords, i, f)
			added = true
		}
	}
	return added
}

// sync learns of changes since the session's MODSEQ and reports them:
// new messages (EXISTS, RECENT), flag changes (FETCH FLAGS) and, when
// allowExpunge, expunges (EXPUNGE). RFC 3501 §7.4.1 / RFC 9051 §7.5.1: an
// EXPUNGE is never sent while FETCH, STORE or SEARCH is in progress; such
// expunged messages keep their sequence numbers until a later command.
// A non-nil error means the connection must end.
func (c *conn) sync(allowExpunge bool) error {
	s := c.sel
	if s == nil {
		return nil
	}
	if !c.changesDue() {
		c.flushUpdates(allowExpunge, false)
		return nil
	}
	ch, err := c.acct.Changes(c.ctx, s.mb.ID, s.mb.UIDValidity, s.modseq)
	if err != nil {
		c.syncDue = true
		if errors.Is(err, mailstore.ErrUIDValidity) || errors.Is(err, mailstore.ErrNoMailbox) {
			c.writeBye("Selected mailbox was deleted or recreated")
			c.state = stateLogout
			return errConnDone
		}
		c.srv.syncFail.failed(c.log, err, time.Now())
		return nil // try again at the next command
	}
	c.srv.syncFail.ok(c.log, time.Now())
	newKW := false
	var newUIDs []uint32
	for _, u := range ch.Updated {
		if i := s.find(u.UID); i >= 0 {
			e := &s.msgs[i]
			if !e.expunged && !slices.Equal(e.flags, u.Flags) {
				e.flags = u.Flags
				e.flagsDue = true
				newKW = s.noteKeywords(u.Flags) || newKW
			}
		} else if u.UID > s.maxUID() {
			s.msgs = append(s.msgs, msgEntry{uid: u.UID, flags: u.Flags})
			newUIDs = append(newUIDs, u.UID)
			newKW = s.noteKeywords(u.Flags) || newKW
		}
	}
	for _, uid := range ch.Expunged {
		if i := s.find(uid); i >= 0 && !s.msgs[i].expunged {
			s.msgs[i].expunged = true
			s.withheld++
		}
	}
	if ch.HighestModSeq > s.modseq {
		s.modseq = ch.HighestModSeq
	}
	if len(newUIDs) > 0 {
		prev := c.srv.recent.claim(s.key, newUIDs[len(newUIDs)-1], s.readOnly)
		for i := len(s.msgs) - len(newUIDs); i < len(s.msgs); i++ {
			if s.msgs[i].uid > prev {
				s.msgs[i].recent = true
				s.recentCount++
			}
		}
	}
	c.flushUpdates(allowExpunge, newKW)
	return nil
}

// changesDue reports whether sync must ask the store for changes: a
// Watch wake-up arrived since the last sync, the session wrote itself
// (syncDue), there is no watch, or idleRecheck has passed (a safety net
// for writers outside this process). It consumes the wake-up before the
// caller reads the changes, so a commit after that read publishes a new
// one: no change is missed, at worst one is read twice.
func (c *conn) changesDue() bool {
	due := c.syncDue || c.watch == nil || time.Since(c.lastSync) >= idleRecheck
	select {
	case <-c.watch:
		due = true
	default:
	}
	if due {
		c.syncDue = false
		c.lastSync = time.Now()
	}
	return due
}

// flushUpdates writes what sync (or the session's own commands) recorded.
func (c *conn) flushUpdates(allowExpunge, newKW bool) {
	s := c.sel
	if allowExpunge && s.withheld > 0 {
		kept := s.msgs[:0]
		removed := 0
		for i, e := range s.msgs {
			if e.expunged {
				c.enc.Raw("* " + strconv.Itoa(i+1-removed) + " EXPUNGE").CRLF()
				removed++
				if e.recent {
					s.recentCount--
				}
				continue
			}
			kept = append(kept, e)
		}
		clear(s.msgs[len(kept):])
		s.msgs = kept
		s.exists -= removed
		s.withheld = 0
	}
	if newKW {
		c.writeFlagsResponses()
	}
	if len(s.msgs) > s.exists {
		s.exists = len(s.msgs)
		c.enc.Raw("* " + strconv.Itoa(s.exists) + " EXISTS").CRLF()
		if !c.rev2 {
			c.enc.Raw("* " + strconv.Itoa(s.recentCount) + " RECENT").CRLF()
		}
	}
	for i := range s.msgs {
		e := &s.msgs[i]
		if !e.flagsDue {
			continue
		}
		e.flagsDue = false
		if e.expunged {
			continue
		}
		c.enc.Raw("* " + strconv.Itoa(i+1) + " FETCH (UID " + strconv.FormatUint(uint64(e.uid), 10) + " FLAGS ")
		c.enc.Flags(c.clientFlags(e)).Raw(")").CRLF()
	}
}

// clientFlags returns the flags of e as the client sees them (with
// \Recent for IMAP4rev1 sessions).
func (c *conn) clientFlags(e *msgEntry) []string {
	if e.recent && !c.rev2 {
		return append(slices.Clone(e.flags), mailstore.FlagRecent)
	}
	return e.flags
}

// cmdClose implements CLOSE (RFC 3501 §6.4.2): silent expunge unless
// read-only, then the authenticated state.
func (c *conn) cmdClose(tag string) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if !c.sel.readOnly {
		if _, err := c.acct.Expunge(c.ctx, c.sel.mb.ID, nil); err != nil {
			return err
		}
	}
	c.deselect()
	return nil
}

// cmdUnselect implements UNSELECT (RFC 3691).
func (c *conn) cmdUnselect(tag string) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	c.deselect()
	return nil
}

// cmdExpunge implements EXPUNGE (RFC 3501 §6.4.3).
func (c *conn) cmdExpunge(tag string) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	return c.expunge(nil)
}

// cmdUIDExpunge implements UID EXPUNGE (RFC 4315 §2.1).
func (c *conn) cmdUIDExpunge(tag string) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	set, err := c.dec.SeqSet()
	if err != nil {
		return err
	}
	idx, err := c.endSetCommand(set, true)
	if err != nil {
		return err
	}
	uids := c.sel.uidsOf(idx)
	if len(uids) == 0 {
		return nil
	}
	return c.expunge(uids)
}

func (c *conn) expunge(uids []uint32) error {
	if c.sel.readOnly {
		return no("READ-ONLY", "Mailbox is read-only")
	}
	removed, err := c.acct.Expunge(c.ctx, c.sel.mb.ID, uids)
	if err != nil {
		return err
	}
	c.markExpunged(removed)
	return nil
}

// markExpunged records the session's own expunges; sync reports them.
func (c *conn) markExpunged(uids []uint32) {
	s := c.sel
	for _, u := range uids {
		if i := s.find(u); i >= 0 && !s.msgs[i].expunged {
			s.msgs[i].expunged = true
			s.withheld++
		}
	}
}

// cmdStore implements STORE and UID STORE (RFC 3501 §6.4.6).
func (c *conn) cmdStore(tag string, uid bool) error {
	set, err := c.spSeqSetSP()
	if err != nil {
		return err
	}
	sc, err := c.dec.Store()
	if err != nil {
		return err
	}
	s := c.sel
	idx, err := c.endSetCommand(set, uid)
	if err != nil {
		return err
	}
	if s.readOnly {
		return no("READ-ONLY", "Mailbox is read-only")
	}
	flags := make([]string, 0, len(sc.Flags))
	for _, f := range sc.Flags {
		if !strings.EqualFold(f, mailstore.FlagRecent) {
			flags = append(flags, f)
		}
	}
	op := mailstore.Replace
	switch sc.Op {
	case imapwire.StoreAdd:
		op = mailstore.Add
	case imapwire.StoreRemove:
		op = mailstore.Remove
	}
	uids := s.uidsOf(idx)
	var failed []uint32
	if len(uids) > 0 {
		var changed []mailstore.MessageState
		changed, failed, err = c.acct.StoreFlags(c.ctx, s.mb.ID, uids, op, flags, sc.UnchangedSince)
		if err != nil {
			return err
		}
		newKW := false
		for _, st := range changed {
			if i := s.find(st.UID); i >= 0 {
				s.msgs[i].flags = st.Flags
				s.msgs[i].flagsDue = false // answered below, or not wanted (.SILENT)
				newKW = s.noteKeywords(st.Flags) || newKW
			}
		}
		if newKW {
			c.writeFlagsResponses()
		}
	}
	if !sc.Silent {
		for _, i := range idx {
			e := &s.msgs[i]
			if e.expunged || slices.Contains(failed, e.uid) {
				continue
			}
			e.flagsDue = false
			c.enc.Raw("* " + strconv.Itoa(i+1) + " FETCH (")
			if uid {
				c.enc.Raw("UID " + strconv.FormatUint(uint64(e.uid), 10) + " ")
			}
			c.enc.Raw("FLAGS ").Flags(c.clientFlags(e)).Raw(")").CRLF()
		}
	}
	if len(failed) > 0 {
		var nums []uint32
		if uid {
			nums = failed
		} else {
			for _, u := range failed {
				if i := s.find(u); i >= 0 {
					nums = append(nums, uint32(i+1))
				}
			}
		}
		return okCode("MODIFIED "+formatSet(nums), "Conditional STORE failed for some messages")
	}
	return nil
}

// cmdCopy implements COPY, MOVE and their UID forms (RFC 3501 §6.4.7,
// RFC 6851, RFC 4315 COPYUID).
func (c *conn) cmdCopy(tag string, uid, move bool) error {
	set, err := c.spSeqSetSP()
	if err != nil {
		return err
	}
	dest, err := c.readMailbox()
	if err != nil {
		return err
	}
	s := c.sel
	idx, err := c.endSetCommand(set, uid)
	if err != nil {
		return err
	}
	if move && s.readOnly {
		return no("READ-ONLY", "Mailbox is read-only")
	}
	uids := s.uidsOf(idx)
	if len(uids) == 0 {
		if len(idx) > 0 {
			return no("EXPUNGEISSUED", "Messages were expunged")
		}
		if _, err := c.acct.Mailbox(c.ctx, dest); err != nil {
			if errors.Is(err, mailstore.ErrNoMailbox) {
				return no("TRYCREATE", "Mailbox does not exist")
			}
			return err
		}
		return nil
	}
	var res mailstore.CopyResult
	if move {
		res, err = c.acct.Move(c.ctx, s.mb.ID, uids, dest)
	} else {
		res, err = c.acct.Copy(c.ctx, s.mb.ID, uids, dest)
	}
	if err != nil {
		if errors.Is(err, mailstore.ErrNoMailbox) {
			return no("TRYCREATE", "Mailbox does not exist")
		}
		return err
	}
	code := ""
	if len(res.SrcUIDs) > 0 {
		code = "COPYUID " + strconv.FormatUint(uint64(res.UIDValidity), 10) + " " +
			formatList(res.SrcUIDs) + " " + formatList(res.DstUIDs)
	}
	if move {
		if code != "" {
			c.untaggedStatus(okCode(code, "Moved"))
		}
		c.markExpunged(res.SrcUIDs)
		return okText("MOVE completed")
	}
	if code == "" {
		return nil
	}
	return okCode(code, "COPY completed")
}

// formatSet formats sorted numbers as a compact sequence set ("1:3,7").
func formatSet(nums []uint32) string {
	nums = slices.Clone(nums)
	slices.Sort(nums)
	return formatList(slices.Compact(nums))
}

// formatList formats numbers in the given order, joining consecutive
// ascending runs ("4:6,2"), as COPYUID needs (RFC 4315 §3: the order of the
// source and destination sets must correspond).
func formatList(nums []uint32) string {
	var b strings.Builder
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(nums[i]), 10))
		if j > i {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(nums[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}
