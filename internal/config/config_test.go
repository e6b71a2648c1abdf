package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob/s3"
)

func TestDefaults(t *testing.T) {
	c := Defaults()
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	want := Config{
		DataDir:  "./bucketmail-data",
		Hostname: host,
		IMAP:     IMAP{Listen: "127.0.0.1:1143"},
		LMTP:     LMTP{Listen: "127.0.0.1:2424", MaxMessageSize: 50 * 1024 * 1024, RecipientDelimiter: "+"},
		Log:      Log{Level: "info", Format: "text"},
		Cache:    Cache{Dir: "bucketmail-data/cache", MaxBytes: 1 << 30, Policy: "lru"},
		Journal:  Journal{Interval: time.Second},
		UserDB:   UserDB{URL: "sqlite"},
		Auth:     Auth{LocalPartCase: "lower", Normalize: "nfc", ThrottleMaxDelay: 15 * time.Second},
		MetaDB:   "sqlite",
		Bus:      "local",
		NodeName: host,
		Cluster:  Cluster{PollInterval: 2 * time.Second, ConsistencyWindow: 15 * time.Second},
	}
	if c != want {
		t.Fatalf("Defaults() = %+v\nwant %+v", c, want)
	}
	if c.S3Enabled() {
		t.Errorf("S3Enabled() = true with no bucket")
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate(Defaults()) = %v", err)
	}
	if c.TLSEnabled() {
		t.Errorf("TLSEnabled() = true with no cert")
	}
	if got := c.LMTP.Delimiter(); got != "+" {
		t.Errorf("Delimiter() = %q, want +", got)
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bucketmail.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFileAndFlagOverride(t *testing.T) {
	path := writeFile(t, `
data_dir = "/srv/mail"
hostname = "mx.example.org"

[imap]
listen = "0.0.0.0:143"
tls_listen = "0.0.0.0:993"

[lmtp]
listen = "127.0.0.1:24"
max_message_size = 1000
recipient_delimiter = "none"

[tls]
cert_file = "/etc/c.pem"
key_file = "/etc/k.pem"

[auth]
allow_insecure = true
cache_max_entries = 100
cache_ttl = "2m"
cache_negative_ttl = "-1s"

[log]
level = "debug"
format = "json"
trace = true

[s3]
endpoint = "https://s3.example.org"
region = "eu-west-3"
bucket = "file-bucket"
prefix = "bm/"
credentials_file = "/etc/bm/s3.cred"
ca_file = "/etc/bm/ca.pem"
insecure_skip_verify = true
idle_timeout = "3s"
max_attempts = 2

[cache]
max_bytes = 4096
policy = "count"

[journal]
interval = "250ms"
`)
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f := RegisterFlags(fs, true)
	if err := fs.Parse([]string{"--config", path, "--lmtp-listen", "/run/bm/lmtp", "--imap-listen=127.0.0.1:1143",
		"--s3-endpoint", "http://127.0.0.1:7070", "--s3-bucket=mail", "--s3-path-style", "--s3-prefix", "p2"}); err != nil {
		t.Fatal(err)
	}
	c, err := f.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{
		DataDir:  "/srv/mail",
		Hostname: "mx.example.org",
		IMAP:     IMAP{Listen: "127.0.0.1:1143", TLSListen: "0.0.0.0:993"},
		LMTP:     LMTP{Listen: "/run/bm/lmtp", MaxMessageSize: 1000, RecipientDelimiter: "none"},
		TLS:      TLS{CertFile: "/etc/c.pem", KeyFile: "/etc/k.pem"},
		Auth: Auth{AllowInsecure: true, CacheMaxEntries: 100, CacheTTL: 2 * time.Minute, CacheNegativeTTL: -time.Second,
			LocalPartCase: "lower", Normalize: "nfc", ThrottleMaxDelay: 15 * time.Second},
		Log: Log{Level: "debug", Format: "json", Trace: true},
		S3: s3.Config{Endpoint: "http://127.0.0.1:7070", Region: "eu-west-3", Bucket: "mail", Prefix: "p2", PathStyle: true,
			CredentialsFile: "/etc/bm/s3.cred", CAFile: "/etc/bm/ca.pem", InsecureSkipVerify: true,
			IdleTimeout: 3 * time.Second, MaxAttempts: 2},
		Cache:   Cache{Dir: "/srv/mail/cache", MaxBytes: 4096, Policy: "count"},
		Journal: Journal{Interval: 250 * time.Millisecond},
		UserDB:  UserDB{URL: "sqlite"},
		MetaDB:  "sqlite", Bus: "local", NodeName: "mx.example.org",
		Cluster: Cluster{PollInterval: 2 * time.Second, ConsistencyWindow: 15 * time.Second},
	}
	if c != want {
		t.Fatalf("Load() = %+v\nwant %+v", c, want)
	}
	if !c.S3Enabled() {
		t.Errorf("S3Enabled() = false with a bucket")
	}
	// The log line shows the S3 settings, never a credential.
	if got := c.LogValue().String(); !strings.Contains(got, "bucket=mail") || !strings.Contains(got, "cache.policy=count") {
		t.Errorf("LogValue = %s", got)
	}
	if !IsUnixSocket(c.LMTP.Listen) || IsUnixSocket(c.IMAP.Listen) {
		t.Errorf("IsUnixSocket wrong for %q / %q", c.LMTP.Listen, c.IMAP.Listen)
	}
	if got := c.LMTP.Delimiter(); got != "" {
		t.Errorf("Delimiter() = %q, want empty (none)", got)
	}

	// An empty flag turns off the file's implicit-TLS listener; an
	// unset flag leaves the file's value.
	fs = flag.NewFlagSet("serve", flag.ContinueOnError)
	f = RegisterFlags(fs, true)
	if err := fs.Parse([]string{"--config=" + path, "--imaps-listen=", "--data-dir", "/tmp/x"}); err != nil {
		t.Fatal(err)
	}
	c, err = f.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.IMAP.TLSListen != "" || c.DataDir != "/tmp/x" || c.IMAP.Listen != "0.0.0.0:143" {
		t.Errorf("got tls_listen %q data_dir %q imap.listen %q, want \"\", /tmp/x, 0.0.0.0:143",
			c.IMAP.TLSListen, c.DataDir, c.IMAP.Listen)
	}
}

func TestPartialFileKeepsDefaults(t *testing.T) {
	path := writeFile(t, "[lmtp]\nmax_message_size = 4096\n")
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f := RegisterFlags(fs, true)
	if err := fs.Parse([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	c, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.LMTP.MaxMessageSize = 4096
	if c != want {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
}

func TestUnknownKey(t *testing.T) {
	path := writeFile(t, "[imap]\nlisten = \"127.0.0.1:1\"\nlsiten = \"x\"\n")
	_, err := LoadFile(path)
	if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "imap.lsiten") {
		t.Fatalf("LoadFile = %v, want ErrFile naming imap.lsiten", err)
	}
}

func TestBadTOML(t *testing.T) {
	path := writeFile(t, "data_dir = \n")
	if _, err := LoadFile(path); !errors.Is(err, ErrFile) {
		t.Fatalf("LoadFile = %v, want ErrFile", err)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.toml")); !errors.Is(err, ErrFile) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadFile(missing) = %v, want ErrFile and ErrNotExist", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Config{
		Hostname: "bad host",
		IMAP:     IMAP{Listen: "nocolon", TLSListen: "127.0.0.1:99999"},
		LMTP:     LMTP{Listen: "127.0.0.1:x", MaxMessageSize: -1, RecipientDelimiter: "@", MaxLineLength: -1, MaxConnections: -1},
		TLS:      TLS{KeyFile: "/k.pem"},
		Log:      Log{Level: "loud", Format: "xml"},
		Journal:  Journal{Interval: 2 * time.Minute},
		MetaDB:   "mysql://u:secret@h/db",
		Bus:      "kafka://h",
		Cluster:  Cluster{PollInterval: time.Millisecond},
		Auth:     Auth{LocalPartCase: "upper", Normalize: "nfd"},
	}
	c.ApplyDefaults()
	err := c.Validate()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate = %v, want ErrInvalid", err)
	}
	wantKeys := []string{
		"hostname:", "imap.listen:", "imap.tls_listen: \"127.0.0.1:99999\": port", "lmtp.listen:",
		"lmtp.max_message_size:", "lmtp.recipient_delimiter:", "tls: cert_file and key_file",
		"log.level:", "log.format:", "journal.interval: 2m0s",
		"lmtp.max_line_length: -1", "lmtp.max_connections: -1",
		"node_name: \"bad host\"", "metadb: \"mysql://u:xxxxx@h/db\"", "bus: \"kafka://h\"",
		"cluster.poll_interval: 1ms", "auth.local_part_case: \"upper\"", "auth.normalize: \"nfd\"",
	}
	msg := err.Error()
	for _, k := range wantKeys {
		if !strings.Contains(msg, k) {
			t.Errorf("Validate error lacks %q:\n%s", k, msg)
		}
	}
	if n := len(strings.Split(msg, "\n")); n != len(wantKeys) {
		t.Errorf("Validate reported %d problems, want %d:\n%s", n, len(wantKeys), msg)
	}
}

func TestValidateTLSListenNeedsCert(t *testing.T) {
	c := Config{IMAP: IMAP{TLSListen: "127.0.0.1:1993"}}
	c.ApplyDefaults()
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "imap.tls_listen: set, but tls.cert_file") {
		t.Fatalf("Validate = %v, want tls_listen-needs-cert error", err)
	}
	c.TLS = TLS{CertFile: "c", KeyFile: "k"}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate with cert = %v", err)
	}
}

func TestSlogLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{{"debug", "DEBUG"}, {"INFO", "INFO"}, {"warn", "WARN"}, {"warning", "WARN"}, {"error", "ERROR"}} {
		c := Config{Log: Log{Level: tc.in}}
		l, err := c.SlogLevel()
		if err != nil || l.String() != tc.want {
			t.Errorf("SlogLevel(%q) = %v, %v; want %s", tc.in, l, err, tc.want)
		}
	}
}

// TestValidateS3AndCache: S3 settings are checked only with a bucket, a
// bucket is required once any is given, and cache settings are checked.
func TestValidateS3AndCache(t *testing.T) {
	cases := []struct {
		name string
		edit func(c *Config)
		want []string // substrings, one per problem; none: valid
	}{
		{"no s3", func(c *Config) {}, nil},
		{"bucket only", func(c *Config) { c.S3.Bucket = "mail" }, nil},
		{"endpoint without bucket", func(c *Config) { c.S3.Endpoint = "http://127.0.0.1:1" }, []string{"s3.bucket: required"}},
		{"bad bucket and endpoint", func(c *Config) {
			c.S3 = s3.Config{Bucket: "Bad_Bucket", Endpoint: "ftp://x"}
		}, []string{"config: invalid: s3: invalid config: endpoint", "config: invalid: s3: invalid config: bucket"}},
		{"ip endpoint needs path style", func(c *Config) {
			c.S3 = s3.Config{Bucket: "mail", Endpoint: "http://127.0.0.1:7070"}
		}, []string{"path_style"}},
		{"cache", func(c *Config) { c.Cache.MaxBytes, c.Cache.Policy = -1, "mru" }, []string{"cache.max_bytes: -1", `cache.policy: "mru"`}},
	}
	for _, tc := range cases {
		c := Config{}
		tc.edit(&c)
		c.ApplyDefaults()
		err := c.Validate()
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%s: Validate = %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", tc.name, err)
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(tc.want) {
			t.Errorf("%s: %d problems, want %d:\n%v", tc.name, len(lines), len(tc.want), err)
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("%s: problem %d = %q, want it to contain %q", tc.name, i, lines[i], w)
			}
		}
	}
}

