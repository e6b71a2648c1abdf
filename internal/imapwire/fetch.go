package imapwire

import (
	"strings"
)

// Fetch macros (RFC 3501 §6.4.5), expanded by FetchItems.
var (
	fetchFast = []FetchAttr{FetchFlags, FetchInternalDate, FetchRFC822Size}
	fetchAll  = []FetchAttr{FetchFlags, FetchInternalDate, FetchRFC822Size, FetchEnvelope}
	fetchFull = []FetchAttr{FetchFlags, FetchInternalDate, FetchRFC822Size, FetchEnvelope, FetchBody}
)

// isFetchNameChar reports a byte of a fetch-att name: ATOM-CHAR except
// "[" (which starts a section) and "<" (a partial).
func isFetchNameChar(c byte) bool { return isAtomChar(c) && c != '[' && c != '<' }

// FetchItems reads a fetch-att list, a single fetch-att, or a macro (RFC
// 3501 §6.4.5 and §9 "fetch", RFC 9051, RFC 3516 BINARY, RFC 7162
// MODSEQ):
//
//	"ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")"
//
// Names are case-insensitive. Macros are expanded (ALL = FLAGS
// INTERNALDATE RFC822.SIZE ENVELOPE; FAST without ENVELOPE; FULL adds
// BODY) and are allowed only alone. Items are returned in the order
// given, duplicates kept. BODY[section]<partial> and BODY.PEEK[...] are
// FetchBodySection (Peek set for .PEEK); BINARY[...] and BINARY.PEEK[...]
// are FetchBinary; BINARY.SIZE[...] is FetchBinarySize; section-binary
// holds only a part path. RFC822.HEADER, RFC822.TEXT and RFC822 are
// returned as such (the server maps them). A partial is "<" number "."
// nz-number ">" with both values within 32 bits. Fetch modifiers such as
// (CHANGEDSINCE n) are not read here.
func (d *Decoder) FetchItems() ([]FetchItem, error) {
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	if c != '(' {
		name, err := d.readWhile(isFetchNameChar, "fetch item")
		if err != nil {
			return nil, err
		}
		var macro []FetchAttr
		switch strings.ToUpper(name) {
		case "ALL":
			macro = fetchAll
		case "FAST":
			macro = fetchFast
		case "FULL":
			macro = fetchFull
		default:
			it, err := d.fetchAtt(name)
			if err != nil {
				return nil, err
			}
			return []FetchItem{it}, nil
		}
		items := make([]FetchItem, len(macro))
		for i, a := range macro {
			items[i] = FetchItem{Attr: a}
		}
		return items, nil
	}
	var items []FetchItem
	err = d.List(func() error {
		name, err := d.readWhile(isFetchNameChar, "fetch item")
		if err != nil {
			return err
		}
		it, err := d.fetchAtt(name)
		if err != nil {
			return err
		}
		items = append(items, it)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, synErr("empty fetch item list")
	}
	return items, nil
}

// fetchAtt reads what follows the fetch-att called name.
func (d *Decoder) fetchAtt(name string) (FetchItem, error) {
	up := strings.ToUpper(name)
	switch FetchAttr(up) {
	case FetchUID, FetchFlags, FetchInternalDate, FetchRFC822Size, FetchEnvelope,
		FetchBodyStructure, FetchRFC822, FetchRFC822Header, FetchRFC822Text, FetchModSeq:
		return FetchItem{Attr: FetchAttr(up)}, nil
	}
	it := FetchItem{}
	binary := false
	switch up {
	case "BODY":
		c, err := d.peek()
		if err != nil {
			return it, err
		}
		if c != '[' {
			return FetchItem{Attr: FetchBody}, nil
		}
		it.Attr = FetchBodySection
	case "BODY.PEEK":
		it.Attr, it.Peek = FetchBodySection, true
	case "BINARY":
		it.Attr, binary = FetchBinary, true
	case "BINARY.PEEK":
		it.Attr, it.Peek, binary = FetchBinary, true, true
	case "BINARY.SIZE":
		it.Attr, binary = FetchBinarySize, true
	case "ALL", "FAST", "FULL":
		return it, synErr("fetch macro %s must be used alone, not in a list", up)
	default:
		return it, synErr("unknown fetch item %q", name)
	}
	c, err := d.peek()
	if err != nil {
		return it, err
	}
	if c != '[' {
		return it, synErr("expected [ after %s, found %s", up, describe(c))
	}
	if it.Section, err = d.section(binary); err != nil {
		return it, err
	}
	if it.Attr == FetchBinarySize {
		return it, nil
	}
	if c, err = d.peek(); err != nil {
		return it, err
	}
	if c == '<' {
		if it.Partial, err = d.partial(); err != nil {
			return it, err
		}
	}
	return it, nil
}

// section reads "[" [section-spec] "]" (binary: "[" [section-part] "]").
func (d *Decoder) section(binary bool) (Section, error) {
	var sec Section
	if _, err := d.readByte(); err != nil { // "["
		return sec, err
	}
	for {
		c, err := d.peek()
		if err != nil {
			return sec, err
		}
		if !isDigit(c) {
			break
		}
		n, err := d.number(1<<32-1, "section part number")
		if err != nil {
			return sec, err
		}
		if n == 0 {
			return sec, synErr("section part number must not be 0")
		}
		sec.Path = append(sec.Path, int(n))
		if c, err = d.peek(); err != nil {
			return sec, err
		}
		if c != '.' {
			break
		}
		if _, err := d.readByte(); err != nil {
			return sec, err
		}
		if c, err = d.peek(); err != nil {
			return sec, err
		}
		if !isDigit(c) {
			if binary {
				return sec, synErr("BINARY section holds only part numbers")
			}
			if err := d.sectionText(&sec); err != nil {
				return sec, err
			}
			break
		}
	}
	c, err := d.peek()
	if err != nil {
		return sec, err
	}
	if c != ']' && len(sec.Path) == 0 && !binary {
		if err := d.sectionText(&sec); err != nil {
			return sec, err
		}
	}
	if err := d.expect(']', "] to end the section"); err != nil {
		return sec, err
	}
	return sec, nil
}

// sectionText reads section-msgtext or "MIME" into sec.
func (d *Decoder) sectionText(sec *Section) error {
	spec, err := d.readWhile(isFetchNameChar, "section specifier")
	if err != nil {
		return err
	}
	switch up := SectionSpec(strings.ToUpper(spec)); up {
	case SpecHeader, SpecText:
		sec.Specifier = up
	case SpecMIME:
		if len(sec.Path) == 0 {
			return synErr("MIME section specifier needs a part number")
		}
		sec.Specifier = up
	case SpecHeaderFields, SpecHeaderNotFields:
		sec.Specifier = up
		if err := d.SP(); err != nil {
			return err
		}
		sec.Fields = []string{}
		if err := d.List(func() error {
			f, err := d.AString()
			if err != nil {
				return err
			}
			sec.Fields = append(sec.Fields, f)
			return nil
		}); err != nil {
			return err
		}
		if len(sec.Fields) == 0 {
			return synErr("empty header field list in %s", up)
		}
	default:
		return synErr("unknown section specifier %q", spec)
	}
	return nil
}

// partial reads "<" number "." nz-number ">".
func (d *Decoder) partial() (*Partial, error) {
	if _, err := d.readByte(); err != nil { // "<"
		return nil, err
	}
	off, err := d.Number()
	if err != nil {
		return nil, err
	}
	if err := d.expect('.', ". in partial"); err != nil {
		return nil, err
	}
	n, err := d.NzNumber()
	if err != nil {
		return nil, err
	}
	if err := d.expect('>', "> to end the partial"); err != nil {
		return nil, err
	}
	return &Partial{Offset: off, Count: n}, nil
}

// Store reads the arguments of STORE after the sequence set and its SP
// (RFC 3501 §6.4.6, RFC 7162 §3.1.3):
//
//	["(" "UNCHANGEDSINCE" SP mod-sequence-valzer ")" SP]
//	["+" / "-"] "FLAGS" [".SILENT"] SP (flag-list / flag *(SP flag))
//
// Flags are read with Flag (system flags canonicalised); the server
// rejects \Recent and \* where it must.
func (d *Decoder) Store() (*StoreCommand, error) {
	cmd := &StoreCommand{}
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	if c == '(' {
		err := d.List(func() error {
			m, err := d.Atom()
			if err != nil {
				return err
			}
			if !strings.EqualFold(m, "UNCHANGEDSINCE") {
				return synErr("unknown STORE modifier %q", m)
			}
			if cmd.HasUnchanged {
				return synErr("UNCHANGEDSINCE given twice")
			}
			if err := d.SP(); err != nil {
				return err
			}
			if cmd.UnchangedSince, err = d.Number64(); err != nil {
				return err
			}
			cmd.HasUnchanged = true
			return nil
		})
		if err != nil {
			return nil, err
		}
		if !cmd.HasUnchanged {
			return nil, synErr("empty STORE modifier list")
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
	name, err := d.Atom()
	if err != nil {
		return nil, err
	}
	up := strings.ToUpper(name)
	switch up[0] {
	case '+':
		cmd.Op, up = StoreAdd, up[1:]
	case '-':
		cmd.Op, up = StoreRemove, up[1:]
	}
	switch up {
	case "FLAGS":
	case "FLAGS.SILENT":
		cmd.Silent = true
	default:
		return nil, synErr("expected FLAGS, +FLAGS or -FLAGS (optionally .SILENT), found %q", name)
	}
	if err := d.SP(); err != nil {
		return nil, err
	}
	if c, err = d.peek(); err != nil {
		return nil, err
	}
	if c == '(' {
		if cmd.Flags, err = d.FlagList(); err != nil {
			return nil, err
		}
		return cmd, nil
	}
	cmd.Flags = []string{}
	for {
		f, err := d.Flag()
		if err != nil {
			return nil, err
		}
		cmd.Flags = append(cmd.Flags, f)
		if c, err = d.peek(); err != nil {
			return nil, err
		}
		if c != ' ' {
			return cmd, nil
		}
		if _, err := d.readByte(); err != nil {
			return nil, err
		}
	}
}

// StatusItems reads "(" status-att *(SP status-att) ")" (RFC 3501
// §6.3.10, RFC 9051 §6.3.11, RFC 8438 SIZE, RFC 7162 HIGHESTMODSEQ).
// Names are case-insensitive and returned canonical (upper case); the
// list must not be empty. RECENT is accepted (rev1); the server decides.
func (d *Decoder) StatusItems() ([]StatusItem, error) {
	var items []StatusItem
	err := d.List(func() error {
		a, err := d.Atom()
		if err != nil {
			return err
		}
		switch it := StatusItem(strings.ToUpper(a)); it {
		case StatusMessages, StatusRecent, StatusUIDNext, StatusUIDValidity, StatusUnseen,
			StatusDeleted, StatusSize, StatusHighestModSeq:
			items = append(items, it)
		default:
			return synErr("unknown STATUS item %q", a)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, synErr("empty STATUS item list")
	}
	return items, nil
}
