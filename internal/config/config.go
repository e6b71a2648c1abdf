// Package config holds bucketmail's settings as plain typed data: read from
// an optional TOML file, overridden by command-line flags, filled with the
// documented defaults and checked by Validate.
//
// The zero value of every field means "the default" (see Defaults), so a
// file only names what it changes and a program can build a Config by hand.
// Two strings have an explicit "off" spelling because their zero value is a
// default rather than "off": lmtp.recipient_delimiter = "none" disables
// recipient-delimiter handling; imap.tls_listen is off when empty.
//
// Example file (every key optional):
//
//	data_dir = "/var/lib/bucketmail"
//	hostname = "mail.example.org"
//
//	[imap]
//	listen     = "127.0.0.1:1143"
//	tls_listen = "0.0.0.0:993"    # implicit TLS; needs [tls]
//
//	[lmtp]
//	listen              = "/run/bucketmail/lmtp"   # a path: unix socket
//	max_message_size    = 52428800                 # bytes
//	recipient_delimiter = "+"
//
//	[tls]
//	cert_file = "/etc/bucketmail/cert.pem"
//	key_file  = "/etc/bucketmail/key.pem"
//
//	[auth]
//	allow_insecure = false   # plaintext LOGIN off loopback without TLS
//	cache_max_entries = 0    # > 0: cache logins and lookups (off by default)
//	cache_ttl = "5m"         # cache_negative_ttl = "1m"
//
//	[s3]                      # mail in a bucket; without a bucket, blobs/ on disk
//	endpoint   = "https://s3.eu-west-3.amazonaws.com"
//	region     = "eu-west-3"
//	bucket     = "mail-example-org"
//	prefix     = "bucketmail/"
//	path_style = false
//	credentials_file = "/etc/bucketmail/s3.credentials"  # else $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY
//	ca_file    = ""           # extra CAs (PEM); insecure_skip_verify = false
//	connect_timeout = "5s"    # also idle_timeout, max_attempts, max_backoff
//
//	[cache]                   # read cache in front of the bucket (S3 mode only)
//	dir       = "/var/cache/bucketmail"  # default data_dir/cache
//	max_bytes = 1073741824               # default 1 GiB
//	policy    = "lru"                    # lru or count (read count with ageing)
//
//	userdb = "sqlite"         # or passwd-file:/path, postgres://…, mysql://…, redis://…, dynamodb://TABLE
//
//	# or, with options beyond the URL, as a table instead of the key above:
//	[userdb]
//	url            = "mysql://dovecot:secret@db.example.org/postfix"
//	password_query = "SELECT username AS user, password FROM mailbox WHERE username = '%u' AND active = '1'"
//	user_query     = "SELECT username AS user, quota, active FROM mailbox WHERE username = '%u'"
//	# redis: key_template = "bucketmail:user:{address}", timeout = "3s"
//	# dynamodb: region = "eu-west-3", consistent_read = false, max_attempts = 3
//
//	[log]
//	level  = "info"   # debug, info, warn, error
//	format = "text"   # text, json
//	trace  = false    # IMAP protocol lines at debug level (passwords redacted)
//
// Every [s3] key is described in package internal/blob/s3 (Config). S3
// credentials never appear in this file's data: they come from
// $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY or the file named by
// s3.credentials_file; so no setting is a secret (the TLS key is named by
// path, never inlined) and LogValue prints every field.
package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/bucketmail/bucketmail/internal/blob/s3"
)

// Errors. Test with errors.Is.
var (
	// ErrInvalid wraps every problem Validate finds.
	ErrInvalid = errors.New("config: invalid")
	// ErrFile: the config file could not be read or parsed.
	ErrFile = errors.New("config: bad file")
)

// Default values.
const (
	DefaultDataDir            = "./bucketmail-data"
	DefaultIMAPListen         = "127.0.0.1:1143"
	DefaultLMTPListen         = "127.0.0.1:2424"
	DefaultMaxMessageSize     = 50 << 20 // bytes (50 MiB)
	DefaultRecipientDelimiter = "+"
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "text"
	DefaultCacheMaxBytes      = 1 << 30 // bytes (1 GiB)
	DefaultCachePolicy        = CachePolicyLRU
	DefaultJournalInterval    = time.Second
	// CacheDirName is the default cache directory inside data_dir.
	CacheDirName = "cache"
	// Cache policies.
	CachePolicyLRU   = "lru"
	CachePolicyCount = "count"
	// DelimiterNone as lmtp.recipient_delimiter turns delimiter handling off.
	DelimiterNone = "none"
	// MinLineLength is the smallest lmtp.max_line_length: RFC 5321
	// §4.5.3.1.6 allows text lines of 1000 octets with the CRLF.
	MinLineLength = 1000
)