func TestUnknownS3Key(t *testing.T) {
	path := writeFile(t, "[s3]\nbucket = \"mail\"\nmultipart_put = true\n")
	if _, err := LoadFile(path); !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "s3.multipart_put") {
		t.Fatalf("LoadFile = %v, want ErrFile naming s3.multipart_put", err)
	}
}

// TestUserDB: the userdb key as a string and as a table, the --userdb
// flag over the file, validation and the masked URL.
func TestUserDB(t *testing.T) {
	dir := t.TempDir()
	load := func(file string, args ...string) (Config, error) {
		t.Helper()
		path := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		fs := flag.NewFlagSet("user", flag.ContinueOnError)
		f := RegisterFlags(fs, false)
		if err := fs.Parse(append([]string{"--config", path}, args...)); err != nil {
			t.Fatal(err)
		}
		return f.Load()
	}
	c, err := load(`userdb = "passwd-file:/etc/dovecot/users"`)
	if err != nil || c.UserDB != (UserDB{URL: "passwd-file:/etc/dovecot/users"}) || c.UserDB.Kind() != "passwd-file" {
		t.Fatalf("string form: %+v, %v", c.UserDB, err)
	}
	c, err = load(`userdb = "passwd-file:/etc/dovecot/users"`, "--userdb", "redis://127.0.0.1:6379/0")
	if err != nil || c.UserDB.URL != "redis://127.0.0.1:6379/0" || c.UserDB.Kind() != "redis" {
		t.Fatalf("flag over file: %+v, %v", c.UserDB, err)
	}
	c, err = load(`[userdb]
url = "mysql://dovecot:s3cr%40t@db.example.org/postfix"
password_query = "SELECT password FROM mailbox WHERE username = '%u'"
user_query = "SELECT quota FROM mailbox WHERE username = '%u'"
`)
	want := UserDB{URL: "mysql://dovecot:s3cr%40t@db.example.org/postfix",
		PasswordQuery: "SELECT password FROM mailbox WHERE username = '%u'", UserQuery: "SELECT quota FROM mailbox WHERE username = '%u'"}
	if err != nil || c.UserDB != want {
		t.Fatalf("table form: %+v, %v", c.UserDB, err)
	}
	if got := c.UserDB.Redacted(); got != "mysql://dovecot:xxxxx@db.example.org/postfix" {
		t.Errorf("Redacted = %q", got)
	}
	if got := fmt.Sprint(slog.AnyValue(c).Resolve()); strings.Contains(got, "s3cr") {
		t.Errorf("LogValue shows the database password: %s", got)
	}
	c, err = load("[userdb]\nurl = \"redis://h/0\"\nkey_template = \"u:{address}\"\ntimeout = \"2s\"\n")
	if err != nil || c.UserDB != (UserDB{URL: "redis://h/0", KeyTemplate: "u:{address}", Timeout: 2 * time.Second}) {
		t.Fatalf("redis table: %+v, %v", c.UserDB, err)
	}
	c, err = load("[userdb]\nurl = \"dynamodb://users\"\nregion = \"eu-west-3\"\nconsistent_read = true\nmax_attempts = 5\n")
	if err != nil || c.UserDB != (UserDB{URL: "dynamodb://users", Region: "eu-west-3", ConsistentRead: true, MaxAttempts: 5}) {
		t.Fatalf("dynamodb table: %+v, %v", c.UserDB, err)
	}
	for _, tc := range []struct{ file, want string }{
		{`userdb = "ldap://x"`, "userdb: \"ldap://x\": want sqlite"},
		{`userdb = "passwd-file:"`, "passwd-file: needs a path"},
		{"[userdb]\nurl = \"redis://h\"\npassword_query = \"x\"\nuser_query = \"y\"\n", "for postgres and mysql only"},
		{"[userdb]\nurl = \"postgres://h/db\"\npassword_query = \"x\"\n", "both password_query and user_query"},
		{"[userdb]\nurl = \"postgres://h/db\"\nkey_template = \"x\"\n", "for redis only"},
		{"[userdb]\nurl = \"postgres://h/db\"\nbogus = 1\n", `unknown key "bogus"`},
		{"[userdb]\nurl = 5\n", "userdb.url: wrong type int64"},
		{"userdb = 5\n", "want a URL string or a table"},
		{"[auth]\ncache_max_entries = -1\n", "auth.cache_max_entries: -1: must not be negative"},
	} {
		_, err := load(tc.file)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("load(%q) = %v, want an error containing %q", tc.file, err, tc.want)
		}
	}
}

