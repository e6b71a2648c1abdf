package imapserver

import (
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bucketmail/bucketmail/internal/imapwire"
	"github.com/bucketmail/bucketmail/internal/mailstore"
)

// cmdCreate implements CREATE (RFC 3501 §6.3.3) with the optional USE
// parameter of RFC 6154 §3.
func (c *conn) cmdCreate(tag string) error {
	name, err := c.spMailbox()
	if err != nil {
		return err
	}
	use := ""
	if !c.dec.AtEOL() {
		if err := c.dec.SP(); err != nil {
			return err
		}
		err := c.dec.List(func() error {
			a, err := c.dec.Atom()
			if err != nil {
				return err
			}
			if !strings.EqualFold(a, "USE") {
				return &imapwire.SyntaxError{Msg: "unknown CREATE parameter"}
			}
			if err := c.dec.SP(); err != nil {
				return err
			}
			flags, err := c.dec.FlagList()
			if err != nil {
				return err
			}
			if len(flags) > 1 {
				return &imapwire.SyntaxError{Msg: "only one special use per mailbox"}
			}
			if len(flags) == 1 {
				use = flags[0]
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	name, err = newMailboxName(name)
	if err != nil {
		return err
	}
	if use != "" {
		ok := false
		for _, u := range []string{mailstore.UseDrafts, mailstore.UseSent, mailstore.UseTrash, mailstore.UseJunk, mailstore.UseArchive, mailstore.UseAll, mailstore.UseFlagged} {
			if strings.EqualFold(u, use) {
				use, ok = u, true
			}
		}
		if !ok {
			return no("USEATTR", "Unsupported special-use attribute")
		}
	}
	_, err = c.acct.CreateMailbox(c.ctx, name, use)
	return err
}

// newMailboxName checks the name a mailbox is created or renamed to and
// returns it without a trailing delimiter (RFC 3501 §6.3.3).
func newMailboxName(name string) (string, error) {
	name = strings.TrimSuffix(name, "/")
	if name == "INBOX" {
		return "", no("ALREADYEXISTS", "INBOX always exists")
	}
	if strings.ContainsAny(name, "*%") {
		return "", no("CANNOT", "Mailbox names cannot contain * or %")
	}
	return name, nil
}

// cmdDelete implements DELETE (RFC 3501 §6.3.4). Deleting the selected
// mailbox first leaves it.
func (c *conn) cmdDelete(tag string) error {
	name, err := c.mailboxLine()
	if err != nil {
		return err
	}
	if name == "INBOX" {
		return no("CANNOT", "INBOX cannot be deleted")
	}
	if c.sel != nil && c.sel.mb.Name == name {
		c.deselect()
		c.untaggedStatus(okCode("CLOSED", "Mailbox closed"))
	}
	return c.acct.DeleteMailbox(c.ctx, name)
}

// cmdRename implements RENAME (RFC 3501 §6.3.5), INBOX rule included (the
// store moves INBOX's messages and leaves it empty).
func (c *conn) cmdRename(tag string) error {
	from, err := c.spMailbox()
	if err != nil {
		return err
	}
	to, err := c.spMailbox()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if to, err = newMailboxName(to); err != nil {
		return err
	}
	if from == to {
		return no("ALREADYEXISTS", "Mailbox already exists")
	}
	if err := c.acct.RenameMailbox(c.ctx, from, to); err != nil {
		return err
	}
	if s := c.sel; s != nil && from != "INBOX" {
		if s.mb.Name == from {
			s.mb.Name = to
		} else if strings.HasPrefix(s.mb.Name, from+"/") {
			s.mb.Name = to + s.mb.Name[len(from):]
		}
	}
	return nil
}

func (c *conn) cmdSubscribe(tag string) error   { return c.subscribe(true) }
func (c *conn) cmdUnsubscribe(tag string) error { return c.subscribe(false) }

// subscribe implements SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6-7).
func (c *conn) subscribe(on bool) error {
	name, err := c.mailboxLine()
	if err != nil {
		return err
	}
	return c.acct.SetSubscribed(c.ctx, strings.TrimSuffix(name, "/"), on)
}

// cmdNamespace implements NAMESPACE (RFC 2342): one personal namespace.
func (c *conn) cmdNamespace(tag string) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	c.enc.Raw(`* NAMESPACE (("" "/")) NIL NIL`).CRLF()
	return nil
}

// listOpts are the LIST-EXTENDED options (RFC 5258, part of RFC 9051).
type listOpts struct {
	selSubscribed  bool
	retSubscribed  bool
	retChildren    bool
	retSpecialUse  bool
	retStatus      []imapwire.StatusItem
	recursiveMatch bool
	// extended: the command used LIST-EXTENDED syntax (RFC 5258), whose
	// answers name missing levels \NonExistent rather than \Noselect.
	extended bool
}

// cmdList implements LIST (RFC 3501 §6.3.8, RFC 9051 §6.3.9 with the
// LIST-EXTENDED syntax, RFC 6154 special-use, RFC 3348 CHILDREN).
func (c *conn) cmdList(tag string) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	var o listOpts
	if b, err := c.dec.PeekByte(); err != nil {
		return err
	} else if b == '(' {
		o.extended = true
		err := c.dec.List(func() error {
			a, err := c.dec.Atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(a) {
			case "SUBSCRIBED":
				o.selSubscribed = true
				o.retSubscribed = true
			case "RECURSIVEMATCH":
				o.recursiveMatch = true
			case "REMOTE":
			case "SPECIAL-USE":
				o.retSpecialUse = true
			default:
				return &imapwire.SyntaxError{Msg: "unknown LIST selection option " + a}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := c.dec.SP(); err != nil {
			return err
		}
	}
	refWire, err := c.dec.Mailbox()
	if err != nil {
		return err
	}
	if err := c.dec.SP(); err != nil {
		return err
	}
	var patterns []string
	if b, err := c.dec.PeekByte(); err != nil {
		return err
	} else if b == '(' {
		o.extended = true
		err = c.dec.List(func() error {
			p, err := c.dec.ListMailbox()
			patterns = append(patterns, p)
			return err
		})
	} else {
		var p string
		p, err = c.dec.ListMailbox()
		patterns = append(patterns, p)
	}
	if err != nil {
		return err
	}
	if !c.dec.AtEOL() {
		o.extended = true
		if err := c.dec.SP(); err != nil {
			return err
		}
		a, err := c.dec.Atom()
		if err != nil {
			return err
		}
		if !strings.EqualFold(a, "RETURN") {
			return &imapwire.SyntaxError{Msg: "expected RETURN"}
		}
		if err := c.dec.SP(); err != nil {
			return err
		}
		err = c.dec.List(func() error {
			a, err := c.dec.Atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(a) {
			case "SUBSCRIBED":
				o.retSubscribed = true
			case "CHILDREN":
				o.retChildren = true
			case "SPECIAL-USE":
				o.retSpecialUse = true
			case "STATUS":
				if err := c.dec.SP(); err != nil {
					return err
				}
				items, err := c.readStatusItems()
				if err != nil {
					return err
				}
				o.retStatus = items
			default:
				return &imapwire.SyntaxError{Msg: "unknown LIST return option " + a}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if o.recursiveMatch && !o.selSubscribed {
		// RFC 5258 §3: RECURSIVEMATCH needs another selection option.
		return bad("RECURSIVEMATCH needs another selection option")
	}
	ref, err := c.decodePattern(refWire)
	if err != nil {
		return err
	}
	for i, p := range patterns {
		if patterns[i], err = c.decodePattern(p); err != nil {
			return err
		}
	}
	if len(patterns) == 1 && patterns[0] == "" {
		// RFC 3501 §6.3.8: the hierarchy delimiter and root name.
		c.enc.Raw(`* LIST (\Noselect) "/" ""`).CRLF()
		return nil
	}
	return c.list(ref, patterns, o, false)
}

// decodePattern decodes a reference or pattern like a mailbox name,
// leaving wildcards alone.
func (c *conn) decodePattern(p string) (string, error) {
	if c.utf8 {
		return p, nil
	}
	n, err := imapwire.DecodeMUTF7(p)
	if err != nil {
		return "", bad("Invalid modified UTF-7 in pattern")
	}
	return n, nil
}

// listEntry is a name LIST may return.
type listEntry struct {
	name       string
	exists     bool
	specialUse string
	subscribed bool
	children   bool
}

// list writes LIST (or LSUB) responses for names matching any pattern.
func (c *conn) list(ref string, patterns []string, o listOpts, lsub bool) error {
	mbs, err := c.acct.Mailboxes(c.ctx)
	if err != nil {
		return err
	}
	subs, err := c.acct.Subscriptions(c.ctx)
	if err != nil {
		return err
	}
	entries := map[string]*listEntry{}
	get := func(name string) *listEntry {
		e := entries[name]
		if e == nil {
			e = &listEntry{name: name}
			entries[name] = e
		}
		return e
	}
	for _, mb := range mbs {
		e := get(mb.Name)
		e.exists = true
		e.specialUse = mb.SpecialUse
	}
	for _, s := range subs {
		get(s).subscribed = true
	}
	// Parents of every name: \HasChildren, and the non-existent levels a
	// "%" may need (RFC 3501 §6.3.8).
	for _, name := range slices.Collect(mapKeys(entries)) {
		e := entries[name]
		for i := strings.LastIndexByte(name, '/'); i > 0; i = strings.LastIndexByte(name[:i], '/') {
			p := get(name[:i])
			if e.exists {
				p.children = true
			}
		}
	}
	names := slices.Sorted(mapKeys(entries))
	// INBOX first, like most servers.
	if i := slices.Index(names, "INBOX"); i > 0 {
		names = slices.Insert(slices.Delete(names, i, i+1), 0, "INBOX")
	}
	var full []string
	for _, p := range patterns {
		if ref != "" && !strings.HasPrefix(p, "/") {
			p = ref + p
		}
		if len(p) >= 5 && strings.EqualFold(p[:5], "INBOX") && (len(p) == 5 || p[5] == '/') {
			p = "INBOX" + p[5:]
		}
		full = append(full, p)
	}
	for _, name := range names {
		e := entries[name]
		matched := false
		for _, p := range full {
			if matchPattern(p, name) {
				matched = true
				break
			}
		}
		if !matched {
			continue
		}
		var attrs []string
		childInfo := false
		if lsub {
			if !e.subscribed {
				if !strings.HasSuffix(full[0], "%") || !hasSubscribedChild(entries, name) {
					continue
				}
				attrs = append(attrs, `\Noselect`)
			}
		} else {
			if o.selSubscribed {
				if !e.subscribed {
					// RFC 5258 §3.5: with RECURSIVEMATCH, a parent of a
					// subscribed mailbox is listed with CHILDINFO.
					if !o.recursiveMatch || !hasSubscribedChild(entries, name) {
						continue
					}
					childInfo = true
				}
			} else if !e.exists && !e.children {
				continue
			}
			if !e.exists {
				if c.rev2 || o.extended {
					attrs = append(attrs, `\NonExistent`)
				} else {
					attrs = append(attrs, `\Noselect`)
				}
			}
			if e.children {
				attrs = append(attrs, `\HasChildren`)
			} else {
				attrs = append(attrs, `\HasNoChildren`)
			}
			if o.retSubscribed && e.subscribed {
				attrs = append(attrs, `\Subscribed`)
			}
			if e.specialUse != "" {
				attrs = append(attrs, e.specialUse)
			}
		}
		verb := "LIST"
		if lsub {
			verb = "LSUB"
		}
		c.enc.Raw("* " + verb + " (" + strings.Join(attrs, " ") + `) "/" `).Mailbox(name)
		if childInfo {
			c.enc.Raw(` ("CHILDINFO" ("SUBSCRIBED"))`)
		}
		c.enc.CRLF()
		if len(o.retStatus) > 0 && e.exists {
			if err := c.writeStatus(name, o.retStatus); err != nil && !errors.Is(err, mailstore.ErrNoMailbox) {
				return err
			}
		}
	}
	return nil
}

func hasSubscribedChild(entries map[string]*listEntry, name string) bool {
	for n, e := range entries {
		if e.subscribed && strings.HasPrefix(n, name+"/") {
			return true
		}
	}
	return false
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// matchPattern matches a LIST pattern: "*" matches anything, "%" anything
// but the hierarchy delimiter "/" (RFC 3501 §6.3.8). The "INBOX" that
// starts a name matches case-insensitively (RFC 3501 §5.1).
func matchPattern(pattern, name string) bool {
	fold := 0
	if name == "INBOX" || strings.HasPrefix(name, "INBOX/") {
		fold = 5
	}
	eq := func(j int, pc byte) bool {
		c := name[j]
		if j < fold && pc >= 'a' && pc <= 'z' {
			pc -= 'a' - 'A'
		}
		return c == pc
	}
	// Dynamic programming over (pattern, name) positions.
	prev := make([]bool, len(name)+1)
	cur := make([]bool, len(name)+1)
	prev[0] = true
	for i := 0; i < len(pattern); i++ {
		pc := pattern[i]
		cur[0] = prev[0] && (pc == '*' || pc == '%')
		for j := 1; j <= len(name); j++ {
			switch pc {
			case '*':
				cur[j] = prev[j] || cur[j-1]
			case '%':
				cur[j] = prev[j] || (cur[j-1] && name[j-1] != '/')
			default:
				cur[j] = prev[j-1] && eq(j-1, pc)
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(name)]
}

// cmdLsub implements LSUB (RFC 3501 §6.3.9).
func (c *conn) cmdLsub(tag string) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	refWire, err := c.dec.Mailbox()
	if err != nil {
		return err
	}
	if err := c.dec.SP(); err != nil {
		return err
	}
	pat, err := c.dec.ListMailbox()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	ref, err := c.decodePattern(refWire)
	if err != nil {
		return err
	}
	if pat, err = c.decodePattern(pat); err != nil {
		return err
	}
	if pat == "" {
		c.enc.Raw(`* LSUB (\Noselect) "/" ""`).CRLF()
		return nil
	}
	return c.list(ref, []string{pat}, listOpts{}, true)
}

// readStatusItems reads "(" status-att *(SP status-att) ")".
func (c *conn) readStatusItems() ([]imapwire.StatusItem, error) {
	var items []imapwire.StatusItem
	err := c.dec.List(func() error {
		a, err := c.dec.Atom()
		if err != nil {
			return err
		}
		it := imapwire.StatusItem(strings.ToUpper(a))
		switch it {
		case imapwire.StatusMessages, imapwire.StatusRecent, imapwire.StatusUIDNext, imapwire.StatusUIDValidity,
			imapwire.StatusUnseen, imapwire.StatusDeleted, imapwire.StatusSize, imapwire.StatusHighestModSeq:
		default:
			return &imapwire.SyntaxError{Msg: "unknown STATUS item " + a}
		}
		items = append(items, it)
		return nil
	})
	if err == nil && len(items) == 0 {
		err = &imapwire.SyntaxError{Msg: "empty STATUS item list"}
	}
	return items, err
}

// cmdStatus implements STATUS (RFC 3501 §6.3.10, RFC 9051 §6.3.11).
func (c *conn) cmdStatus(tag string) error {
	name, err := c.spMailbox()
	if err != nil {
		return err
	}
	if err := c.dec.SP(); err != nil {
		return err
	}
	items, err := c.readStatusItems()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	return c.writeStatus(name, items)
}

func (c *conn) writeStatus(name string, items []imapwire.StatusItem) error {
	mb, err := c.acct.Mailbox(c.ctx, name)
	if err != nil {
		return err
	}
	recent := 0
	if slices.Contains(items, imapwire.StatusRecent) {
		states, err := c.acct.States(c.ctx, mb.ID)
		if err != nil {
			return err
		}
		claimed := c.srv.recent.claim(recentKey{c.acct.Name(), mb.ID}, 0, true)
		for _, st := range states {
			if st.UID > claimed {
				recent++
			}
		}
	}
	c.enc.Raw("* STATUS ").Mailbox(mb.Name).Raw(" (")
	for i, it := range items {
		if i > 0 {
			c.enc.SP()
		}
		var v uint64
		switch it {
		case imapwire.StatusMessages:
			v = uint64(mb.Messages)
		case imapwire.StatusRecent:
			v = uint64(recent)
		case imapwire.StatusUIDNext:
			v = uint64(mb.UIDNext)
		case imapwire.StatusUIDValidity:
			v = uint64(mb.UIDValidity)
		case imapwire.StatusUnseen:
			v = uint64(mb.Unseen)
		case imapwire.StatusDeleted:
			v = uint64(mb.Deleted)
		case imapwire.StatusSize:
			v = uint64(mb.Size)
		case imapwire.StatusHighestModSeq:
			v = mb.HighestModSeq
		}
		c.enc.Atom(string(it)).SP().Raw(strconv.FormatUint(v, 10))
	}
	c.enc.Raw(")").CRLF()
	return nil
}

// cmdAppend implements APPEND (RFC 3501 §6.3.11, RFC 4315 APPENDUID). The
// literal is streamed to the store's spool, never held in memory, and
// stored exactly as sent.
func (c *conn) cmdAppend(tag string) error {
	name, err := c.spMailbox()
	if err != nil {
		return err
	}
	if err := c.dec.SP(); err != nil {
		return err
	}
	var flags []string
	var date time.Time
	b, err := c.dec.PeekByte()
	if err != nil {
		return err
	}
	if b == '(' {
		if flags, err = c.dec.FlagList(); err != nil {
			return err
		}
		if err := c.dec.SP(); err != nil {
			return err
		}
		if b, err = c.dec.PeekByte(); err != nil {
			return err
		}
	}
	if b == '"' {
		if date, err = c.dec.DateTime(); err != nil {
			return err
		}
		if err := c.dec.SP(); err != nil {
			return err
		}
	}
	size, r, err := c.dec.Literal()
	if err != nil {
		return err
	}
	// Refusals that do not need the message, as Dovecot answers them:
	// \Recent cannot be set by a client (RFC 3501 §2.3.2), and an empty
	// message is not one (RFC 5322 §3.5 wants at least a header).
	var refuse error
	switch {
	case slices.ContainsFunc(flags, func(f string) bool { return strings.EqualFold(f, mailstore.FlagRecent) }):
		refuse = bad("Invalid system flag \\Recent")
	case size == 0:
		refuse = no("", "Can't save a zero byte message")
	}
	if refuse != nil {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
		if err := c.dec.CRLF(); err != nil {
			return err
		}
		return refuse
	}
	in, spoolErr := c.srv.opts.Store.Spool(c.ctx, r, false, c.srv.opts.MaxAppendSize)
	if _, err := io.Copy(io.Discard, r); err != nil {
		if in != nil {
			in.Close()
		}
		return err
	}
	if in != nil {
		defer in.Close()
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if spoolErr != nil {
		if c.io.get() != nil {
			return errConnDone
		}
		return spoolErr
	}
	res, err := c.acct.Append(c.ctx, name, in, flags, date)
	if err != nil {
		if errors.Is(err, mailstore.ErrNoMailbox) {
			return no("TRYCREATE", "Mailbox does not exist")
		}
		return err
	}
	return okCode("APPENDUID "+strconv.FormatUint(uint64(res.UIDValidity), 10)+" "+
		strconv.FormatUint(uint64(res.UID), 10), "APPEND completed")
}
