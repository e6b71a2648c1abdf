// Package userdb defines how accounts are found and authenticated: a
// PassDB checks a password, a UserDB looks up an address, and a Manager
// (optional, by type assertion) adds, changes and removes users. The
// embedded backend (userdb/embedded, SQLite) is the default; later
// backends: Dovecot passwd-file, PostgreSQL, MySQL, Redis, DynamoDB.
//
// Addresses are made canonical by an AddressPolicy before any lookup
// (TOML [auth] local_part_case, normalize): the domain is always
// lower-cased; by default (the zero AddressPolicy, also the package func
// Normalize) the local part is lower-cased too (the safe default, as
// Dovecot's auth_username_format=%Lu) and the address is put in Unicode
// NFC. A recipient delimiter suffix ("user+tag@domain") is removed by
// LookupRecipient callers. Every backend takes its policy in its options;
// the servers (IMAP LOGIN, LMTP RCPT) must be given the same one.
package userdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Errors. Test with errors.Is.
var (
	// ErrNotFound: no user with that address. UserDB.Lookup only; PassDB
	// reports unknown users as ErrAuthFailed so that they look the same as
	// a wrong password.
	ErrNotFound = errors.New("userdb: no such user")
	// ErrAuthFailed: unknown user, wrong password or disabled user.
	ErrAuthFailed = errors.New("userdb: authentication failed")
	// ErrExists: Manager.AddUser of an existing address.
	ErrExists = errors.New("userdb: user already exists")
	// ErrUnavailable: the backend could not be reached. Temporary: IMAP
	// answers NO [UNAVAILABLE], LMTP 451 4.3.0.
	ErrUnavailable = errors.New("userdb: backend unavailable")
	// ErrReadOnly: the backend cannot be written (Manager not supported).
	ErrReadOnly = errors.New("userdb: backend is read-only")
	// ErrInvalidAddress: Manager.AddUser of an address that is not
	// local@domain (see ValidateAddress).
	ErrInvalidAddress = errors.New("userdb: invalid address")
	// ErrBadPolicy: ParseAddressPolicy of an unknown setting.
	ErrBadPolicy = errors.New("userdb: bad address policy")
)

// User is what a backend knows of an account.
type User struct {
	Address    string // normalised login/delivery address
	Account    string // canonical account name, the mail store's key
	QuotaBytes int64  // 0: no limit
	Disabled   bool
}

// PassDB authenticates users.
type PassDB interface {
	// Authenticate checks address and password and returns the user.
	// ErrAuthFailed for unknown user, wrong password or disabled user;
	// ErrUnavailable when the backend is down. Implementations compare
	// in constant time and never log the password.
	Authenticate(ctx context.Context, address, password string) (*User, error)
}

// UserDB looks users up by address (for delivery).
type UserDB interface {
	// Lookup returns the user for an address. ErrNotFound if none.
	Lookup(ctx context.Context, address string) (*User, error)
}

// Manager is implemented by backends that can be written.
// Addresses are normalised with Normalize first.
type Manager interface {
	// AddUser creates an enabled user with no quota. ErrExists if the
	// normalised address is taken, ErrInvalidAddress if it fails
	// ValidateAddress.
	AddUser(ctx context.Context, address, password string) error
	// SetPassword replaces the password. ErrNotFound if no such user.
	SetPassword(ctx context.Context, address, password string) error
	// DeleteUser removes the user (not its mail). ErrNotFound if none.
	DeleteUser(ctx context.Context, address string) error
	// ListUsers returns every user, sorted by address.
	ListUsers(ctx context.Context) ([]User, error)
}

// Normalize returns the canonical form of an address under the default
// policy (AddressPolicy{}.Normalize): surrounding spaces trimmed,
// lower-cased, and in Unicode normalization form NFC (so
// "e\u0301mile@example.org", typed with a combining accent, is the same
// account as "émile@example.org"). It does not check the syntax.
func Normalize(address string) string {
	return norm.NFC.String(strings.ToLower(strings.TrimSpace(address)))
}

