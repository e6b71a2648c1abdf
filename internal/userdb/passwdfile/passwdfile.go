// Package passwdfile is a read-only user database in Dovecot's passwd-file
// format (https://doc.dovecot.org/main/core/config/auth/databases/passwd_file.html),
// selected with --userdb passwd-file:/path/to/file.
//
// One user a line, colon-separated; every field after the password may be
// left out:
//
//	user:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields
//
// user is the login and delivery address (normalised with the DB's
// userdb.AddressPolicy, WithPolicy: by default the file's case does not
// matter); the password is
// any hash password.Verify knows (no {SCHEME} prefix means CRYPT, as in
// Dovecot); an empty password never matches. uid, gid, gecos, home and
// shell are ignored: mail lives in the blob store under the address.
// extra_fields are space-separated key[=value] items; understood:
//
//	userdb_quota_rule=*:bytes=N   quota N bytes (suffix k, M, G, T: 1024-based)
//	userdb_quota_rule=*:storage=N quota N KiB, or N with a suffix as above
//	                              (quota_rule= without userdb_ works too)
//	nologin                       login refused (passdb nologin); delivery still works
//	userdb_disabled=yes, disabled=yes   the user is disabled (yes/y/true/1)
//
// Other extra fields (allow_nets, reason, userdb_mail ...) are ignored.
// Blank lines and lines starting with '#' are skipped. When the same user
// appears twice the first line wins.
//
// The file is read at Open and again on a lookup when its modification
// time, size or inode changed (one stat per lookup, no background work),
// so edits and atomic replacements (write + rename) take effect at once.
// A file that cannot be read makes lookups fail with userdb.ErrUnavailable
// (until it is back); a line that cannot be parsed is skipped with a
// warning naming its line number (never its content: it holds a hash).
//
// DB does not implement userdb.Manager: the file belongs to the operator
// (doveadm pw, an editor, a configuration manager).
package passwdfile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
)

// Prefix is the --userdb prefix that selects this backend.
const Prefix = "passwd-file:"

// DB is a passwd-file user database. It implements userdb.PassDB and
// userdb.UserDB and is safe for concurrent use.
type DB struct {
	path   string
	log    *slog.Logger
	sem    chan struct{}
	policy userdb.AddressPolicy

	mu      sync.Mutex
	stamp   fileStamp
	entries map[string]entry
	loadErr error // last read error; lookups fail with it until a read succeeds
}

var (
	_ userdb.PassDB = (*DB)(nil)
	_ userdb.UserDB = (*DB)(nil)
)

type entry struct {
	hash string
	user userdb.User
}

type fileStamp struct {
	mtime time.Time
	size  int64
	ino   uint64
}

// Option configures Open and New.
type Option func(*DB)

// WithPolicy sets how addresses (the file's user names and the ones
// looked up) are made canonical; default the zero userdb.AddressPolicy.
func WithPolicy(p userdb.AddressPolicy) Option { return func(d *DB) { d.policy = p } }

// Open opens dsn "passwd-file:/path". The file must exist and be readable
// now (a configuration mistake should stop the server at start); later
// read failures are ErrUnavailable. logger may be nil.
func Open(ctx context.Context, dsn string, logger *slog.Logger, opts ...Option) (*DB, error) {
	path, ok := strings.CutPrefix(dsn, Prefix)
	if !ok || path == "" {
		return nil, fmt.Errorf("passwdfile: open %q: want %s/path/to/file", dsn, Prefix)
	}
	return New(ctx, path, logger, opts...)
}

// New opens the passwd-file at path (see Open).
func New(ctx context.Context, path string, logger *slog.Logger, opts ...Option) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &DB{path: path, log: logger, sem: make(chan struct{}, runtime.GOMAXPROCS(0))}
	for _, o := range opts {
		o(d)
	}
	d.mu.Lock()
	err := d.reloadLocked()
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Close releases nothing; it exists so DB fits the same shape as the
// networked backends.
func (d *DB) Close() error { return nil }

// get returns the entry for a normalised address, reloading the file first
// if it changed.
func (d *DB) get(address string) (entry, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.reloadLocked(); err != nil {
		return entry{}, false, err
	}
	e, ok := d.entries[address]
	return e, ok, nil
}

// reloadLocked re-reads the file if its stamp changed. d.mu is held.
func (d *DB) reloadLocked() error {
	fi, err := os.Stat(d.path)
	if err != nil {
		d.loadErr = fmt.Errorf("passwdfile: stat %s: %w: %w", d.path, userdb.ErrUnavailable, err)
		return d.loadErr
	}
	st := fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	if d.entries != nil && d.loadErr == nil && st == d.stamp {
		return nil
	}
	entries, err := d.read()
	if err != nil {
		d.loadErr = fmt.Errorf("passwdfile: read %s: %w: %w", d.path, userdb.ErrUnavailable, err)
		return d.loadErr
	}
	if d.entries != nil {
		d.log.Info("passwdfile: reloaded", "path", d.path, "users", len(entries))
	}
	d.entries, d.stamp, d.loadErr = entries, st, nil
	return nil
}