// Config is the whole configuration.
type Config struct {
	// DataDir holds the SQLite index (index.db), blobs/ and spool/.
	DataDir string `toml:"data_dir"`
	// Hostname names this server in greetings and Received header fields.
	// Default: os.Hostname(), or "localhost" if that fails.
	Hostname string `toml:"hostname"`

	IMAP IMAP `toml:"imap"`
	LMTP LMTP `toml:"lmtp"`
	TLS  TLS  `toml:"tls"`
	Auth Auth `toml:"auth"`
	Log  Log  `toml:"log"`
	// S3 puts the mail in a bucket when S3.Bucket is set; otherwise
	// message bodies live under data_dir/blobs. Defaults are s3.Config's.
	S3      s3.Config `toml:"s3"`
	Cache   Cache     `toml:"cache"`
	Journal Journal   `toml:"journal"`
	// UserDB selects the user database: `userdb = "URL"` or a [userdb]
	// table with url and backend options.
	UserDB UserDB `toml:"userdb"`

	// MetaDB is the metadata database (--metadb): "sqlite" (default:
	// data_dir/index.db) or a postgres://… / postgresql://… URL shared by
	// every server of a cluster (DESIGN §1); postgres needs s3.bucket
	// (the mail must be shared too) and a shared user database. The URL
	// may hold a password (user:password@ or ?password=): LogValue masks
	// it.
	MetaDB string `toml:"metadb"`
	// Bus is the notification bus between servers (--bus): "local"
	// (default, one server), nats://host:port or postgres://… (LISTEN/NOTIFY);
	// the URLs must name a host.
	Bus string `toml:"bus"`
	// NodeName names this server in bus events and logs (--node-name).
	// Default: Hostname.
	NodeName string `toml:"node_name"`
	// Cluster holds the settings of several servers on one bucket.
	Cluster Cluster `toml:"cluster"`
	// Metrics configures the Prometheus endpoint.
	Metrics Metrics `toml:"metrics"`
}

// Metrics configures the Prometheus metrics endpoint.
type Metrics struct {
	// Listen is the host:port of the HTTP endpoint serving /metrics
	// (--metrics-listen). Empty (the default): off.
	Listen string `toml:"listen"`
}

// Cluster configures several servers sharing one bucket and metadata
// database (issue 6).
type Cluster struct {
	// PollInterval: while the bus is down (or with no bus across
	// processes), how often a server re-reads the store for the accounts
	// its sessions watch. 0: DefaultPollInterval.
	PollInterval time.Duration `toml:"poll_interval"`
	// ConsistencyWindow: after an "updating" event for an account, how
	// long servers bypass their auth/user caches and read consistently.
	// 0: DefaultConsistencyWindow.
	ConsistencyWindow time.Duration `toml:"consistency_window"`
}

// Metadata database and bus selectors.
const (
	MetaDBSQLite = "sqlite"
	BusLocal     = "local"
	// DefaultPollInterval is Cluster.PollInterval's default.
	DefaultPollInterval = 2 * time.Second
	// DefaultConsistencyWindow is Cluster.ConsistencyWindow's default.
	DefaultConsistencyWindow = 15 * time.Second
)

// MetaDBKind returns "sqlite" or "postgres", or "" for an unknown value.
func (c *Config) MetaDBKind() string {
	switch {
	case c.MetaDB == MetaDBSQLite:
		return "sqlite"
	case strings.HasPrefix(c.MetaDB, "postgres://"), strings.HasPrefix(c.MetaDB, "postgresql://"):
		return "postgres"
	}
	return ""
}

// BusKind returns "local", "nats" or "postgres", or "" for an unknown value.
func (c *Config) BusKind() string {
	switch {
	case c.Bus == BusLocal:
		return "local"
	case strings.HasPrefix(c.Bus, "nats://"):
		return "nats"
	case strings.HasPrefix(c.Bus, "postgres://"), strings.HasPrefix(c.Bus, "postgresql://"):
		return "postgres"
	}
	return ""
}

// RedactedBus returns Bus with its secrets masked (see redactURL), for
// logs.
func (c *Config) RedactedBus() string { return redactURL(c.Bus) }

