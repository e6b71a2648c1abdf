package imapwire

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// SupportedCharsets is what a server puts in "[BADCHARSET (...)]" when
// Search fails with ErrBadCharset.
const SupportedCharsets = "UTF-8 US-ASCII"

// isKeyChar reports a byte of a search key name or return option: an
// ATOM-CHAR that is not a sequence-set or list delimiter.
func isKeyChar(c byte) bool { return isAtomChar(c) }

// Search reads the arguments of SEARCH after the command name (the SP that
// follows it included), through the end of line exclusive (RFC 3501
// §6.4.4 and §9 "search", RFC 9051 §6.4.4 and §9, RFC 4731 ESEARCH, RFC
// 5182 SEARCHRES, RFC 7162 MODSEQ):
//
//	[SP "RETURN" SP "(" [opt *(SP opt)] ")"] SP ["CHARSET" SP astring SP]
//	search-key *(SP search-key)
//
// Key names, return options and the charset are case-insensitive. The
// result's Key is always an AND node whose Sub are the keys given; a
// parenthesised group is an AND node too; "RETURN ()" sets All (RFC 4731
// §3.1). Keys accepted: every RFC 3501 key (NEW, OLD and RECENT included,
// which RFC 9051 removed; the server decides), a sequence set (also "$"),
// "UID" seq-set, "MODSEQ" [entry-name entry-type] mod-sequence-valzer.
// LARGER and SMALLER take a number64. String arguments are astrings
// (literals included, bounded by MaxLiteral) and must be valid UTF-8.
// The CHARSET must be US-ASCII or UTF-8: another one is a *SyntaxError
// wrapping ErrBadCharset. Nesting of (), NOT and OR is bounded by
// MaxSearchDepth.
func (d *Decoder) Search() (*SearchCommand, error) {
	cmd := &SearchCommand{}
	if err := d.SP(); err != nil {
		return nil, err
	}
	name, err := d.optionalKeyName()
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(name, "RETURN") {
		ret, err := d.searchReturn()
		if err != nil {
			return nil, err
		}
		cmd.Return = ret
		if err := d.SP(); err != nil {
			return nil, err
		}
		if name, err = d.optionalKeyName(); err != nil {
			return nil, err
		}
	}
	if strings.EqualFold(name, "CHARSET") {
		if err := d.SP(); err != nil {
			return nil, err
		}
		cs, err := d.AString()
		if err != nil {
			return nil, err
		}
		switch {
		case strings.EqualFold(cs, "UTF-8"):
			cmd.Charset = "UTF-8"
		case strings.EqualFold(cs, "US-ASCII"):
			cmd.Charset = "US-ASCII"
		default:
			return nil, &SyntaxError{Msg: fmt.Sprintf("unsupported charset %+q", cs), Err: ErrBadCharset}
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
		name = ""
	}
	top := &SearchKey{Op: SearchAnd}
	for {
		var key *SearchKey
		if name != "" {
			key, err = d.searchNamed(name, 1)
			name = ""
		} else {
			key, err = d.searchKey(1)
		}
		if err != nil {
			return nil, err
		}
		top.Sub = append(top.Sub, key)
		c, err := d.peek()
		if err != nil {
			return nil, err
		}
		if c != ' ' {
			break
		}
		if _, err := d.readByte(); err != nil {
			return nil, err
		}
	}
	cmd.Key = top
	return cmd, nil
}

// optionalKeyName reads a key name when the next byte starts one (a
// letter), else returns "" and consumes nothing.
func (d *Decoder) optionalKeyName() (string, error) {
	c, err := d.peek()
	if err != nil {
		return "", err
	}
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return "", nil
	}
	return d.readWhile(isKeyChar, "search key")
}

