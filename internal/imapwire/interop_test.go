package imapwire

import (
	"bufio"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// interopServer answers an independent client (emersion/go-imap v2) with
// this package's decoder and encoder, and sends what it parsed from each
// command to got.
func interopServer(t *testing.T, conn net.Conn, caps string, got chan<- any) {
	defer conn.Close()
	bw := bufio.NewWriter(conn)
	enc := NewEncoder(bw)
	d := NewDecoder(bufio.NewReader(conn), func() error {
		enc.Raw("+ go on").CRLF()
		return enc.Flush()
	})
	enc.Raw("* OK [CAPABILITY " + caps + "] ready").CRLF()
	enc.Flush()
	for {
		tag, err := d.Tag()
		if err != nil {
			return
		}
		res, err := interopCommand(d)
		if err == nil {
			err = d.CRLF()
		}
		var se *SyntaxError
		switch {
		case errors.As(err, &se):
			t.Errorf("server: %v", err)
			got <- err
			enc.Atom(tag).Raw(" BAD ").Raw(se.Msg).CRLF()
			d.DiscardLine()
		case err != nil:
			t.Errorf("server: %v", err)
			return
		case res == "CAPABILITY":
			enc.Raw("* CAPABILITY " + caps).CRLF()
			enc.Atom(tag).Raw(" OK done").CRLF()
		default:
			interopRespond(enc, res)
			got <- res
			if res == "LOGOUT" {
				enc.Raw("* BYE bye").CRLF()
			}
			enc.Atom(tag).Raw(" OK done").CRLF()
		}
		enc.Flush()
	}
}

type interopFetch struct {
	Set   SeqSet
	Items []FetchItem
	Mods  *FetchModifiers
}

type interopList struct{ Ref, Pattern string }

// interopNames are the mailboxes the server lists, in UTF-8.
var interopNames = []string{"INBOX", "Entwürfe", "A&B", "~peter/mail/台北/日本語", "sp ace", `q"uote\`, "😀"}

// interopBody is what the server sends for BODY[].
const interopBody = "Subject: x\r\n\r\nNUL-free body with \"quotes\" and ü\r\n"

// interopRespond writes untagged data for LIST and FETCH with the Encoder.
func interopRespond(enc *Encoder, res any) {
	switch r := res.(type) {
	case interopList:
		for _, n := range interopNames {
			enc.Atom("* LIST").SP().Flags([]string{`\HasNoChildren`}).SP().String("/").SP().Mailbox(n).CRLF()
		}
	case interopFetch:
		if r.Mods != nil || len(r.Items) != 5 {
			return
		}
		for _, uid := range []uint64{7, 4000000000} {
			enc.Atom("*").SP().Number(uid%1000 + 1).SP().Atom("FETCH").SP().BeginList()
			enc.Atom("UID").SP().Number(uid).SP().Atom("FLAGS").SP().Flags([]string{`\Seen`, "$Work"}).SP()
			enc.Atom("INTERNALDATE").SP().DateTime(time.Date(2024, 2, 3, 4, 5, 6, 0, time.FixedZone("", -5*3600-1800))).SP()
			enc.Atom("RFC822.SIZE").SP().Number(uint64(len(interopBody))).SP()
			enc.Atom("BODY[]").SP().LiteralHeader(int64(len(interopBody)), false)
			enc.Write([]byte(interopBody))
			enc.EndList().CRLF()
		}
	}
}

type interopAppend struct {
	Mailbox string
	Flags   []string
	Date    time.Time
	Data    string
}

func interopCommand(d *Decoder) (any, error) {
	if err := d.SP(); err != nil {
		return nil, err
	}
	name, err := d.Atom()
	if err != nil {
		return nil, err
	}
	name = strings.ToUpper(name)
	if name == "UID" {
		if err := d.SP(); err != nil {
			return nil, err
		}
		if name, err = d.Atom(); err != nil {
			return nil, err
		}
		name = "UID " + strings.ToUpper(name)
	}
	switch name {
	case "LOGOUT", "CAPABILITY":
		return name, nil
	case "LOGIN":
		var u, p string
		if err = d.SP(); err == nil {
			if u, err = d.AString(); err == nil {
				if err = d.SP(); err == nil {
					p, err = d.AString()
				}
			}
		}
		return []string{u, p}, err
	case "SELECT", "CREATE":
		if err := d.SP(); err != nil {
			return nil, err
		}
		return d.MailboxUTF8()
	case "LIST":
		var l interopList
		if err = d.SP(); err == nil {
			if l.Ref, err = d.Mailbox(); err == nil {
				if err = d.SP(); err == nil {
					l.Pattern, err = d.ListMailbox()
				}
			}
		}
		return l, err
	case "SEARCH", "UID SEARCH":
		return d.Search()
	case "FETCH", "UID FETCH", "STORE", "UID STORE":
		var f interopFetch
		if err := d.SP(); err != nil {
			return nil, err
		}
		if f.Set, err = d.SeqSet(); err != nil {
			return nil, err
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
		if strings.HasSuffix(name, "STORE") {
			s, err := d.Store()
			return []any{f.Set, s}, err
		}
		if f.Items, err = d.FetchItems(); err != nil {
			return nil, err
		}
		if !d.AtEOL() {
			if err := d.SP(); err != nil {
				return nil, err
			}
			if f.Mods, err = d.FetchModifiers(); err != nil {
				return nil, err
			}
		}
		return f, nil
	case "APPEND":
		var a interopAppend
		if err := d.SP(); err != nil {
			return nil, err
		}
		if a.Mailbox, err = d.MailboxUTF8(); err != nil {
			return nil, err
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
		for {
			c, err := d.PeekByte()
			if err != nil {
				return nil, err
			}
			switch c {
			case '(':
				a.Flags, err = d.FlagList()
			case '"':
				a.Date, err = d.DateTime()
			default:
				_, r, err := d.Literal()
				if err != nil {
					return nil, err
				}
				var b strings.Builder
				if _, err := io.Copy(&b, r); err != nil {
					return nil, err
				}
				a.Data = b.String()
				return a, nil
			}
			if err != nil {
				return nil, err
			}
			if err := d.SP(); err != nil {
				return nil, err
			}
		}
	}
	return nil, synErr("unknown command %q", name)
}

// TestInteropGoIMAP has an independent client encode commands and checks
// what the decoder makes of them, field by field.
func TestInteropGoIMAP(t *testing.T) {
	for _, caps := range []string{"IMAP4rev1 ESEARCH CONDSTORE BINARY", "IMAP4rev1 LITERAL+ ESEARCH CONDSTORE BINARY"} {
		t.Run(caps, func(t *testing.T) { interop(t, caps) })
	}
}

func interop(t *testing.T, caps string) {
	sc, cc := net.Pipe()
	got := make(chan any, 1)
	go interopServer(t, sc, caps, got)
	c := imapclient.New(cc, nil)
	defer c.Close()

	next := func(what string) any {
		t.Helper()
		select {
		case v := <-got:
			return v
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: server got nothing", what)
			return nil
		}
	}
	check := func(what string, want any) {
		t.Helper()
		if v := next(what); !reflect.DeepEqual(v, want) {
			t.Errorf("%s:\n got %#v\nwant %#v", what, v, want)
		}
	}
	wait := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	go func() { wait("login", c.Login("alice@example.org", "p\"a\\ss wörd").Wait()) }()
	check("login", []string{"alice@example.org", "p\"a\\ss wörd"})

	go c.Select("Entwürfe/台北", nil).Wait()
	check("select", "Entwürfe/台北")

	since := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	crit := &imap.SearchCriteria{
		UID:    []imap.UIDSet{imap.UIDSetNum(3, 4, 5, 9)},
		Since:  since,
		Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "bob"}, {Key: "X-Tag", Value: "a \"b\""}},
		Body:   []string{"grüße"},
		Flag:   []imap.Flag{imap.FlagSeen, "$Work"},
		Larger: 1000,
		Not:    []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagDeleted}}},
		Or:     [][2]imap.SearchCriteria{{{Text: []string{"x"}}, {SeqNum: []imap.SeqSet{imap.SeqSetNum(1)}}}},
	}
	go c.UIDSearch(crit, &imap.SearchOptions{ReturnMin: true, ReturnCount: true}).Wait()
	wantSearch := &SearchCommand{
		Return:  &SearchReturn{Min: true, Count: true},
		Charset: "UTF-8",
		Key: and(
			&SearchKey{Op: SearchUID, Set: SeqSet{Ranges: []SeqRange{{3, 5}, {9, 9}}}},
			date(SearchSince, 2024, 3, 1),
			val(SearchFrom, "bob"),
			&SearchKey{Op: SearchHeader, Field: "X-Tag", Value: `a "b"`},
			val(SearchBody, "grüße"),
			op(SearchSeen),
			val(SearchKeyword, "$Work"),
			num(SearchLarger, 1000),
			&SearchKey{Op: SearchNot, Sub: []*SearchKey{and(op(SearchDeleted))}},
			&SearchKey{Op: SearchOr, Sub: []*SearchKey{and(val(SearchText, "x")), and(seq(SearchSeqSet, SeqRange{1, 1}))}},
		),
	}
	check("search", wantSearch)

	fetch := &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, RFC822Size: true, InternalDate: true, ModSeq: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection: []*imap.FetchItemBodySection{
			{Peek: true, Specifier: imap.PartSpecifierHeader},
			{Part: []int{1, 2}, Specifier: imap.PartSpecifierMIME},
			{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"From", "Subject"}, Peek: true},
			{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Received"}, Part: []int{3}},
			{Part: []int{2}, Partial: &imap.SectionPartial{Offset: 100, Size: 50}},
		},
		BinarySection:     []*imap.FetchItemBinarySection{{Part: []int{1}, Peek: true}},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{1}}},
		ChangedSince:      7,
	}
	go c.Fetch(imap.UIDSetNum(1, 2, 3), fetch).Close()
	v := next("fetch")
	f, ok := v.(interopFetch)
	if !ok {
		t.Fatalf("fetch: got %#v", v)
	}
	if f.Set.String() != "1:3" || !reflect.DeepEqual(f.Mods, &FetchModifiers{ChangedSince: 7, HasChangedSince: true}) {
		t.Errorf("fetch set %s mods %+v", f.Set, f.Mods)
	}
	wantItems := map[string]FetchItem{
		"UID":           {Attr: FetchUID},
		"FLAGS":         {Attr: FetchFlags},
		"ENVELOPE":      {Attr: FetchEnvelope},
		"RFC822.SIZE":   {Attr: FetchRFC822Size},
		"INTERNALDATE":  {Attr: FetchInternalDate},
		"MODSEQ":        {Attr: FetchModSeq},
		"BODYSTRUCTURE": {Attr: FetchBodyStructure},
		"peek header":   {Attr: FetchBodySection, Peek: true, Section: Section{Specifier: SpecHeader}},
		"1.2.MIME":      {Attr: FetchBodySection, Section: Section{Path: []int{1, 2}, Specifier: SpecMIME}},
		"fields":        {Attr: FetchBodySection, Peek: true, Section: Section{Specifier: SpecHeaderFields, Fields: []string{"From", "Subject"}}},
		"3 fields not":  {Attr: FetchBodySection, Section: Section{Path: []int{3}, Specifier: SpecHeaderNotFields, Fields: []string{"Received"}}},
		"2 partial":     {Attr: FetchBodySection, Section: Section{Path: []int{2}}, Partial: &Partial{100, 50}},
		"binary":        {Attr: FetchBinary, Peek: true, Section: Section{Path: []int{1}}},
		"binary size":   {Attr: FetchBinarySize, Section: Section{Path: []int{1}}},
	}
	if len(f.Items) != len(wantItems) {
		t.Errorf("fetch: %d items, want %d: %+v", len(f.Items), len(wantItems), f.Items)
	}
	for name, w := range wantItems {
		found := false
		for _, it := range f.Items {
			found = found || reflect.DeepEqual(it, w)
		}
		if !found {
			t.Errorf("fetch: item %s (%+v) missing from %+v", name, w, f.Items)
		}
	}

	go c.Store(imap.SeqSetNum(4), &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.FlagFlagged, "$Junk"}},
		&imap.StoreOptions{UnchangedSince: 12}).Close()
	check("store", []any{SeqSet{Ranges: []SeqRange{{4, 4}}}, &StoreCommand{Op: StoreRemove, Silent: true,
		Flags: []string{`\Flagged`, "$Junk"}, UnchangedSince: 12, HasUnchanged: true}})

	msg := "Subject: hi\r\n\r\nbody\r\n"
	when := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))
	go func() {
		a := c.Append("Sent & Done", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: when})
		a.Write([]byte(msg))
		a.Close()
		a.Wait()
	}()
	v = next("append")
	if a, ok := v.(interopAppend); !ok || a.Mailbox != "Sent & Done" || !reflect.DeepEqual(a.Flags, []string{`\Seen`}) ||
		!a.Date.Equal(when) || a.Data != msg {
		t.Errorf("append: got %#v", v)
	}

	go c.Logout().Wait()
	check("logout", "LOGOUT")
}

// TestInteropGoIMAPEncoder has the independent client parse what the
// Encoder writes: mailbox names in modified UTF-7 and UTF-8-free quoting,
// flags, dates, numbers and literals.
func TestInteropGoIMAPEncoder(t *testing.T) {
	sc, cc := net.Pipe()
	got := make(chan any, 8)
	go interopServer(t, sc, "IMAP4rev1", got)
	c := imapclient.New(cc, nil)
	defer c.Close()

	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != (interopList{"", "*"}) {
		t.Errorf("LIST parsed as %#v", v)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
		if l.Delim != '/' || !reflect.DeepEqual(l.Attrs, []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}) {
			t.Errorf("LIST %q: delim %q attrs %v", l.Mailbox, l.Delim, l.Attrs)
		}
	}
	if !reflect.DeepEqual(names, interopNames) {
		t.Errorf("LIST names %q, want %q", names, interopNames)
	}

	msgs, err := c.Fetch(imap.UIDSetNum(7, 4000000000), &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	<-got
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	for i, m := range msgs {
		uid := []imap.UID{7, 4000000000}[i]
		when := time.Date(2024, 2, 3, 4, 5, 6, 0, time.FixedZone("", -5*3600-1800))
		if m.UID != uid || m.SeqNum != uint32(uid%1000+1) || !reflect.DeepEqual(m.Flags, []imap.Flag{imap.FlagSeen, "$Work"}) ||
			!m.InternalDate.Equal(when) || m.RFC822Size != int64(len(interopBody)) ||
			len(m.BodySection) != 1 || string(m.BodySection[0].Bytes) != interopBody {
			t.Errorf("message %d: %+v", i, m)
		}
	}
}