func TestClusterFlags(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f := RegisterFlags(fs, true)
	if err := fs.Parse([]string{"--metadb", "postgres://bm:pw@127.0.0.1:5432/mail", "--bus=nats://127.0.0.1:4222", "--s3-bucket", "mail",
		"--node-name", "mx2", "--userdb", "postgres://bm:pw@127.0.0.1:5432/mail"}); err != nil {
		t.Fatal(err)
	}
	c, err := f.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.MetaDB != "postgres://bm:pw@127.0.0.1:5432/mail" || c.MetaDBKind() != "postgres" ||
		c.Bus != "nats://127.0.0.1:4222" || c.BusKind() != "nats" || c.NodeName != "mx2" {
		t.Fatalf("Load() = metadb %q (%s), bus %q (%s), node %q", c.MetaDB, c.MetaDBKind(), c.Bus, c.BusKind(), c.NodeName)
	}
	if got := c.LogValue().String(); strings.Contains(got, ":pw@") || !strings.Contains(got, "metadb=postgres://bm:xxxxx@127.0.0.1:5432/mail") {
		t.Errorf("LogValue = %s", got)
	}
}

func TestClusterNeedsSharedUserDB(t *testing.T) {
	c := Config{MetaDB: "postgres://127.0.0.1/mail", S3: s3.Config{Bucket: "mail"}}
	c.ApplyDefaults()
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "userdb: sqlite is one server's file") {
		t.Fatalf("Validate = %v, want the shared-userdb error", err)
	}
	c.UserDB.URL = "postgres://127.0.0.1/mail"
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate with a postgres userdb = %v", err)
	}
}

