package mailstore

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/bucketmail/bucketmail/internal/journal"
	"github.com/oklog/ulid/v2"
)

// MaxNameBytes is the longest mailbox name accepted, in UTF-8 bytes.
const MaxNameBytes = 1000

// normName validates a mailbox name and returns its stored form: one
// trailing "/" removed, a first segment equal to "INBOX" in any case
// written "INBOX". ErrBadName for an empty name, an empty segment,
// invalid UTF-8, control characters, or over MaxNameBytes.
func normName(name string) (string, error) {
	name = strings.TrimSuffix(name, "/")
	if name == "" || len(name) > MaxNameBytes || !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: %q", ErrBadName, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return "", fmt.Errorf("%w: %q", ErrBadName, name)
		}
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" {
			return "", fmt.Errorf("%w: %q: empty segment", ErrBadName, name)
		}
	}
	first, rest, found := strings.Cut(name, "/")
	if strings.EqualFold(first, "INBOX") {
		if found {
			return "INBOX/" + rest, nil
		}
		return "INBOX", nil
	}
	return name, nil
}

// parents returns the names of name's ancestors, outermost first.
func parents(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			out = append(out, name[:i])
		}
	}
	return out
}

// Blob keys (DESIGN §3): <hash>/<account>/msg/<ulid>, e.g.
//
//	3f2a/alice=40example.com/msg/01JDZ8Q2V3N6K4W5X7Y8Z9A0BC
//
// <hash> is the first 4 hex digits of SHA-256(account name), spreading
// accounts over 65536 prefixes (S3 partitions). <account> is the account
// name made a valid key segment: bytes [a-zA-Z0-9._+-] are kept, except a
// leading "."; every other byte (including "=") is written =XX (upper-case
// hex), so the mapping is reversible. A segment longer than 200 bytes is
// cut at 180 bytes (never inside an =XX) and ends in "==" plus 16 hex
// digits of SHA-256(account name) ("==" never occurs in an encoded name).
// <ulid> is a ULID: unique, and sorts by creation time.
func blobKey(account string, id ulid.ULID) string {
	return journal.AccountPrefix(account) + "msg/" + id.String()
}

// accountPrefix returns the key prefix of all of an account's objects.
func accountPrefix(account string) string { return journal.AccountPrefix(account) }

// metaValue makes v a blob metadata value (printable ASCII): bytes
// outside 0x20..0x7e and "%" become %XX; if the result is longer than
// max, it is cut (never inside a %XX) and ends in the marker "%..."
// (which an encoded value never contains).
func metaValue(v string, max int) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	s := b.String()
	if len(s) <= max {
		return s
	}
	cut := max - 4
	for cut > 0 && (s[cut-1] == '%' || (cut >= 2 && s[cut-2] == '%')) {
		cut--
	}
	return s[:cut] + "%..."
}
