package mime

// Address is one entry of an ENVELOPE address list (RFC 3501 §7.4.2). A
// group start has only Mailbox (the group name) set; a group end has
// nothing set.
type Address struct {
	Name, Route, Mailbox, Domain string
	HasName, HasRoute            bool
	HasMailbox, HasDomain        bool
	InvalidSyntax                bool
}

const replacementChar = "\uFFFD"

// ParseAddressList parses an address-list header value (RFC 5322 §3.4)
// for the ENVELOPE, as Dovecot's message_address_parse does with
// FILL_MISSING: it never fails; a missing local part becomes
// "MISSING_MAILBOX", a missing domain "MISSING_DOMAIN", a broken
// angle-addr's domain "SYNTAX_ERROR", a broken route "INVALID_ROUTE";
// groups give a start entry (NIL NIL "name" NIL) and an end entry (NIL NIL
// NIL NIL); "user@host (Name)" takes Name from the comment.
func ParseAddressList(value string) []Address {
	a := addrParser{p: rfcParser{data: []byte(value), trackComment: true, nulRepl: replacementChar}}
	if a.p.skipLWSP() <= 0 {
		return nil
	}
	a.addressList()
	return a.out
}

type addrParser struct {
	p    rfcParser
	out  []Address
	addr Address
	str  []byte
}

func (a *addrParser) add() {
	a.out = append(a.out, a.addr)
	a.addr = Address{}
}

func (a *addrParser) addFixed() {
	if !a.addr.HasMailbox || a.addr.Mailbox == "" {
		a.addr.Mailbox, a.addr.HasMailbox = "MISSING_MAILBOX", true
		a.addr.InvalidSyntax = true
	}
	if !a.addr.HasDomain || a.addr.Domain == "" {
		a.addr.Domain, a.addr.HasDomain = "MISSING_DOMAIN", true
		a.addr.InvalidSyntax = true
	}
	a.add()
}

func (a *addrParser) localPart() int {
	a.str = a.str[:0]
	var r int
	if a.p.at('"') {
		a.str, r = a.p.quotedString(a.str)
	} else {
		a.str, r = a.p.atomOrDot(a.str)
	}
	if r < 0 {
		return -1
	}
	a.addr.Mailbox, a.addr.HasMailbox = string(a.str), true
	return r
}

func (a *addrParser) domain() int {
	a.str = a.str[:0]
	var r int
	a.str, r = a.p.domain(a.str)
	if r < 0 {
		return -1
	}
	a.addr.Domain, a.addr.HasDomain = string(a.str), true
	return r
}

// domainList parses obs-route's domain list: "@a,@b".
func (a *addrParser) domainList() int {
	a.str = a.str[:0]
	for {
		if !a.p.more() {
			return 0
		}
		if a.p.cur() != '@' {
			break
		}
		if len(a.str) > 0 {
			a.str = append(a.str, ',')
		}
		a.str = append(a.str, '@')
		var r int
		a.str, r = a.p.domain(a.str)
		if r <= 0 {
			return r
		}
		for a.p.skipLWSP() > 0 && a.p.cur() == ',' {
			a.p.pos++
		}
	}
	a.addr.Route, a.addr.HasRoute = string(a.str), true
	return 1
}

func (a *addrParser) angleAddr() int {
	a.p.pos++ // '<'
	if a.p.skipLWSP() <= 0 {
		return -1
	}
	if a.p.cur() == '@' {
		if a.domainList() > 0 && a.p.at(':') {
			a.p.pos++
		} else {
			a.addr.Route, a.addr.HasRoute = "INVALID_ROUTE", true
			if !a.p.more() {
				return -1
			}
		}
		if a.p.skipLWSP() <= 0 {
			return -1
		}
	}
	if a.p.cur() == '>' {
		// <> (null sender)
		a.p.pos++
		return a.p.skipLWSP()
	}
	if a.localPart() <= 0 {
		return -1
	}
	if a.p.at('@') {
		if a.domain() <= 0 {
			return -1
		}
	}
	if !a.p.at('>') {
		return -1
	}
	a.p.pos++
	return a.p.skipLWSP()
}