func (d *DB) read() (map[string]entry, error) {
	f, err := os.Open(d.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries := make(map[string]entry)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		e, err := parseLine(line, d.policy)
		if err != nil {
			d.log.Warn("passwdfile: line skipped", "path", d.path, "line", n, "err", err)
			continue
		}
		if _, dup := entries[e.user.Address]; dup {
			d.log.Warn("passwdfile: duplicate user, first line wins", "path", d.path, "line", n, "user", e.user.Address)
			continue
		}
		entries[e.user.Address] = e
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return entries, nil
}

// ErrSyntax: a passwd-file line that cannot be used.
var ErrSyntax = errors.New("passwdfile: bad line")

// ParseLine parses one passwd-file line into the user it describes and
// its stored password hash, the user name normalised with the default
// userdb.AddressPolicy. Errors wrap ErrSyntax and do not quote the line.
func ParseLine(line string) (entry, error) { return parseLine(line, userdb.AddressPolicy{}) }

func parseLine(line string, p userdb.AddressPolicy) (entry, error) {
	f := strings.SplitN(line, ":", 8)
	name := p.Normalize(f[0])
	if name == "" {
		return entry{}, fmt.Errorf("%w: empty user name", ErrSyntax)
	}
	e := entry{user: userdb.User{Address: name, Account: name}}
	if len(f) > 1 {
		e.hash = f[1]
	}
	if len(f) < 8 {
		return e, nil
	}
	for _, item := range strings.Fields(f[7]) {
		k, v, _ := strings.Cut(item, "=")
		switch strings.ToLower(k) {
		case "userdb_quota_rule", "quota_rule":
			q, err := ParseQuotaRule(v)
			if err != nil {
				return entry{}, fmt.Errorf("%w: user %s: %w", ErrSyntax, name, err)
			}
			if q >= 0 {
				e.user.QuotaBytes = q
			}
		case "nologin", "userdb_nologin":
			e.user.Disabled = true
		case "disabled", "userdb_disabled":
			switch strings.ToLower(v) {
			case "", "y", "yes", "true", "1":
				e.user.Disabled = true
			}
		}
	}
	return e, nil
}

// ParseQuotaRule parses the "*" rule of a Dovecot quota_rule value:
// "*:bytes=N" or "*:storage=N" (see the package doc) into bytes. Rules for
// other mailboxes and "messages=" limits return -1 (ignored).
func ParseQuotaRule(v string) (int64, error) {
	root, rest, ok := strings.Cut(v, ":")
	if !ok || root != "*" {
		return -1, nil
	}
	for _, kv := range strings.Split(rest, ":") {
		k, n, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "bytes":
			return parseSize(n, 1)
		case "storage":
			return parseSize(n, 1024)
		}
	}
	return -1, nil
}

// parseSize parses N[B|k|M|G|T] (1024-based); a bare number is in units of
// unit bytes. "0" and "unlimited" mean no limit.
func parseSize(s string, unit int64) (int64, error) {
	if strings.EqualFold(s, "unlimited") || strings.EqualFold(s, "none") {
		return 0, nil
	}
	mult := unit
	num := s
	if i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		num = s[:i]
		switch strings.ToUpper(strings.TrimSuffix(strings.ToUpper(s[i:]), "IB")) {
		case "B":
			mult = 1
		case "K", "KB":
			mult = 1 << 10
		case "M", "MB":
			mult = 1 << 20
		case "G", "GB":
			mult = 1 << 30
		case "T", "TB":
			mult = 1 << 40
		default:
			return 0, fmt.Errorf("quota size %q: unknown unit", s)
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("quota size %q", s)
	}
	return n * mult, nil
}

// Lookup implements userdb.UserDB. A user marked nologin or disabled is
// returned with Disabled set. ErrNotFound if the file has no such user,
// ErrUnavailable if it cannot be read.
func (d *DB) Lookup(ctx context.Context, address string) (*userdb.User, error) {
	address = d.policy.Normalize(address)
	e, ok, err := d.get(address)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("passwdfile: lookup %s: %w", address, userdb.ErrNotFound)
	}
	u := e.user
	return &u, nil
}

// Authenticate implements userdb.PassDB: ErrAuthFailed for an unknown
// user, a wrong or empty password, an unreadable hash, or a disabled user
// (the same work is spent for an unknown user); ErrUnavailable if the file
// cannot be read.
func (d *DB) Authenticate(ctx context.Context, address, pw string) (*userdb.User, error) {
	address = d.policy.Normalize(address)
	e, ok, err := d.get(address)
	if err != nil {
		return nil, err
	}
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("passwdfile: authenticate %s: %w", address, ctx.Err())
	}
	defer func() { <-d.sem }()
	if !ok || e.hash == "" {
		password.VerifyDummy(pw)
		return nil, fmt.Errorf("passwdfile: authenticate %s: %w", address, userdb.ErrAuthFailed)
	}
	match, err := password.Verify(e.hash, pw)
	if err != nil {
		return nil, fmt.Errorf("passwdfile: authenticate %s: %w: %w", address, userdb.ErrAuthFailed, err)
	}
	if !match || e.user.Disabled {
		return nil, fmt.Errorf("passwdfile: authenticate %s: %w", address, userdb.ErrAuthFailed)
	}
	u := e.user
	return &u, nil
}
