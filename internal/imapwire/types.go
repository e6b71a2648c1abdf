// The types in this file are the contract between imapwire and
// imapserver. Add fields and constants freely; do not change the meaning
// of existing ones.

package imapwire

import "time"

// SeqRange is one element of a sequence set. 0 stands for "*" (the
// largest number in use). Start may be greater than Stop as written by the
// client; Normalize orders them.
type SeqRange struct {
	Start, Stop uint32
}

// SeqSet is an IMAP sequence-set (RFC 3501 §9 "sequence-set"), either of
// message sequence numbers or of UIDs. Saved is true for "$" (RFC 5182
// SEARCHRES), in which case the ranges are empty.
type SeqSet struct {
	Ranges []SeqRange
	Saved  bool
}

// SearchOp names a search key (RFC 3501 §6.4.4, RFC 9051 §6.4.4).
type SearchOp string

// Search keys. Keys that carry an argument store it in the field named in
// the comment.
const (
	SearchAll        SearchOp = "ALL"
	SearchAnd        SearchOp = "AND"    // Sub: all must match (a parenthesised list, or the top level)
	SearchOr         SearchOp = "OR"     // Sub[0] or Sub[1]
	SearchNot        SearchOp = "NOT"    // Sub[0]
	SearchSeqSet     SearchOp = "SEQSET" // Set (message sequence numbers)
	SearchUID        SearchOp = "UID"    // Set
	SearchAnswered   SearchOp = "ANSWERED"
	SearchDeleted    SearchOp = "DELETED"
	SearchDraft      SearchOp = "DRAFT"
	SearchFlagged    SearchOp = "FLAGGED"
	SearchNew        SearchOp = "NEW"
	SearchOld        SearchOp = "OLD"
	SearchRecent     SearchOp = "RECENT"
	SearchSeen       SearchOp = "SEEN"
	SearchUnanswered SearchOp = "UNANSWERED"
	SearchUndeleted  SearchOp = "UNDELETED"
	SearchUndraft    SearchOp = "UNDRAFT"
	SearchUnflagged  SearchOp = "UNFLAGGED"
	SearchUnseen     SearchOp = "UNSEEN"
	SearchKeyword    SearchOp = "KEYWORD"   // Value (flag keyword)
	SearchUnkeyword  SearchOp = "UNKEYWORD" // Value
	SearchBefore     SearchOp = "BEFORE"    // Date (INTERNALDATE, date only)
	SearchOn         SearchOp = "ON"        // Date
	SearchSince      SearchOp = "SINCE"     // Date
	SearchSentBefore SearchOp = "SENTBEFORE"
	SearchSentOn     SearchOp = "SENTON"
	SearchSentSince  SearchOp = "SENTSINCE"
	SearchLarger     SearchOp = "LARGER"  // Number
	SearchSmaller    SearchOp = "SMALLER" // Number
	SearchHeader     SearchOp = "HEADER"  // Field, Value ("" matches any message with the field)
	SearchBcc        SearchOp = "BCC"     // Value
	SearchCc         SearchOp = "CC"
	SearchFrom       SearchOp = "FROM"
	SearchTo         SearchOp = "TO"
	SearchSubject    SearchOp = "SUBJECT"
	SearchBody       SearchOp = "BODY"
	SearchText       SearchOp = "TEXT"
	SearchModSeq     SearchOp = "MODSEQ" // Number (RFC 7162; entry name/type ignored)
)

// SearchKey is a node of a search program.
type SearchKey struct {
	Op     SearchOp
	Sub    []*SearchKey
	Set    SeqSet
	Field  string    // HEADER field name
	Value  string    // string argument, already decoded from the CHARSET to UTF-8
	Date   time.Time // date argument (midnight UTC of the given day)
	Number int64     // LARGER, SMALLER, MODSEQ
}

// SearchReturn is an ESEARCH RETURN option set (RFC 4731, RFC 9051 §6.4.4).
type SearchReturn struct {
	Min, Max, All, Count, Save bool
}

// SearchCommand is the parsed argument of SEARCH / UID SEARCH.
type SearchCommand struct {
	Return  *SearchReturn // nil when no RETURN was given (plain SEARCH response)
	Charset string        // "" when absent
	Key     *SearchKey    // top level AND of the keys given
}

// SectionSpec is the part of a section after the part path.
type SectionSpec string

// Section specifiers (RFC 3501 §6.4.5).
const (
	SpecNone            SectionSpec = ""
	SpecHeader          SectionSpec = "HEADER"
	SpecHeaderFields    SectionSpec = "HEADER.FIELDS"
	SpecHeaderNotFields SectionSpec = "HEADER.FIELDS.NOT"
	SpecText            SectionSpec = "TEXT"
	SpecMIME            SectionSpec = "MIME"
)

