package mailstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// System flag bits of messages.flags (metadb schema).
const (
	bitSeen     = 1
	bitAnswered = 2
	bitFlagged  = 4
	bitDeleted  = 8
	bitDraft    = 16
)

var sysFlags = []struct {
	name string
	bit  int64
}{
	{FlagSeen, bitSeen}, {FlagAnswered, bitAnswered}, {FlagFlagged, bitFlagged},
	{FlagDeleted, bitDeleted}, {FlagDraft, bitDraft},
}

// parseFlags splits flags into system flag bits and keywords (deduplicated
// case-insensitively, first spelling kept). \Recent is ignored (never
// stored). An unknown \flag or a keyword that is not an IMAP atom
// (RFC 3501 §9 flag-keyword) gives ErrBadFlag.
func parseFlags(flags []string) (bits int64, keywords []string, err error) {
	seen := map[string]bool{}
outer:
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			if strings.EqualFold(f, FlagRecent) {
				continue
			}
			for _, sf := range sysFlags {
				if strings.EqualFold(f, sf.name) {
					bits |= sf.bit
					continue outer
				}
			}
			return 0, nil, fmt.Errorf("%w: %q", ErrBadFlag, f)
		}
		if !isAtom(f) {
			return 0, nil, fmt.Errorf("%w: %q", ErrBadFlag, f)
		}
		l := strings.ToLower(f)
		if !seen[l] {
			seen[l] = true
			keywords = append(keywords, f)
		}
	}
	return bits, keywords, nil
}

// isAtom reports whether s is a non-empty IMAP atom (RFC 3501 §9 atom:
// no SP, CTL, 8-bit, or any of `(){%*"\]`).
func isAtom(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// flagList renders bits and a stored keyword list as a sorted flag list.
func flagList(bits int64, keywords string) []string {
	out := make([]string, 0, 4)
	for _, sf := range sysFlags {
		if bits&sf.bit != 0 {
			out = append(out, sf.name)
		}
	}
	if keywords != "" {
		out = append(out, strings.Split(keywords, " ")...)
	}
	sort.Strings(out)
	return out
}

// canonKeywords maps keywords to the account's stored spelling and
// returns them sorted. With record, new keywords are recorded (as
// written); without, unknown ones are returned as written and not
// recorded (for a flag removal). Run inside a write transaction.
func canonKeywords(ctx context.Context, tx *sql.Tx, accountID int64, kws []string, record bool) ([]string, error) {
	if len(kws) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(kws))
	for _, k := range kws {
		l := strings.ToLower(k)
		if record {
			if _, err := tx.ExecContext(ctx, `INSERT INTO keywords (account_id, lname, name) VALUES (?, ?, ?)
				ON CONFLICT DO NOTHING`, accountID, l, k); err != nil {
				return nil, err
			}
		}
		name := k
		err := tx.QueryRowContext(ctx, `SELECT name FROM keywords WHERE account_id = ? AND lname = ?`, accountID, l).Scan(&name)
		if err != nil && !(errors.Is(err, sql.ErrNoRows) && !record) {
			return nil, err
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out, nil
}

// applyFlags computes a message's new flags under op. kw is the current
// space-separated keyword list; add holds canonical keywords.
func applyFlags(op StoreOp, bits int64, kw string, fbits int64, fkw []string) (int64, string) {
	cur := map[string]bool{}
	if kw != "" {
		for _, k := range strings.Split(kw, " ") {
			cur[k] = true
		}
	}
	switch op {
	case Replace:
		bits = fbits
		cur = map[string]bool{}
		for _, k := range fkw {
			cur[k] = true
		}
	case Add:
		bits |= fbits
		for _, k := range fkw {
			cur[k] = true
		}
	case Remove:
		bits &^= fbits
		for _, k := range fkw {
			delete(cur, k)
		}
	}
	list := make([]string, 0, len(cur))
	for k := range cur {
		list = append(list, k)
	}
	sort.Strings(list)
	return bits, strings.Join(list, " ")
}
