// Package userdb defines how accounts are found and authenticated: a
// PassDB checks a password, a UserDB looks up an address, and a Manager
// (optional, by type assertion) adds, changes and removes users. The
// embedded backend (userdb/embedded, SQLite) is the default; later
// backends: Dovecot passwd-file, PostgreSQL, MySQL, Redis, DynamoDB.
//
// Addresses are normalised by Normalize before any lookup: the domain is
// lower-cased, the local part lower-cased too (the safe default, as
// Dovecot's auth_username_format=%Lu), and a recipient delimiter suffix
// ("user+tag@domain") is removed by LookupRecipient callers.
package userdb

import (
	"context"
	"errors"
	"strings"
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
type Manager interface {
	AddUser(ctx context.Context, address, password string) error // ErrExists
	SetPassword(ctx context.Context, address, password string) error // ErrNotFound
	DeleteUser(ctx context.Context, address string) error // ErrNotFound
	ListUsers(ctx context.Context) ([]User, error)
}

// Normalize returns the canonical form of an address: surrounding spaces
// trimmed, lower-cased. It does not check the syntax.
func Normalize(address string) string {
	return strings.ToLower(strings.TrimSpace(address))
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
