package imapwire

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func and(keys ...*SearchKey) *SearchKey { return &SearchKey{Op: SearchAnd, Sub: keys} }
func op(o SearchOp) *SearchKey          { return &SearchKey{Op: o} }
func val(o SearchOp, v string) *SearchKey {
	return &SearchKey{Op: o, Value: v}
}
func date(o SearchOp, y int, m time.Month, d int) *SearchKey {
	return &SearchKey{Op: o, Date: time.Date(y, m, d, 0, 0, 0, 0, time.UTC)}
}
func seq(o SearchOp, rs ...SeqRange) *SearchKey { return &SearchKey{Op: o, Set: SeqSet{Ranges: rs}} }
func num(o SearchOp, n int64) *SearchKey        { return &SearchKey{Op: o, Number: n} }

func TestSearch(t *testing.T) {
	cmd := func(k ...*SearchKey) *SearchCommand { return &SearchCommand{Key: and(k...)} }
	runCases(t, []decodeCase{
		{in: " ALL", want: cmd(op(SearchAll))},
		{in: " all seen UnSeen", want: cmd(op(SearchAll), op(SearchSeen), op(SearchUnseen))},
		{in: " ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN",
			want: cmd(op(SearchAnswered), op(SearchDeleted), op(SearchDraft), op(SearchFlagged), op(SearchNew), op(SearchOld),
				op(SearchRecent), op(SearchSeen), op(SearchUnanswered), op(SearchUndeleted), op(SearchUndraft),
				op(SearchUnflagged), op(SearchUnseen))},
		{in: ` KEYWORD $Forwarded UNKEYWORD Junk`, want: cmd(val(SearchKeyword, "$Forwarded"), val(SearchUnkeyword, "Junk"))},
		{in: ` BEFORE 1-Feb-1994 ON "02-Mar-2000" SINCE 31-Dec-1999 SENTBEFORE 1-jan-2001 SENTON 2-Jan-2001 SENTSINCE 3-JAN-2001`,
			want: cmd(date(SearchBefore, 1994, 2, 1), date(SearchOn, 2000, 3, 2), date(SearchSince, 1999, 12, 31),
				date(SearchSentBefore, 2001, 1, 1), date(SearchSentOn, 2001, 1, 2), date(SearchSentSince, 2001, 1, 3))},
		{in: ` LARGER 1000 SMALLER 9223372036854775807`, want: cmd(num(SearchLarger, 1000), num(SearchSmaller, 9223372036854775807))},
		{in: ` HEADER Message-ID "<a@b>" HEADER X-Spam ""`,
			want: cmd(&SearchKey{Op: SearchHeader, Field: "Message-ID", Value: "<a@b>"}, &SearchKey{Op: SearchHeader, Field: "X-Spam"})},
		{in: ` BCC a CC "b c" FROM {5}` + "\r\nd\r\nef" + ` TO x SUBJECT y BODY z TEXT w`,
			want: cmd(val(SearchBcc, "a"), val(SearchCc, "b c"), val(SearchFrom, "d\r\nef"), val(SearchTo, "x"),
				val(SearchSubject, "y"), val(SearchBody, "z"), val(SearchText, "w"))},
		{in: ` 1:3,5 UID 7:* * $`, want: cmd(seq(SearchSeqSet, SeqRange{1, 3}, SeqRange{5, 5}), seq(SearchUID, SeqRange{7, 0}),
			seq(SearchSeqSet, SeqRange{0, 0}), &SearchKey{Op: SearchSeqSet, Set: SeqSet{Saved: true}})},
		{in: ` UID $`, want: cmd(&SearchKey{Op: SearchUID, Set: SeqSet{Saved: true}})},
		{in: ` NOT SEEN`, want: cmd(&SearchKey{Op: SearchNot, Sub: []*SearchKey{op(SearchSeen)}})},
		{in: ` OR SEEN (FLAGGED NOT DRAFT)`, want: cmd(&SearchKey{Op: SearchOr, Sub: []*SearchKey{op(SearchSeen),
			and(op(SearchFlagged), &SearchKey{Op: SearchNot, Sub: []*SearchKey{op(SearchDraft)}})}})},
		{in: ` OR OR 1 2 3`, want: cmd(&SearchKey{Op: SearchOr, Sub: []*SearchKey{
			{Op: SearchOr, Sub: []*SearchKey{seq(SearchSeqSet, SeqRange{1, 1}), seq(SearchSeqSet, SeqRange{2, 2})}},
			seq(SearchSeqSet, SeqRange{3, 3})}})},
		{in: ` ((SEEN))`, want: cmd(and(and(op(SearchSeen))))},
		{in: ` MODSEQ 0`, want: cmd(num(SearchModSeq, 0))},
		{in: ` MODSEQ "/flags/\\draft" all 620162338`, want: cmd(num(SearchModSeq, 620162338))},
		{in: ` CHARSET utf-8 SUBJECT "x"`, want: &SearchCommand{Charset: "UTF-8", Key: and(val(SearchSubject, "x"))}},
		{in: ` CHARSET US-ASCII ALL`, want: &SearchCommand{Charset: "US-ASCII", Key: and(op(SearchAll))}},
		{in: ` CHARSET "UTF-8" SUBJECT {4}` + "\r\n\xc3\xa9t\xc3", err: "search string is not valid UTF-8"},
		{in: ` CHARSET UTF-8 SUBJECT {5}` + "\r\n\xc3\xa9t\xc3\xa9", want: &SearchCommand{Charset: "UTF-8", Key: and(val(SearchSubject, "été"))}},
		{in: ` RETURN (MIN MAX) UNSEEN`, want: &SearchCommand{Return: &SearchReturn{Min: true, Max: true}, Key: and(op(SearchUnseen))}},
		{in: ` return (all count save) CHARSET UTF-8 ALL`, want: &SearchCommand{Return: &SearchReturn{All: true, Count: true, Save: true},
			Charset: "UTF-8", Key: and(op(SearchAll))}},
		{in: ` RETURN () ALL`, want: &SearchCommand{Return: &SearchReturn{All: true}, Key: and(op(SearchAll))}},
		{in: ` ALL)`, want: cmd(op(SearchAll)), rest: ")"},

		{in: ` CHARSET ISO-8859-1 ALL`, err: `unsupported charset "ISO-8859-1"`},
		{in: ` RETURN (FOO) ALL`, err: `unknown search return option "FOO"`},
		{in: ` RETURN MIN ALL`, err: `expected (, found "M"`},
		{in: ` RETURN (MIN)`, err: `expected SP, found end of line`},
		{in: ` CHARSET UTF-8`, err: `expected SP, found end of line`},
		{in: ` FOO`, err: `unknown search key "FOO"`},
		{in: ``, err: `expected SP, found end of line`},
		{in: ` `, err: `expected search key, found end of line`},
		{in: ` ALL `, err: `expected search key, found end of line`},
		{in: ` ()`, err: `empty parenthesised search key`},
		{in: ` (ALL`, err: `expected SP or ) in list, found end of line`},
		{in: ` NOT`, err: `expected SP, found end of line`},
		{in: ` OR SEEN`, err: `expected SP, found end of line`},
		{in: ` BEFORE 1-Feb`, err: `invalid date "1-Feb" (want dd-Mon-yyyy)`},
		{in: ` LARGER x`, err: `expected number, found "x"`},
		{in: ` LARGER 9223372036854775808`, err: `number too large (maximum 9223372036854775807)`},
		{in: ` KEYWORD \Seen`, err: `expected keyword, found "\\"`},
		{in: ` HEADER Subject`, err: `expected SP, found end of line`},
		{in: ` SUBJECT "é"`, err: `8-bit character in quoted string (send it as a literal, or ENABLE UTF8=ACCEPT once logged in)`},
		{in: ` UID x`, err: `expected sequence number or *, found "x"`},
		{in: ` 0`, err: `sequence number 0 is not allowed`},
		{in: ` MODSEQ "/flags/\\draft" any 1`, err: `invalid MODSEQ entry type "any" (want priv, shared or all)`},
		{in: ` MODSEQ "/other" all 1`, err: `invalid MODSEQ entry name "/other"`},
		{in: ` MODSEQ 9223372036854775808`, err: `number too large (maximum 9223372036854775807)`},
		{in: " " + strings.Repeat("(", 40) + "ALL" + strings.Repeat(")", 40), err: "search program nested too deeply (more than 32 levels)"},
		{in: " " + strings.Repeat("NOT ", 40) + "ALL", err: "search program nested too deeply (more than 32 levels)"},
		{in: " " + strings.Repeat("(", 31) + "ALL" + strings.Repeat(")", 31), want: cmd(nest(31))},
	}, (*Decoder).Search)
}

func nest(n int) *SearchKey {
	k := op(SearchAll)
	for i := 0; i < n; i++ {
		k = and(k)
	}
	return k
}

func TestSearchBadCharset(t *testing.T) {
	d, _ := newTestDecoder(" CHARSET KOI8-R SUBJECT {4}\r\n")
	_, err := d.Search()
	if !errors.Is(err, ErrBadCharset) {
		t.Fatalf("err = %v, want ErrBadCharset", err)
	}
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("err = %T, want *SyntaxError", err)
	}
}

func TestSearchUTF8Quoted(t *testing.T) {
	d, _ := newTestDecoder(" SUBJECT \"été\"\r\n")
	d.UTF8 = true
	c, err := d.Search()
	if err != nil || c.Key.Sub[0].Value != "été" {
		t.Fatalf("got %+v, %v", c, err)
	}
}