// AddressPolicy says how addresses are made canonical (issue 5 item 4).
// The zero value is the default: local part lower-cased, Unicode NFC.
type AddressPolicy struct {
	// KeepLocalCase compares the local part as typed (TOML
	// auth.local_part_case = "keep"): "Alice@example.org" and
	// "alice@example.org" are two accounts. The domain is lower-cased
	// either way (RFC 5321 §2.4: domain names are case-insensitive; the
	// local part MAY be case-sensitive). IDNA (xn--) forms are not mapped.
	KeepLocalCase bool
	// NoNFC turns Unicode normalization off (auth.normalize = "none"): an
	// address typed with combining characters (NFD) is then a different
	// account from its precomposed (NFC) form.
	NoNFC bool
}

// Config values of ParseAddressPolicy.
const (
	LocalPartLower = "lower"
	LocalPartKeep  = "keep"
	NormalizeNFC   = "nfc"
	NormalizeNone  = "none"
)

// ParseAddressPolicy makes a policy of the TOML settings
// auth.local_part_case ("lower" or "keep"; "" is "lower") and
// auth.normalize ("nfc" or "none"; "" is "nfc"). Anything else wraps
// ErrBadPolicy.
func ParseAddressPolicy(localPartCase, normalize string) (AddressPolicy, error) {
	var p AddressPolicy
	switch localPartCase {
	case "", LocalPartLower:
	case LocalPartKeep:
		p.KeepLocalCase = true
	default:
		return p, fmt.Errorf("%w: local_part_case %q: want %s or %s", ErrBadPolicy, localPartCase, LocalPartLower, LocalPartKeep)
	}
	switch normalize {
	case "", NormalizeNFC:
	case NormalizeNone:
		p.NoNFC = true
	default:
		return p, fmt.Errorf("%w: normalize %q: want %s or %s", ErrBadPolicy, normalize, NormalizeNFC, NormalizeNone)
	}
	return p, nil
}

// String gives the policy as its TOML settings, e.g.
// "local_part_case=lower normalize=nfc".
func (p AddressPolicy) String() string {
	c, n := LocalPartLower, NormalizeNFC
	if p.KeepLocalCase {
		c = LocalPartKeep
	}
	if p.NoNFC {
		n = NormalizeNone
	}
	return "local_part_case=" + c + " normalize=" + n
}

// Normalize returns the canonical form of address under p: surrounding
// spaces trimmed, the domain (after the last '@') lower-cased, the local
// part lower-cased unless KeepLocalCase, the whole in NFC unless NoNFC.
// It does not check the syntax. The zero policy gives exactly the
// package func Normalize.
func (p AddressPolicy) Normalize(address string) string {
	if p == (AddressPolicy{}) {
		return Normalize(address)
	}
	address = strings.TrimSpace(address)
	if !p.KeepLocalCase {
		address = strings.ToLower(address)
	} else if at := strings.LastIndexByte(address, '@'); at >= 0 {
		address = address[:at] + strings.ToLower(address[at:])
	}
	if !p.NoNFC {
		address = norm.NFC.String(address)
	}
	return address
}

type consistentKey struct{}

// WithConsistentRead returns a context under which reads (Lookup,
// Authenticate) must see every write acknowledged before they started:
// the hook for the cluster's consistency windows (a server that hears on
// the bus that a user changed reads that user this way until the window
// ends). What each backend does with it:
//
//   - dynamodb: GetItem with ConsistentRead=true (otherwise eventually
//     consistent), counted in its Stats.
//   - sqldb: nothing to do: every read goes to the configured URL, the
//     primary (there is no read-replica support yet).
//   - embedded, passwd-file, redis: one store, always consistent.
//   - authcache: the call skips the cache (asks the backend with this
//     context and stores the fresh answer).
func WithConsistentRead(ctx context.Context) context.Context {
	return context.WithValue(ctx, consistentKey{}, true)
}

// ConsistentRead reports whether ctx carries WithConsistentRead.
func ConsistentRead(ctx context.Context) bool {
	return ctx.Value(consistentKey{}) != nil
}

// StripDelimiter removes a recipient-delimiter suffix from the local part:
// StripDelimiter("user+tag@example.org", "+") = "user@example.org".
// An empty delim returns address unchanged.
func StripDelimiter(address, delim string) string {
	if delim == "" {
		return address
	}
	at := strings.LastIndexByte(address, '@')
	local, domain := address, ""
	if at >= 0 {
		local, domain = address[:at], address[at:]
	}
	if i := strings.Index(local, delim); i > 0 {
		local = local[:i]
	}
	return local + domain
}