// Section is the bracketed part of BODY[...] / BINARY[...].
type Section struct {
	Path      []int // part numbers, e.g. 1.2 → {1,2}; empty for the whole message
	Specifier SectionSpec
	Fields    []string // for HEADER.FIELDS(.NOT), as the client wrote them
}

// Partial is <offset.count> (count 0 when the client sent none, which only
// the response label form "<offset>" uses).
type Partial struct {
	Offset, Count uint32
}

// FetchAttr names a fetch data item.
type FetchAttr string

// Fetch data items (RFC 3501 §6.4.5, RFC 9051 §6.4.5, RFC 3516, RFC 7162).
const (
	FetchUID           FetchAttr = "UID"
	FetchFlags         FetchAttr = "FLAGS"
	FetchInternalDate  FetchAttr = "INTERNALDATE"
	FetchRFC822Size    FetchAttr = "RFC822.SIZE"
	FetchEnvelope      FetchAttr = "ENVELOPE"
	FetchBody          FetchAttr = "BODY" // without section: non-extensible BODYSTRUCTURE
	FetchBodyStructure FetchAttr = "BODYSTRUCTURE"
	FetchBodySection   FetchAttr = "BODY[]"        // BODY[section]<partial> and BODY.PEEK[...]
	FetchBinary        FetchAttr = "BINARY[]"      // BINARY[section]<partial> and BINARY.PEEK[...]
	FetchBinarySize    FetchAttr = "BINARY.SIZE[]" // BINARY.SIZE[section]
	FetchRFC822        FetchAttr = "RFC822"        // = BODY[], sets \Seen
	FetchRFC822Header  FetchAttr = "RFC822.HEADER" // = BODY.PEEK[HEADER]
	FetchRFC822Text    FetchAttr = "RFC822.TEXT"   // = BODY[TEXT], sets \Seen
	FetchModSeq        FetchAttr = "MODSEQ"
)

// FetchItem is one requested fetch data item. The macros ALL, FAST and
// FULL are expanded by the decoder.
type FetchItem struct {
	Attr    FetchAttr
	Section Section  // for BODY[], BINARY[], BINARY.SIZE[]
	Peek    bool     // BODY.PEEK / BINARY.PEEK
	Partial *Partial // nil when absent
}

// StoreOp is the flag operation of STORE.
type StoreOp int

// STORE operations (RFC 3501 §6.4.6).
const (
	StoreReplace StoreOp = iota // FLAGS
	StoreAdd                    // +FLAGS
	StoreRemove                 // -FLAGS
)

// StoreCommand is the parsed argument of STORE after the sequence set.
type StoreCommand struct {
	Op             StoreOp
	Silent         bool
	Flags          []string
	UnchangedSince uint64 // RFC 7162 (UNCHANGEDSINCE n); 0 when absent
	HasUnchanged   bool
}

// StatusItem names a STATUS data item (RFC 3501 §6.3.10, RFC 9051 §6.3.11,
// RFC 8438 SIZE, RFC 7162 HIGHESTMODSEQ).
type StatusItem string

// STATUS items.
const (
	StatusMessages      StatusItem = "MESSAGES"
	StatusRecent        StatusItem = "RECENT"
	StatusUIDNext       StatusItem = "UIDNEXT"
	StatusUIDValidity   StatusItem = "UIDVALIDITY"
	StatusUnseen        StatusItem = "UNSEEN"
	StatusDeleted       StatusItem = "DELETED"
	StatusSize          StatusItem = "SIZE"
	StatusHighestModSeq StatusItem = "HIGHESTMODSEQ"
)

// Normalize returns the range in ascending order with "*" (0) replaced by
// max, the largest number in use (RFC 9051 §9 seq-range: "2:4" and "4:2"
// are the same). With max 0 (an empty mailbox) "*" stays 0.
func (r SeqRange) Normalize(max uint32) (lo, hi uint32) {
	lo, hi = r.Start, r.Stop
	if lo == 0 {
		lo = max
	}
	if hi == 0 {
		hi = max
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	return lo, hi
}

// FetchModifiers are the optional modifiers after the FETCH items (RFC
// 7162 §3.1.4 CHANGEDSINCE, §3.2.6 VANISHED).
type FetchModifiers struct {
	ChangedSince    uint64
	HasChangedSince bool
	Vanished        bool
}

// SelectParams are the optional SELECT / EXAMINE parameters (RFC 7162
// §3.1.8 CONDSTORE, §3.2.5 QRESYNC).
type SelectParams struct {
	CondStore bool
	QResync   *QResyncParams // nil when absent
}

// QResyncParams is "QRESYNC (uidvalidity modseq [known-uids]
// [(known-sequence-set known-uid-set)])" (RFC 7162 §3.2.5). Absent sets
// are empty.
type QResyncParams struct {
	UIDValidity   uint32
	ModSeq        uint64
	KnownUIDs     SeqSet
	KnownSeqs     SeqSet // seq-match-data: message numbers ...
	KnownSeqsUIDs SeqSet // ... and their UIDs
}