// redactURL masks the secrets of a URL-shaped setting: the password of
// a user:password@ part and the value of every "password" query
// parameter (libpq's ?password=…, any case), each replaced by "xxxxx".
// Anything else is returned as given (no re-encoding), so the log shows
// what was configured.
func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	hostEnd := strings.IndexAny(rest, "/?#")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	if at := strings.LastIndexByte(rest[:hostEnd], '@'); at >= 0 {
		if user, _, hasPw := strings.Cut(rest[:at], ":"); hasPw {
			rest = user + ":xxxxx" + rest[at:]
		}
	}
	q := strings.IndexByte(rest, '?')
	if q < 0 {
		return scheme + "://" + rest
	}
	query, frag, hasFrag := strings.Cut(rest[q+1:], "#")
	params := strings.Split(query, "&")
	for i, p := range params {
		key, _, _ := strings.Cut(p, "=")
		if k, err := url.QueryUnescape(key); err == nil && strings.EqualFold(k, "password") {
			params[i] = key + "=xxxxx"
		}
	}
	out := scheme + "://" + rest[:q+1] + strings.Join(params, "&")
	if hasFrag {
		out += "#" + frag
	}
	return out
}

// UserDBSQLite is the default user database: the embedded one, in the
// index's SQLite file.
const UserDBSQLite = "sqlite"

// UserDB selects and configures the user database (--userdb, TOML
// userdb). In the file it is either a string (the URL) or a table:
//
//	url             sqlite (default), passwd-file:/path, postgres://…,
//	                postgresql://…, mysql://…, redis://…, rediss://…, dynamodb://TABLE
//	password_query  SQL backends: see internal/userdb/sqldb (with user_query; both or neither)
//	user_query
//	key_template    redis: key of a user's hash, with {address}
//	timeout         redis: dial/read/write timeout ("3s")
//	region          dynamodb: AWS region
//	consistent_read dynamodb: strongly consistent reads always
//	max_attempts    dynamodb: attempts per request
//
// The URL may hold a database password: LogValue masks it.
type UserDB struct {
	URL            string
	PasswordQuery  string
	UserQuery      string
	KeyTemplate    string
	Timeout        time.Duration
	Region         string
	ConsistentRead bool
	MaxAttempts    int
}

// UnmarshalTOML implements toml.Unmarshaler: a string (the URL) or a
// table of the keys above. Unknown keys and wrong types are errors.
func (u *UserDB) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		u.URL = v
		return nil
	case map[string]any:
		for k, val := range v {
			var ok bool
			switch k {
			case "url":
				u.URL, ok = val.(string)
			case "password_query":
				u.PasswordQuery, ok = val.(string)
			case "user_query":
				u.UserQuery, ok = val.(string)
			case "key_template":
				u.KeyTemplate, ok = val.(string)
			case "region":
				u.Region, ok = val.(string)
			case "consistent_read":
				u.ConsistentRead, ok = val.(bool)
			case "max_attempts":
				var n int64
				n, ok = val.(int64)
				u.MaxAttempts = int(n)
			case "timeout":
				var s string
				if s, ok = val.(string); ok {
					d, err := time.ParseDuration(s)
					if err != nil {
						return fmt.Errorf("userdb.timeout: %w", err)
					}
					u.Timeout = d
				}
			default:
				return fmt.Errorf("userdb: unknown key %q", k)
			}
			if !ok {
				return fmt.Errorf("userdb.%s: wrong type %T", k, val)
			}
		}
		return nil
	}
	return fmt.Errorf("userdb: want a URL string or a table, got %T", v)
}

// Kind returns the backend the URL names: "sqlite", "passwd-file",
// "postgres", "mysql", "redis", "dynamodb", or "" if none.
func (u UserDB) Kind() string {
	switch {
	case u.URL == UserDBSQLite:
		return "sqlite"
	case strings.HasPrefix(u.URL, "passwd-file:"):
		return "passwd-file"
	case strings.HasPrefix(u.URL, "postgres://"), strings.HasPrefix(u.URL, "postgresql://"):
		return "postgres"
	case strings.HasPrefix(u.URL, "mysql://"):
		return "mysql"
	case strings.HasPrefix(u.URL, "redis://"), strings.HasPrefix(u.URL, "rediss://"):
		return "redis"
	case strings.HasPrefix(u.URL, "dynamodb://"):
		return "dynamodb"
	}
	return ""
}

// Redacted returns the URL with any password (user:password@ or a
// "password" query parameter) replaced by "xxxxx" (see redactURL).
func (u UserDB) Redacted() string { return redactURL(u.URL) }