// ValidateAddress checks that a normalised address is a plain
// local@domain (RFC 5321 §4.1.2 Mailbox, dot-atom local part only, with
// UTF-8 allowed as in RFC 6531): local part 1..64 bytes of atext and
// non-adjacent, non-edge dots; domain 1..253 bytes of dot-separated labels
// of letters, digits, '-' and UTF-8, no address literals. No spaces or
// control characters anywhere. The error wraps ErrInvalidAddress.
func ValidateAddress(address string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %q: %s", ErrInvalidAddress, address, why)
	}
	if !utf8.ValidString(address) {
		return bad("not UTF-8")
	}
	if len(address) > 254 {
		return bad("longer than 254 bytes")
	}
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return bad("no @")
	}
	local, domain := address[:at], address[at+1:]
	if local == "" || len(local) > 64 {
		return bad("local part must be 1..64 bytes")
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return bad("misplaced dot in local part")
	}
	for _, r := range local {
		if r < 0x80 && !isAtext(byte(r)) && r != '.' || r >= 0x80 && r <= 0x9f || r == utf8.RuneError || r == 0x2028 || r == 0x2029 {
			return bad(fmt.Sprintf("character %q in local part", r))
		}
	}
	if domain == "" || len(domain) > 253 {
		return bad("domain must be 1..253 bytes")
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad(fmt.Sprintf("bad domain label %q", label))
		}
		for _, r := range label {
			if r < 0x80 && !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return bad(fmt.Sprintf("character %q in domain", r))
			}
			if r == utf8.RuneError || r >= 0x80 && r <= 0x9f || r == 0x2028 || r == 0x2029 {
				return bad(fmt.Sprintf("character %q in domain", r))
			}
		}
	}
	return nil
}

// isAtext reports whether c is RFC 5322 atext (§3.2.3).
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// LookupRecipient resolves a delivery address: the normalised address
// first, then (if delim is not empty and the address has a suffix) the
// address with the recipient-delimiter suffix removed, as Postfix does
// for "user+tag@domain". ErrNotFound if neither exists.
func LookupRecipient(ctx context.Context, db UserDB, address, delim string) (*User, error) {
	return AddressPolicy{}.LookupRecipient(ctx, db, address, delim)
}

// LookupRecipient is the package func LookupRecipient with addresses
// normalised under p (db must use the same policy).
func (p AddressPolicy) LookupRecipient(ctx context.Context, db UserDB, address, delim string) (*User, error) {
	address = p.Normalize(address)
	u, err := db.Lookup(ctx, address)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return u, err
	}
	if base := StripDelimiter(address, delim); base != address {
		return db.Lookup(ctx, base)
	}
	return nil, err
}

// PasswordChecker verifies a password against a stored hash
// (password.Checker): false for a wrong password or an empty hash (which
// costs the same work), an error for a hash it cannot read or ctx.Err().
type PasswordChecker interface {
	Check(ctx context.Context, hash, pw string) (bool, error)
}

// AuthenticateStored is PassDB.Authenticate for a backend that stores
// password hashes: get reads the user and its hash (ErrNotFound for an
// unknown address, which is then checked against no hash so that it costs
// what a wrong password costs). Unknown user, wrong password, a missing or
// unreadable hash and a disabled user are all ErrAuthFailed; get's other
// errors (ErrUnavailable) and a context error are returned as they are.
// address must be normalised already.
func AuthenticateStored(ctx context.Context, c PasswordChecker, address, pw string,
	get func(ctx context.Context, address string) (*User, string, error)) (*User, error) {
	u, hash, err := get(ctx, address)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	ok, err := c.Check(ctx, hash, pw)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("userdb: authenticate %s: %w", address, ctxErr)
		}
		// An unreadable stored hash: nobody can log in; say why.
		return nil, fmt.Errorf("userdb: authenticate %s: %w: %w", address, ErrAuthFailed, err)
	}
	if !ok || u.Disabled {
		return nil, fmt.Errorf("userdb: authenticate %s: %w", address, ErrAuthFailed)
	}
	return u, nil
}
