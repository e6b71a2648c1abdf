package imapwire

import "testing"

func TestFetchItems(t *testing.T) {
	a := func(at ...FetchAttr) []FetchItem {
		out := make([]FetchItem, len(at))
		for i, x := range at {
			out[i] = FetchItem{Attr: x}
		}
		return out
	}
	sec := func(spec SectionSpec, path ...int) Section { return Section{Path: path, Specifier: spec} }
	runCases(t, []decodeCase{
		{in: "ALL", want: a(FetchFlags, FetchInternalDate, FetchRFC822Size, FetchEnvelope)},
		{in: "fast", want: a(FetchFlags, FetchInternalDate, FetchRFC822Size)},
		{in: "Full", want: a(FetchFlags, FetchInternalDate, FetchRFC822Size, FetchEnvelope, FetchBody)},
		{in: "UID", want: a(FetchUID)},
		{in: "(uid flags INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE RFC822 RFC822.HEADER RFC822.TEXT MODSEQ)",
			want: a(FetchUID, FetchFlags, FetchInternalDate, FetchRFC822Size, FetchEnvelope, FetchBody, FetchBodyStructure,
				FetchRFC822, FetchRFC822Header, FetchRFC822Text, FetchModSeq)},
		{in: "BODY[]", want: []FetchItem{{Attr: FetchBodySection, Section: sec(SpecNone)}}},
		{in: "body.peek[]<0.2048> (x)", want: []FetchItem{{Attr: FetchBodySection, Peek: true, Partial: &Partial{0, 2048}}}, rest: " (x)"},
		{in: "(BODY[HEADER] BODY.PEEK[TEXT]<10.4294967295> BODY[1.2.3] BODY[2.MIME] BODY[3.header] BODY[3.TEXT])",
			want: []FetchItem{
				{Attr: FetchBodySection, Section: sec(SpecHeader)},
				{Attr: FetchBodySection, Peek: true, Section: sec(SpecText), Partial: &Partial{10, 4294967295}},
				{Attr: FetchBodySection, Section: sec(SpecNone, 1, 2, 3)},
				{Attr: FetchBodySection, Section: sec(SpecMIME, 2)},
				{Attr: FetchBodySection, Section: sec(SpecHeader, 3)},
				{Attr: FetchBodySection, Section: sec(SpecText, 3)},
			}},
		{in: `BODY.PEEK[HEADER.FIELDS (From To "X-Odd Name" {4}` + "\r\nDate)]",
			want: []FetchItem{{Attr: FetchBodySection, Peek: true, Section: Section{Specifier: SpecHeaderFields, Fields: []string{"From", "To", "X-Odd Name", "Date"}}}}},
		{in: `BODY[1.HEADER.FIELDS.NOT (subject)]<5.6>`,
			want: []FetchItem{{Attr: FetchBodySection, Section: Section{Path: []int{1}, Specifier: SpecHeaderNotFields, Fields: []string{"subject"}}, Partial: &Partial{5, 6}}}},
		{in: `(BINARY[] BINARY.PEEK[1.2]<0.100> BINARY.SIZE[3] binary.size[])`,
			want: []FetchItem{
				{Attr: FetchBinary, Section: sec(SpecNone)},
				{Attr: FetchBinary, Peek: true, Section: sec(SpecNone, 1, 2), Partial: &Partial{0, 100}},
				{Attr: FetchBinarySize, Section: sec(SpecNone, 3)},
				{Attr: FetchBinarySize, Section: sec(SpecNone)},
			}},
		{in: "(FLAGS FLAGS)", want: a(FetchFlags, FetchFlags)},

		{in: "()", err: "empty fetch item list"},
		{in: "(ALL)", err: "fetch macro ALL must be used alone, not in a list"},
		{in: "FOO", err: `unknown fetch item "FOO"`},
		{in: "(FLAGS FOO)", err: `unknown fetch item "FOO"`},
		{in: "BODY.PEEK", err: `expected [ after BODY.PEEK, found end of line`},
		{in: "BINARY", err: `expected [ after BINARY, found end of line`},
		{in: "BODY[", err: `expected section specifier, found end of line`},
		{in: "BODY[1", err: `expected ] to end the section, found end of line`},
		{in: "BODY[0]", err: `section part number must not be 0`},
		{in: "BODY[1.]", err: `expected section specifier, found "]"`},
		{in: "BODY[MIME]", err: `MIME section specifier needs a part number`},
		{in: "BODY[HEADER.FIELDS]", err: `expected SP, found "]"`},
		{in: "BODY[HEADER.FIELDS ()]", err: `empty header field list in HEADER.FIELDS`},
		{in: "BODY[HEADER.FIELDS (a b]", err: `expected SP or ) in list, found end of line`}, // "b]" is an astring
		{in: "BODY[FOO]", err: `unknown section specifier "FOO"`},
		{in: "BODY[TEXT.MIME]", err: `unknown section specifier "TEXT.MIME"`},
		{in: "BINARY[HEADER]", err: `expected ] to end the section, found "H"`},
		{in: "BINARY[1.TEXT]", err: `BINARY section holds only part numbers`},
		{in: "BODY[]<1>", err: `expected . in partial, found ">"`},
		{in: "BODY[]<1.0>", err: `number must not be 0`},
		{in: "BODY[]<4294967296.1>", err: `number too large (maximum 4294967295)`},
		{in: "BODY[]<1.2", err: `expected > to end the partial, found end of line`},
		{in: "(BODY[] ", err: `expected fetch item, found end of line`},
		{in: "(FLAGS)(UID)", want: a(FetchFlags), rest: "(UID)"},
	}, (*Decoder).FetchItems)
	// BINARY.SIZE takes no partial: the "<" is left for the caller.
	runCases(t, []decodeCase{
		{in: "BINARY.SIZE[1]<0.1>", want: []FetchItem{{Attr: FetchBinarySize, Section: sec(SpecNone, 1)}}, rest: "<0.1>"},
	}, (*Decoder).FetchItems)
}