// TestClusterNeedsBucket (newcomer finding 4): a shared index with the
// mail on one server's disk is refused; with a bucket it is accepted.
func TestClusterNeedsBucket(t *testing.T) {
	c := Config{MetaDB: "postgres://127.0.0.1/mail", UserDB: UserDB{URL: "postgres://127.0.0.1/mail"}}
	c.ApplyDefaults()
	err := c.Validate()
	if err == nil || !errors.Is(err, ErrInvalid) || err.Error() != "config: invalid: s3.bucket: required with metadb = postgres: "+
		"the mail must be shared too (without a bucket it stays under this server's data_dir/blobs)" {
		t.Fatalf("Validate = %v, want only the s3.bucket error", err)
	}
	c.S3.Bucket = "mail"
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate with a bucket = %v", err)
	}
}

// TestBusNeedsHost (finding 12): nats:// and postgres:// bus URLs must
// name a host (or, for PostgreSQL, a host query parameter).
func TestBusNeedsHost(t *testing.T) {
	for _, tc := range []struct {
		bus  string
		want string // "" = valid
	}{
		{"nats://", `bus: "nats://": no host`},
		{"nats://:4222", `bus: "nats://:4222": no host`},
		{"postgres:///mail", `bus: "postgres:///mail": no host`},
		{"postgresql://bm:secret@/mail", `bus: "postgresql://bm:xxxxx@/mail": no host`},
		{"nats://127.0.0.1:4222", ""},
		{"postgres://bm@db.example.org/mail", ""},
		{"postgres:///mail?host=/run/postgresql", ""},
		{"local", ""},
	} {
		c := Config{Bus: tc.bus}
		c.ApplyDefaults()
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("bus %q: Validate = %v, want nil", tc.bus, err)
		case tc.want != "" && (err == nil || err.Error() != "config: invalid: "+tc.want+
			" (want nats://host:port or postgres://user@host/db)"):
			t.Errorf("bus %q: Validate = %v, want %q", tc.bus, err, tc.want)
		}
	}
}