// Journal configures the bucket journal (package internal/journal).
type Journal struct {
	// Interval is how often batched changes (flags, keywords, new
	// deliveries' index data) are written to the bucket: what a crash can
	// lose of them. A duration string in the file ("1s", "500ms").
	// Default 1 s; at most 1 minute.
	Interval time.Duration `toml:"interval"`
}

// Cache configures the read cache that serve puts in front of the bucket
// (S3 mode only; see package internal/cache).
type Cache struct {
	// Dir holds the cache. Default data_dir/cache.
	Dir string `toml:"dir"`
	// MaxBytes caps the cache's size on disk. Default 1 GiB.
	MaxBytes int64 `toml:"max_bytes"`
	// Policy chooses what to evict: "lru" (default) or "count" (read
	// count with ageing).
	Policy string `toml:"policy"`
}

// S3Enabled reports whether mail lives in a bucket (s3.bucket is set).
func (c *Config) S3Enabled() bool { return c.S3.Bucket != "" }

// IMAP configures the IMAP listeners.
type IMAP struct {
	// Listen is host:port for plain IMAP (STARTTLS offered when [tls] is
	// set). Default 127.0.0.1:1143.
	Listen string `toml:"listen"`
	// TLSListen is host:port for implicit TLS (port 993 style). Off when
	// empty; needs [tls].
	TLSListen string `toml:"tls_listen"`
}

// LMTP configures mail delivery.
type LMTP struct {
	// Listen is host:port (TCP) or a path (a unix socket: any value with a
	// "/" in it). Default 127.0.0.1:2424.
	Listen string `toml:"listen"`
	// MaxMessageSize bounds a delivered or imported message in bytes,
	// before the Return-Path, Delivered-To and Received fields are added;
	// bare LF line ends count as the CRLF they are stored as. Advertised
	// as the LMTP SIZE. Also bounds IMAP APPEND. Default 50 MiB.
	MaxMessageSize int64 `toml:"max_message_size"`
	// RecipientDelimiter separates a detail from the local part
	// ("user+tag@example.org" is delivered to user@example.org). Default
	// "+"; "none" turns it off.
	RecipientDelimiter string `toml:"recipient_delimiter"`
	// MaxLineLength bounds a command or message line in bytes (go-smtp
	// holds a command line whole in memory). 0: 1 MiB (the lmtp
	// package's default); else at least MinLineLength (1000, RFC 5321
	// §4.5.3.1.6).
	MaxLineLength int `toml:"max_line_length"`
	// MaxConnections caps concurrent LMTP connections; more wait in the
	// listen backlog. Default 128 (the lmtp package's default).
	MaxConnections int `toml:"max_connections"`
}

// TLS names the certificate and key, PEM files. Both or neither.
type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// Auth configures authentication policy.
type Auth struct {
	// AllowInsecure allows LOGIN/AUTHENTICATE PLAIN without TLS from
	// non-loopback addresses. Loopback clients may always authenticate.
	AllowInsecure bool `toml:"allow_insecure"`
	// CacheMaxEntries turns on serve's cache of authentications and
	// lookups (package internal/userdb/authcache) with at most this many
	// entries. 0 (the default, as Dovecot's auth_cache_size): no cache.
	// The cache is per process. Changes made with `bucketmail user` reach
	// it at once (the control socket with the local bus, the bus in a
	// cluster: a consistency window); changes made in the backend by
	// other tools reach it when the entries expire or the bus resyncs.
	CacheMaxEntries int `toml:"cache_max_entries"`
	// CacheTTL: how long a successful login or lookup is reused ("5m").
	// 0: 5 minutes.
	CacheTTL time.Duration `toml:"cache_ttl"`
	// CacheNegativeTTL: how long a failed login or unknown address is
	// reused ("1m"). 0: 1 minute; negative: not cached.
	CacheNegativeTTL time.Duration `toml:"cache_negative_ttl"`

	// LocalPartCase: how the local part of an address is compared.
	// "lower" (default, as Dovecot's auth_username_format=%Lu for most
	// installs): case-insensitive, folded to lower case; "keep":
	// compared as written (the domain is always case-insensitive).
	LocalPartCase string `toml:"local_part_case"`
	// Normalize: Unicode normalization of addresses before lookup.
	// "nfc" (default, RFC 6532 §3.1 recommends NFC) or "none".
	Normalize string `toml:"normalize"`
	// ThrottleMaxDelay bounds the growing delay before the answer to a
	// failed login, per remote IP and per account ("15s"). 0: 15 s;
	// negative: no throttling beyond the fixed per-connection delay.
	ThrottleMaxDelay time.Duration `toml:"throttle_max_delay"`
}