func (a *addrParser) nameAddr() int {
	a.str = a.str[:0]
	var r int
	a.str, r = a.p.phrase(a.str)
	if r <= 0 || a.p.cur() != '<' {
		return -1
	}
	if len(a.str) > 0 {
		a.addr.Name, a.addr.HasName = string(a.str), true
	}
	if a.angleAddr() < 0 {
		a.addr.Domain, a.addr.HasDomain = "SYNTAX_ERROR", true
		a.addr.InvalidSyntax = true
	}
	if a.p.more() {
		return 1
	}
	return 0
}

func (a *addrParser) addrSpec() int {
	a.p.lastComment = a.p.lastComment[:0]
	quoted := a.p.at('"')
	r := a.localPart()
	if r <= 0 {
		a.addr.InvalidSyntax = true
	}
	r2 := -2
	if r != 0 && a.p.at('@') {
		r2 = a.domain()
		if r2 <= 0 {
			r = r2
		}
	}
	if len(a.p.lastComment) > 0 {
		a.addr.Name, a.addr.HasName = string(a.p.lastComment), true
	} else if r2 == -2 {
		// "user" alone is a mailbox, but followed by more words it
		// was a display name.
		a.str = append(a.str, ' ')
		n := len(a.str)
		a.str, _ = a.p.phrase(a.str)
		if len(a.str) != n {
			a.addr.Mailbox, a.addr.HasMailbox = "", false
			a.addr.Name, a.addr.HasName = string(a.str), true
		} else if !quoted {
			a.addr.Domain, a.addr.HasDomain = "", true
		} else {
			// a lone "quoted string" is a display name
			a.addr.Name, a.addr.HasName = a.addr.Mailbox, true
			a.addr.Mailbox, a.addr.HasMailbox = "", false
		}
	}
	return r
}

func (a *addrParser) mailbox() int {
	start := a.p.pos
	r := a.nameAddr()
	if r < 0 {
		a.p.pos = start
		a.addr = Address{}
		r = a.addrSpec()
		if r < 0 {
			a.addr.InvalidSyntax = true
		}
	}
	a.addFixed()
	return r
}

// group parses "name: mailbox-list ;". It returns -1 only when the input
// is not a group; once the start entry is out it returns 0 (end) or 1.
func (a *addrParser) group() int {
	a.str = a.str[:0]
	var r int
	a.str, r = a.p.phrase(a.str)
	if r <= 0 || a.p.cur() != ':' {
		return -1
	}
	a.p.pos++
	if r = a.p.skipLWSP(); r <= 0 {
		a.addr.InvalidSyntax = true
	}
	a.addr.Mailbox, a.addr.HasMailbox = string(a.str), true
	a.add()
	if r > 0 && a.p.cur() != ';' {
		for {
			if a.mailbox() <= 0 {
				r = -1
				break
			}
			if !a.p.at(',') {
				break
			}
			a.p.pos++
			if a.p.skipLWSP() <= 0 {
				r = -1
				break
			}
		}
	}
	if r >= 0 {
		if !a.p.at(';') {
			r = -1
		} else {
			a.p.pos++
			r = a.p.skipLWSP()
		}
	}
	if r < 0 {
		a.addr.InvalidSyntax = true
	}
	a.add()
	if r == 0 {
		return 0
	}
	return 1
}

func (a *addrParser) address() int {
	start := a.p.pos
	r := a.group()
	if r < 0 {
		a.p.pos = start
		a.addr = Address{}
		r = a.mailbox()
	}
	return r
}

func (a *addrParser) addressList() {
	for {
		r := a.address()
		if r == 0 {
			return
		}
		if !a.p.at(',') {
			return
		}
		a.p.pos++
		if r = a.p.skipLWSP(); r <= 0 {
			if r < 0 {
				a.addFixed()
			}
			return
		}
	}
}
