package s3

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/bucketmail/bucketmail/internal/blob"
)

// ErrConfig is wrapped by every problem Config.Validate reports.
var ErrConfig = errors.New("s3: invalid config")

// Defaults used for zero Config fields.
const (
	DefaultRegion         = "us-east-1"
	DefaultConnectTimeout = 5 * time.Second
	DefaultIdleTimeout    = 10 * time.Second
	DefaultMaxAttempts    = 3
	DefaultMaxBackoff     = 2 * time.Second
)

// Config holds the S3 settings. It is plain data: the zero value of every
// field is its documented default. The TOML keys (toml tags) match the
// flags --s3-endpoint, --s3-bucket, --s3-region, --s3-prefix and
// --s3-path-style. Secrets never appear here: credentials come from the
// environment or a file (see Credentials* below), and String never prints
// them.
type Config struct {
	// Endpoint is the service URL, "http://host:port" or "https://host"
	// (no path, query or fragment). Empty: AWS S3 for Region (or the
	// endpoint in $AWS_ENDPOINT_URL_S3 / $AWS_ENDPOINT_URL).
	Endpoint string `toml:"endpoint"`
	// Region signs requests. Empty: $AWS_REGION, else "us-east-1".
	Region string `toml:"region"`
	// Bucket must exist; required. S3 naming rules: 3..63 bytes of
	// [a-z0-9.-], starting and ending with a letter or digit.
	Bucket string `toml:"bucket"`
	// Prefix, when set, puts every object under "Prefix/" in the bucket
	// (a trailing slash is optional), so several stores can share a
	// bucket. It must itself be a valid blob key; keys seen by callers
	// never include it. S3 limits object names to 1024 bytes, so the
	// prefix shortens the longest usable blob key.
	Prefix string `toml:"prefix"`
	// PathStyle addresses objects as https://endpoint/bucket/key instead
	// of https://bucket.endpoint/key. Needed by most S3-compatible servers
	// (versitygw, MinIO) and for an IP address or localhost endpoint.
	PathStyle bool `toml:"path_style"`

	// CredentialsFile is an AWS shared credentials file (INI:
	// "[profile]" then aws_access_key_id, aws_secret_access_key, optional
	// aws_session_token). Empty: the standard AWS chain, starting with
	// $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY, then ~/.aws/credentials,
	// then instance roles.
	CredentialsFile string `toml:"credentials_file"`
	// CredentialsProfile is the profile read from CredentialsFile. Empty:
	// "default".
	CredentialsProfile string `toml:"credentials_profile"`
	// Credentials, when set, overrides both of the above. For programs
	// and tests; not settable from TOML.
	Credentials aws.CredentialsProvider `toml:"-"`

	// CAFile is a PEM bundle of extra CAs trusted for an https endpoint.
	// Empty: the system roots only.
	CAFile string `toml:"ca_file"`
	// InsecureSkipVerify turns TLS certificate verification off. For
	// tests only; false (verify) by default.
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`

	// ConnectTimeout bounds a TCP (and TLS) connect. Zero: 5s.
	ConnectTimeout time.Duration `toml:"connect_timeout"`
	// IdleTimeout fails a request when its connection moves no byte in
	// either direction for this long: a stalled upload, a server that does
	// not answer, a download that stops. Zero: 10s. With MaxAttempts
	// tries, a hung server fails an operation after about MaxAttempts *
	// IdleTimeout (plus backoff): 30s with the defaults; lower both where
	// an LMTP client should get its 451 sooner.
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// MaxAttempts bounds the tries of one operation (1 = no retry).
	// Retried: connection errors, timeouts, HTTP 500/502/503/504 and
	// throttling (503 SlowDown), with jittered exponential backoff. A Put
	// is retried only when its reader is an io.Seeker. Retries also draw
	// on the SDK's retry token bucket (500 tokens per Store, 14 per retry,
	// 5 per throttling retry, paid back by successes): during a long outage
	// the store stops retrying and fails at the first try until requests
	// succeed again. Zero: 3.
	MaxAttempts int `toml:"max_attempts"`
	// MaxBackoff caps the wait between two tries. Zero: 2s.
	MaxBackoff time.Duration `toml:"max_backoff"`

	// SpoolDir holds the temporary copy Put makes of a body it can
	// neither seek nor verify otherwise (plain http, unseekable reader, no
	// MetaSHA256; see the package doc). Empty: os.TempDir().
	SpoolDir string `toml:"spool_dir"`
	// SkipBucketCheck makes New skip its HeadBucket request, so a store
	// can be created while S3 is down (operations then fail with
	// blob.ErrUnavailable until it is back).
	SkipBucketCheck bool `toml:"skip_bucket_check"`
}

// String describes the config for logs: endpoint, region, bucket,
// prefix and options, never credentials.
func (c Config) String() string {
	ep := c.Endpoint
	if ep == "" {
		ep = "aws"
	}
	return fmt.Sprintf("s3 endpoint=%s region=%s bucket=%s prefix=%q path_style=%v",
		ep, c.Region, c.Bucket, c.Prefix, c.PathStyle)
}

// Validate reports every problem in the config at once, each wrapping
// ErrConfig (errors.Join). It does no I/O.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...)))
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		switch {
		case err != nil:
			bad("endpoint", "%v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			bad("endpoint", "%q: scheme must be http or https", c.Endpoint)
		case u.Host == "" || u.Hostname() == "":
			bad("endpoint", "%q: no host", c.Endpoint)
		case u.User != nil:
			bad("endpoint", "%q: credentials do not belong in the URL", u.Redacted())
		case strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "":
			bad("endpoint", "%q: no path, query or fragment allowed", c.Endpoint)
		default:
			h := u.Hostname()
			if !c.PathStyle && (net.ParseIP(h) != nil || h == "localhost") {
				bad("path_style", "endpoint host %q is an IP address or localhost: path-style addressing is needed", h)
			}
		}
	}
	if c.Region != "" && !isRegion(c.Region) {
		bad("region", "%q: want lower-case letters, digits and '-'", c.Region)
	}
	if c.Bucket == "" {
		bad("bucket", "required")
	} else if !isBucket(c.Bucket) {
		bad("bucket", "%q: want 3..63 bytes of [a-z0-9.-], starting and ending with a letter or digit", c.Bucket)
	}
	if p := strings.TrimSuffix(c.Prefix, "/"); c.Prefix != "" {
		if err := blob.ValidateKey(p); err != nil {
			bad("prefix", "%q: must be a valid blob key (segments of [A-Za-z0-9._=+-], no leading slash)", c.Prefix)
		} else if len(p) > 512 {
			bad("prefix", "%d bytes, at most 512", len(p))
		}
	}
	if c.CredentialsProfile != "" && c.CredentialsFile == "" {
		bad("credentials_profile", "set without credentials_file")
	}
	if c.ConnectTimeout < 0 {
		bad("connect_timeout", "negative")
	}
	if c.IdleTimeout < 0 {
		bad("idle_timeout", "negative")
	}
	if c.MaxAttempts < 0 {
		bad("max_attempts", "negative")
	}
	if c.MaxBackoff < 0 {
		bad("max_backoff", "negative")
	}
	return errors.Join(errs...)
}

func isRegion(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isBucket checks the S3 bucket naming rules for new buckets
// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html),
// except the rules about IP-address-like and reserved names.
func isBucket(s string) bool {
	if len(s) < 3 || len(s) > 63 {
		return false
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '.' && c != '-' {
			return false
		}
	}
	return !strings.Contains(s, "..")
}

func (c Config) connectTimeout() time.Duration {
	if c.ConnectTimeout == 0 {
		return DefaultConnectTimeout
	}
	return c.ConnectTimeout
}

func (c Config) idleTimeout() time.Duration {
	if c.IdleTimeout == 0 {
		return DefaultIdleTimeout
	}
	return c.IdleTimeout
}

func (c Config) maxAttempts() int {
	if c.MaxAttempts == 0 {
		return DefaultMaxAttempts
	}
	return c.MaxAttempts
}

func (c Config) maxBackoff() time.Duration {
	if c.MaxBackoff == 0 {
		return DefaultMaxBackoff
	}
	return c.MaxBackoff
}

// keyPrefix is the normalized prefix: "" or "p/".
func (c Config) keyPrefix() string {
	if c.Prefix == "" {
		return ""
	}
	return strings.TrimSuffix(c.Prefix, "/") + "/"
}