// Local-part case handling and normalization choices (Auth).
const (
	LocalPartLower = "lower"
	LocalPartKeep  = "keep"
	NormalizeNFC   = "nfc"
	NormalizeNone  = "none"
	// DefaultThrottleMaxDelay is Auth.ThrottleMaxDelay's default.
	DefaultThrottleMaxDelay = 15 * time.Second
)

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error; default info
	Format string `toml:"format"` // text, json; default text
	// Trace logs every IMAP command and response line at debug level
	// (LOGIN and AUTHENTICATE arguments redacted, literals summarised).
	// Needs level = "debug".
	Trace bool `toml:"trace"`
}

// Defaults returns the documented defaults, with Hostname from os.Hostname.
func Defaults() Config {
	c := Config{}
	c.ApplyDefaults()
	return c
}

// ApplyDefaults replaces every zero-valued field with its default.
func (c *Config) ApplyDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.Hostname = h
	}
	if c.IMAP.Listen == "" {
		c.IMAP.Listen = DefaultIMAPListen
	}
	if c.LMTP.Listen == "" {
		c.LMTP.Listen = DefaultLMTPListen
	}
	if c.LMTP.MaxMessageSize == 0 {
		c.LMTP.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.LMTP.RecipientDelimiter == "" {
		c.LMTP.RecipientDelimiter = DefaultRecipientDelimiter
	}
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
	if c.Cache.Dir == "" {
		c.Cache.Dir = filepath.Join(c.DataDir, CacheDirName)
	}
	if c.Cache.MaxBytes == 0 {
		c.Cache.MaxBytes = DefaultCacheMaxBytes
	}
	if c.Cache.Policy == "" {
		c.Cache.Policy = DefaultCachePolicy
	}
	if c.Journal.Interval == 0 {
		c.Journal.Interval = DefaultJournalInterval
	}
	if c.UserDB.URL == "" {
		c.UserDB.URL = UserDBSQLite
	}
	if c.MetaDB == "" {
		c.MetaDB = MetaDBSQLite
	}
	if c.Bus == "" {
		c.Bus = BusLocal
	}
	if c.NodeName == "" {
		c.NodeName = c.Hostname
	}
	if c.Cluster.PollInterval == 0 {
		c.Cluster.PollInterval = DefaultPollInterval
	}
	if c.Cluster.ConsistencyWindow == 0 {
		c.Cluster.ConsistencyWindow = DefaultConsistencyWindow
	}
	if c.Auth.LocalPartCase == "" {
		c.Auth.LocalPartCase = LocalPartLower
	}
	if c.Auth.Normalize == "" {
		c.Auth.Normalize = NormalizeNFC
	}
	if c.Auth.ThrottleMaxDelay == 0 {
		c.Auth.ThrottleMaxDelay = DefaultThrottleMaxDelay
	}
}

// Delimiter returns the recipient delimiter to use: "" when it is off.
func (l LMTP) Delimiter() string {
	if l.RecipientDelimiter == DelimiterNone {
		return ""
	}
	return l.RecipientDelimiter
}

// TLSEnabled reports whether a certificate and key are configured.
func (c *Config) TLSEnabled() bool { return c.TLS.CertFile != "" || c.TLS.KeyFile != "" }

// IsUnixSocket reports whether a listen address names a unix socket (it
// contains a "/").
func IsUnixSocket(addr string) bool { return strings.Contains(addr, "/") }

