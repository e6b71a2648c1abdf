package imapwire

import (
	"strconv"
	"strings"
)

// String formats the set as a client writes it: "1:3,7,9:*", or "$".
func (s SeqSet) String() string {
	if s.Saved {
		return "$"
	}
	var b []byte
	for i, r := range s.Ranges {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendSeqNum(b, r.Start)
		if r.Stop != r.Start {
			b = append(b, ':')
			b = appendSeqNum(b, r.Stop)
		}
	}
	return string(b)
}

func appendSeqNum(b []byte, n uint32) []byte {
	if n == 0 {
		return append(b, '*')
	}
	return strconv.AppendUint(b, uint64(n), 10)
}

// String formats a search program for logs and tests, one parenthesised
// node per key: AND as "(k1 k2 ...)", others as "(OP args)", e.g.
// ((OR (FROM "bob") (NOT ((SEEN) (SEQSET 1:4))))).
func (k *SearchKey) String() string {
	var b strings.Builder
	k.format(&b)
	return b.String()
}

func (k *SearchKey) format(b *strings.Builder) {
	b.WriteByte('(')
	if k.Op != SearchAnd {
		b.WriteString(string(k.Op))
	}
	switch k.Op {
	case SearchAnd, SearchOr, SearchNot:
		for i, s := range k.Sub {
			if i > 0 || k.Op != SearchAnd {
				b.WriteByte(' ')
			}
			s.format(b)
		}
	case SearchSeqSet, SearchUID:
		b.WriteByte(' ')
		b.WriteString(k.Set.String())
	case SearchKeyword, SearchUnkeyword:
		b.WriteByte(' ')
		b.WriteString(k.Value)
	case SearchHeader:
		b.WriteByte(' ')
		b.WriteString(strconv.Quote(k.Field))
		b.WriteByte(' ')
		b.WriteString(strconv.Quote(k.Value))
	case SearchBcc, SearchCc, SearchFrom, SearchTo, SearchSubject, SearchBody, SearchText:
		b.WriteByte(' ')
		b.WriteString(strconv.Quote(k.Value))
	case SearchBefore, SearchOn, SearchSince, SearchSentBefore, SearchSentOn, SearchSentSince:
		b.WriteByte(' ')
		b.WriteString(k.Date.Format("2-Jan-2006"))
	case SearchLarger, SearchSmaller, SearchModSeq:
		b.WriteByte(' ')
		b.WriteString(strconv.FormatInt(k.Number, 10))
	}
	b.WriteByte(')')
}