// searchReturn reads "SP (" [opt *(SP opt)] ")" after RETURN.
func (d *Decoder) searchReturn() (*SearchReturn, error) {
	if err := d.SP(); err != nil {
		return nil, err
	}
	ret := &SearchReturn{}
	n := 0
	err := d.List(func() error {
		opt, err := d.readWhile(isKeyChar, "search return option")
		if err != nil {
			return err
		}
		n++
		switch strings.ToUpper(opt) {
		case "MIN":
			ret.Min = true
		case "MAX":
			ret.Max = true
		case "ALL":
			ret.All = true
		case "COUNT":
			ret.Count = true
		case "SAVE":
			ret.Save = true
		default:
			return synErr("unknown search return option %q", opt)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		ret.All = true
	}
	return ret, nil
}

// searchKey reads one search-key at nesting depth depth.
func (d *Decoder) searchKey(depth int) (*SearchKey, error) {
	if depth > d.maxDepth() {
		return nil, synErr("search program nested too deeply (more than %d levels)", d.maxDepth())
	}
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	switch {
	case c == '(':
		group := &SearchKey{Op: SearchAnd}
		err := d.List(func() error {
			k, err := d.searchKey(depth + 1)
			if err != nil {
				return err
			}
			group.Sub = append(group.Sub, k)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(group.Sub) == 0 {
			return nil, synErr("empty parenthesised search key")
		}
		return group, nil
	case isDigit(c) || c == '*' || c == '$':
		set, err := d.SeqSet()
		if err != nil {
			return nil, err
		}
		return &SearchKey{Op: SearchSeqSet, Set: set}, nil
	}
	name, err := d.readWhile(isKeyChar, "search key")
	if err != nil {
		return nil, err
	}
	return d.searchNamed(name, depth)
}

// searchString reads SP astring, which must be valid UTF-8.
func (d *Decoder) searchString() (string, error) {
	if err := d.SP(); err != nil {
		return "", err
	}
	s, err := d.AString()
	if err != nil {
		return "", err
	}
	if !utf8.ValidString(s) {
		return "", synErr("search string is not valid UTF-8")
	}
	return s, nil
}

// searchNamed reads the arguments of the key called name.
func (d *Decoder) searchNamed(name string, depth int) (*SearchKey, error) {
	op := SearchOp(strings.ToUpper(name))
	key := &SearchKey{Op: op}
	var err error
	switch op {
	case SearchAll, SearchAnswered, SearchDeleted, SearchDraft, SearchFlagged,
		SearchNew, SearchOld, SearchRecent, SearchSeen, SearchUnanswered,
		SearchUndeleted, SearchUndraft, SearchUnflagged, SearchUnseen:
		return key, nil
	case SearchKeyword, SearchUnkeyword:
		if err = d.SP(); err == nil {
			key.Value, err = d.readWhile(isAtomChar, "keyword")
		}
	case SearchBefore, SearchOn, SearchSince, SearchSentBefore, SearchSentOn, SearchSentSince:
		if err = d.SP(); err == nil {
			key.Date, err = d.Date()
		}
	case SearchLarger, SearchSmaller:
		if err = d.SP(); err == nil {
			var n uint64
			n, err = d.Number64()
			key.Number = int64(n)
		}
	case SearchHeader:
		if key.Field, err = d.searchString(); err == nil {
			key.Value, err = d.searchString()
		}
	case SearchBcc, SearchCc, SearchFrom, SearchTo, SearchSubject, SearchBody, SearchText:
		key.Value, err = d.searchString()
	case SearchUID:
		if err = d.SP(); err == nil {
			key.Set, err = d.SeqSet()
		}
	case SearchNot:
		if err = d.SP(); err == nil {
			var k *SearchKey
			if k, err = d.searchKey(depth + 1); err == nil {
				key.Sub = []*SearchKey{k}
			}
		}
	case SearchOr:
		for i := 0; i < 2 && err == nil; i++ {
			if err = d.SP(); err == nil {
				var k *SearchKey
				if k, err = d.searchKey(depth + 1); err == nil {
					key.Sub = append(key.Sub, k)
				}
			}
		}
	case SearchModSeq:
		err = d.searchModSeq(key)
	default:
		return nil, synErr("unknown search key %q", name)
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}

// searchModSeq reads the arguments of MODSEQ (RFC 7162 §3.1.5):
// [SP entry-name SP entry-type-req] SP mod-sequence-valzer. The entry
// name and type are checked and ignored.
func (d *Decoder) searchModSeq(key *SearchKey) error {
	if err := d.SP(); err != nil {
		return err
	}
	c, err := d.peek()
	if err != nil {
		return err
	}
	if c == '"' {
		entry, err := d.String()
		if err != nil {
			return err
		}
		if !strings.HasPrefix(strings.ToLower(entry), "/flags/") || len(entry) == len("/flags/") {
			return synErr("invalid MODSEQ entry name %+q", entry)
		}
		if err := d.SP(); err != nil {
			return err
		}
		typ, err := d.Atom()
		if err != nil {
			return err
		}
		switch strings.ToLower(typ) {
		case "priv", "shared", "all":
		default:
			return synErr("invalid MODSEQ entry type %q (want priv, shared or all)", typ)
		}
		if err := d.SP(); err != nil {
			return err
		}
	}
	n, err := d.Number64()
	if err != nil {
		return err
	}
	key.Number = int64(n)
	return nil
}