// Validate reports every problem at once, joined with errors.Join; each
// wraps ErrInvalid. Call it after ApplyDefaults. It does no I/O: whether
// the TLS files can be read is found out when they are loaded.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, key, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("data_dir", "empty")
	}
	if c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t\r\n<>[]@") {
		bad("hostname", "%q is not a host name", c.Hostname)
	}
	checkTCP := func(key, addr string) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			bad(key, "%q: want host:port", addr)
			return
		}
		_ = host
		n, err := strconv.Atoi(port)
		if err != nil || n < 0 || n > 65535 {
			bad(key, "%q: port %q is not a number in 0..65535", addr, port)
		}
	}
	checkTCP("imap.listen", c.IMAP.Listen)
	if c.IMAP.TLSListen != "" {
		checkTCP("imap.tls_listen", c.IMAP.TLSListen)
		if !c.TLSEnabled() {
			bad("imap.tls_listen", "set, but tls.cert_file and tls.key_file are not")
		}
	}
	if !IsUnixSocket(c.LMTP.Listen) {
		checkTCP("lmtp.listen", c.LMTP.Listen)
	}
	if c.LMTP.MaxMessageSize <= 0 {
		bad("lmtp.max_message_size", "%d: must be a positive number of bytes", c.LMTP.MaxMessageSize)
	}
	if c.LMTP.MaxLineLength != 0 && c.LMTP.MaxLineLength < MinLineLength {
		bad("lmtp.max_line_length", "%d: want 0 (the default) or at least %d bytes (RFC 5321 §4.5.3.1.6: text lines up to 1000 octets)", c.LMTP.MaxLineLength, MinLineLength)
	}
	if c.LMTP.MaxConnections < 0 {
		bad("lmtp.max_connections", "%d: must be positive", c.LMTP.MaxConnections)
	}
	if d := c.LMTP.RecipientDelimiter; d != DelimiterNone && (d == "" || strings.ContainsAny(d, "@ \t\r\n<>\"")) {
		bad("lmtp.recipient_delimiter", "%q: want one or more characters other than @, space, <, >, \" (or \"none\")", d)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file must be set together")
	}
	if _, err := c.SlogLevel(); err != nil {
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	if c.Journal.Interval < 0 || c.Journal.Interval > time.Minute {
		bad("journal.interval", "%s: want a duration from 1ms to 1m", c.Journal.Interval)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q: want text or json", c.Log.Format)
	}
	if c.S3Enabled() {
		if err := c.S3.Validate(); err != nil {
			list := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				list = j.Unwrap()
			}
			for _, e := range list {
				errs = append(errs, fmt.Errorf("%w: %w", ErrInvalid, e))
			}
		}
	} else if c.S3.Endpoint != "" || c.S3.Prefix != "" || c.S3.Region != "" || c.S3.CredentialsFile != "" {
		bad("s3.bucket", "required when other s3 settings are given")
	}
	if c.Auth.CacheMaxEntries < 0 {
		bad("auth.cache_max_entries", "%d: must not be negative", c.Auth.CacheMaxEntries)
	}
	if c.Auth.CacheTTL < 0 {
		bad("auth.cache_ttl", "%s: must not be negative", c.Auth.CacheTTL)
	}
	if c.Cache.MaxBytes < 0 {
		bad("cache.max_bytes", "%d: must not be negative", c.Cache.MaxBytes)
	}
	switch kind := c.UserDB.Kind(); {
	case kind == "":
		bad("userdb", "%q: want sqlite, passwd-file:/path, postgres://…, mysql://…, redis://… or dynamodb://TABLE", c.UserDB.Redacted())
	case kind == "passwd-file" && strings.TrimPrefix(c.UserDB.URL, "passwd-file:") == "":
		bad("userdb", "passwd-file: needs a path (passwd-file:/etc/dovecot/users)")
	case (c.UserDB.PasswordQuery != "" || c.UserDB.UserQuery != "") && kind != "postgres" && kind != "mysql":
		bad("userdb", "password_query and user_query are for postgres and mysql only")
	case (c.UserDB.PasswordQuery == "") != (c.UserDB.UserQuery == ""):
		bad("userdb", "set both password_query and user_query, or neither")
	case c.UserDB.KeyTemplate != "" && kind != "redis":
		bad("userdb.key_template", "for redis only")
	}
	if c.Cache.Policy != CachePolicyLRU && c.Cache.Policy != CachePolicyCount {
		bad("cache.policy", "%q: want %s or %s", c.Cache.Policy, CachePolicyLRU, CachePolicyCount)
	}
	if c.Metrics.Listen != "" {
		checkTCP("metrics.listen", c.Metrics.Listen)
	}
	if c.MetaDBKind() == "" {
		bad("metadb", "%q: want sqlite or postgres://…", redactURL(c.MetaDB))
	}
	if c.MetaDBKind() == "postgres" && c.UserDB.Kind() == "sqlite" {
		bad("userdb", "sqlite is one server's file; with metadb = postgres use a shared user database, e.g. userdb = postgres://… (the metadata database itself will do)")
	}
	if c.MetaDBKind() == "postgres" && !c.S3Enabled() {
		bad("s3.bucket", "required with metadb = postgres: the mail must be shared too (without a bucket it stays under this server's data_dir/blobs)")
	}
	switch c.BusKind() {
	case "":
		bad("bus", "%q: want local, nats://host:port or postgres://…", redactURL(c.Bus))
	case "nats", "postgres":
		if !urlHasHost(c.Bus) {
			bad("bus", "%q: no host (want nats://host:port or postgres://user@host/db)", redactURL(c.Bus))
		}
	}
	if c.NodeName == "" || strings.ContainsAny(c.NodeName, " \t\r\n") || len(c.NodeName) > 255 {
		bad("node_name", "%q: want 1..255 characters without spaces", c.NodeName)
	}
	if c.Cluster.PollInterval < 10*time.Millisecond || c.Cluster.PollInterval > time.Hour {
		bad("cluster.poll_interval", "%s: want a duration from 10ms to 1h", c.Cluster.PollInterval)
	}
	if c.Cluster.ConsistencyWindow < 0 || c.Cluster.ConsistencyWindow > time.Hour {
		bad("cluster.consistency_window", "%s: want a duration from 1ms to 1h", c.Cluster.ConsistencyWindow)
	}
	if c.Auth.LocalPartCase != LocalPartLower && c.Auth.LocalPartCase != LocalPartKeep {
		bad("auth.local_part_case", "%q: want %s or %s", c.Auth.LocalPartCase, LocalPartLower, LocalPartKeep)
	}
	if c.Auth.Normalize != NormalizeNFC && c.Auth.Normalize != NormalizeNone {
		bad("auth.normalize", "%q: want %s or %s", c.Auth.Normalize, NormalizeNFC, NormalizeNone)
	}
	return errors.Join(errs...)
}