// TestMaxLineLength (finding 13): 0 (default) or at least 1000 octets
// (RFC 5321 §4.5.3.1.6).
func TestMaxLineLength(t *testing.T) {
	for _, tc := range []struct {
		n  int
		ok bool
	}{{0, true}, {1000, true}, {1 << 20, true}, {999, false}, {10, false}, {-1, false}} {
		c := Config{LMTP: LMTP{MaxLineLength: tc.n}}
		c.ApplyDefaults()
		err := c.Validate()
		want := fmt.Sprintf("config: invalid: lmtp.max_line_length: %d: want 0 (the default) or at least 1000 bytes "+
			"(RFC 5321 §4.5.3.1.6: text lines up to 1000 octets)", tc.n)
		if tc.ok && err != nil || !tc.ok && (err == nil || err.Error() != want) {
			t.Errorf("max_line_length %d: Validate = %v", tc.n, err)
		}
	}
}

// TestRedactURL (finding 10): user:password@ and password query
// parameters are masked in metadb, bus and userdb; nothing else changes.
func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://bm@127.0.0.1:25432/mail?password=QueryPW1":                  "postgres://bm@127.0.0.1:25432/mail?password=xxxxx",
		"postgres://bm@h/mail?sslmode=disable&PassWord=Q%26W&connect_timeout=5": "postgres://bm@h/mail?sslmode=disable&PassWord=xxxxx&connect_timeout=5",
		"postgres://bm:pw@h/mail?password=x#frag":                               "postgres://bm:xxxxx@h/mail?password=xxxxx#frag",
		"postgres://bm:p@ss@h:5432/mail":                                        "postgres://bm:xxxxx@h:5432/mail",
		"mysql://u:secret@tcp(h:3306)/db?parseTime=true":                        "mysql://u:xxxxx@tcp(h:3306)/db?parseTime=true",
		"redis://:secret@h:6379/0":                                              "redis://:xxxxx@h:6379/0",
		"nats://h:4222":                                                         "nats://h:4222",
		"postgres://bm@h/mail?passwordx=1":                                      "postgres://bm@h/mail?passwordx=1",
		"sqlite":                                                                "sqlite",
		"passwd-file:/etc/dovecot/users":                                        "passwd-file:/etc/dovecot/users",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
		if got := (UserDB{URL: in}).Redacted(); got != want {
			t.Errorf("UserDB{%q}.Redacted() = %q, want %q", in, got, want)
		}
	}
	c := Config{MetaDB: "postgres://bm@127.0.0.1:25432/mail?password=QueryPW1", Bus: "postgres://bm@h/mail?password=QueryPW2",
		UserDB: UserDB{URL: "postgres://bm@h/users?password=QueryPW3"}}
	c.ApplyDefaults()
	if got := c.LogValue().String(); strings.Contains(got, "QueryPW") ||
		!strings.Contains(got, "metadb=postgres://bm@127.0.0.1:25432/mail?password=xxxxx") {
		t.Errorf("LogValue = %s", got)
	}
}