func TestStore(t *testing.T) {
	runCases(t, []decodeCase{
		{in: `FLAGS (\Seen foo)`, want: &StoreCommand{Op: StoreReplace, Flags: []string{`\Seen`, "foo"}}},
		{in: `+flags.silent \deleted`, want: &StoreCommand{Op: StoreAdd, Silent: true, Flags: []string{`\Deleted`}}},
		{in: `-FLAGS \Seen \Flagged $Junk`, want: &StoreCommand{Op: StoreRemove, Flags: []string{`\Seen`, `\Flagged`, "$Junk"}}},
		{in: `FLAGS ()`, want: &StoreCommand{Op: StoreReplace, Flags: []string{}}},
		{in: `(UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\Deleted)`,
			want: &StoreCommand{Op: StoreAdd, Silent: true, Flags: []string{`\Deleted`}, UnchangedSince: 320162338, HasUnchanged: true}},
		{in: `(unchangedsince 0) FLAGS ()`, want: &StoreCommand{Flags: []string{}, HasUnchanged: true}},
		{in: `FLAGS`, err: `expected SP, found end of line`},
		{in: `FLAGS `, err: `expected flag, found end of line`},
		{in: `+FLAGS.LOUD (\Seen)`, err: `expected FLAGS, +FLAGS or -FLAGS (optionally .SILENT), found "+FLAGS.LOUD"`},
		{in: `+ (\Seen)`, err: `expected FLAGS, +FLAGS or -FLAGS (optionally .SILENT), found "+"`},
		{in: `(FOO 1) FLAGS ()`, err: `unknown STORE modifier "FOO"`},
		{in: `() FLAGS ()`, err: `empty STORE modifier list`},
		{in: `(UNCHANGEDSINCE 1 UNCHANGEDSINCE 2) FLAGS ()`, err: `UNCHANGEDSINCE given twice`},
		{in: `(UNCHANGEDSINCE x) FLAGS ()`, err: `expected number, found "x"`},
		{in: `FLAGS (\Seen`, err: `expected SP or ) in list, found end of line`},
	}, (*Decoder).Store)
}