// urlHasHost reports whether a URL names a host: in its authority part,
// or (PostgreSQL, libpq) in a host query parameter such as
// ?host=/run/postgresql.
func urlHasHost(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	if u.Hostname() != "" {
		return true
	}
	return (u.Scheme == "postgres" || u.Scheme == "postgresql") && u.Query().Get("host") != ""
}

// SlogLevel returns the slog level named by Log.Level.
func (c *Config) SlogLevel() (slog.Level, error) {
	switch strings.ToLower(c.Log.Level) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%w: log.level %q", ErrInvalid, c.Log.Level)
}

// LogValue implements slog.LogValuer: the effective settings, for the
// start-up log line. No field is secret (see the package doc); a future
// secret field must be left out here.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("data_dir", c.DataDir),
		slog.String("hostname", c.Hostname),
		slog.String("imap.listen", c.IMAP.Listen),
		slog.String("imap.tls_listen", c.IMAP.TLSListen),
		slog.String("lmtp.listen", c.LMTP.Listen),
		slog.Int64("lmtp.max_message_size", c.LMTP.MaxMessageSize),
		slog.String("lmtp.recipient_delimiter", c.LMTP.RecipientDelimiter),
		slog.String("tls.cert_file", c.TLS.CertFile),
		slog.String("tls.key_file", c.TLS.KeyFile),
		slog.Bool("auth.allow_insecure", c.Auth.AllowInsecure),
		slog.Int("auth.cache_max_entries", c.Auth.CacheMaxEntries),
		slog.String("log.level", c.Log.Level),
		slog.String("log.format", c.Log.Format),
		slog.Bool("log.trace", c.Log.Trace),
		slog.String("s3", c.s3String()),
		slog.String("cache.dir", c.Cache.Dir),
		slog.Int64("cache.max_bytes", c.Cache.MaxBytes),
		slog.String("cache.policy", c.Cache.Policy),
		slog.String("userdb", c.UserDB.Redacted()),
		slog.String("metadb", redactURL(c.MetaDB)),
		slog.String("bus", redactURL(c.Bus)),
		slog.String("node_name", c.NodeName),
		slog.String("metrics.listen", c.Metrics.Listen),
		slog.String("auth.local_part_case", c.Auth.LocalPartCase),
		slog.String("auth.normalize", c.Auth.Normalize),
	)
}

// s3String describes the S3 settings without credentials (s3.Config.String
// never prints them), or "off".
func (c Config) s3String() string {
	if !c.S3Enabled() {
		return "off"
	}
	return c.S3.String()
}

// LoadFile reads a TOML file into a Config, without defaults. Unknown keys
// are errors (a misspelt key must not be silently ignored). Errors wrap
// ErrFile.
func LoadFile(path string) (Config, error) {
	var c Config
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %s: %w", ErrFile, path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("%w: %s: unknown keys: %s", ErrFile, path, strings.Join(keys, ", "))
	}
	return c, nil
}

// Flags are the command-line settings that override the file.
type Flags struct {
	ConfigPath    string
	DataDir       string
	IMAPListen    string
	IMAPSListen   string
	LMTPListen    string
	S3Endpoint    string
	S3Bucket      string
	S3Region      string
	S3Prefix      string
	S3PathStyle   bool
	UserDB        string
	MetaDB        string
	Bus           string
	NodeName      string
	MetricsListen string
	fs            *flag.FlagSet
}

// RegisterFlags adds --config and, when serverFlags, the listener flags to
// fs (--data-dir and the --s3-* flags are always added: every subcommand
// needs the data). Read the result with Load after fs.Parse.
func RegisterFlags(fs *flag.FlagSet, serverFlags bool) *Flags {
	f := &Flags{fs: fs}
	fs.StringVar(&f.ConfigPath, "config", "", "TOML config `file` (optional)")
	fs.StringVar(&f.DataDir, "data-dir", "", "data `directory` (default "+DefaultDataDir+")")
	fs.StringVar(&f.S3Endpoint, "s3-endpoint", "", "S3 endpoint `URL` (default AWS)")
	fs.StringVar(&f.S3Bucket, "s3-bucket", "", "S3 `bucket` holding the mail (default none: mail under data-dir/blobs)")
	fs.StringVar(&f.S3Region, "s3-region", "", "S3 `region` (default $AWS_REGION or "+s3.DefaultRegion+")")
	fs.StringVar(&f.S3Prefix, "s3-prefix", "", "key `prefix` inside the bucket")
	fs.BoolVar(&f.S3PathStyle, "s3-path-style", false, "path-style S3 addressing (endpoint/bucket/key)")
	fs.StringVar(&f.UserDB, "userdb", "", "user database `URL`: sqlite (default), passwd-file:/path, postgres://…, mysql://…, redis://…, dynamodb://TABLE")
	fs.StringVar(&f.MetaDB, "metadb", "", "metadata database: sqlite (default, in data-dir) or postgres://… `URL`")
	fs.StringVar(&f.Bus, "bus", "", "notification bus: local (default), nats://host:port or postgres://… `URL`")
	fs.StringVar(&f.NodeName, "node-name", "", "this server's `name` in bus events and logs (default the host name)")
	if serverFlags {
		fs.StringVar(&f.IMAPListen, "imap-listen", "", "IMAP `host:port` (default "+DefaultIMAPListen+")")
		fs.StringVar(&f.IMAPSListen, "imaps-listen", "", "implicit-TLS IMAP `host:port` (default off; needs tls in the config)")
		fs.StringVar(&f.MetricsListen, "metrics-listen", "", "Prometheus /metrics `host:port` (default off)")
		fs.StringVar(&f.LMTPListen, "lmtp-listen", "", "LMTP `host:port` or unix socket path (default "+DefaultLMTPListen+")")
	}
	return f
}

// Load builds the effective Config: the file named by --config (if any),
// then every flag that was given on the command line, then defaults, then
// Validate. A flag given as an empty string still overrides (so
// --imaps-listen= turns off a tls_listen from the file).
func (f *Flags) Load() (Config, error) {
	var c Config
	if f.ConfigPath != "" {
		var err error
		if c, err = LoadFile(f.ConfigPath); err != nil {
			return Config{}, err
		}
	}
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "data-dir":
			c.DataDir = f.DataDir
		case "imap-listen":
			c.IMAP.Listen = f.IMAPListen
		case "imaps-listen":
			c.IMAP.TLSListen = f.IMAPSListen
		case "lmtp-listen":
			c.LMTP.Listen = f.LMTPListen
		case "s3-endpoint":
			c.S3.Endpoint = f.S3Endpoint
		case "s3-bucket":
			c.S3.Bucket = f.S3Bucket
		case "s3-region":
			c.S3.Region = f.S3Region
		case "s3-prefix":
			c.S3.Prefix = f.S3Prefix
		case "s3-path-style":
			c.S3.PathStyle = f.S3PathStyle
		case "userdb":
			c.UserDB.URL = f.UserDB
		case "metadb":
			c.MetaDB = f.MetaDB
		case "bus":
			c.Bus = f.Bus
		case "node-name":
			c.NodeName = f.NodeName
		case "metrics-listen":
			c.Metrics.Listen = f.MetricsListen
		}
	})
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}
