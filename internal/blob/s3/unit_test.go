package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/bucketmail/bucketmail/internal/blob"
)

// TestSizedReader drives sizedReader as net/http does (io.Copy, then one
// more Read) over readers of every length near size and several read
// patterns.
func TestSizedReader(t *testing.T) {
	errR := errors.New("reader failed")
	cases := []struct {
		name     string
		r        func() io.Reader
		size     int64
		wantN    int64 // bytes handed out before the error
		wantErr  error // nil: io.EOF after exactly size bytes
		seekable bool
	}{
		{"exact", func() io.Reader { return strings.NewReader("hello") }, 5, 5, nil, true},
		{"exact one-byte reads", func() io.Reader { return iotest.OneByteReader(strings.NewReader("hello")) }, 5, 5, nil, false},
		{"exact data+EOF together", func() io.Reader { return iotest.DataErrReader(strings.NewReader("hello")) }, 5, 5, nil, false},
		{"exact size 1", func() io.Reader { return strings.NewReader("h") }, 1, 1, nil, true},
		{"empty size 0", func() io.Reader { return strings.NewReader("") }, 0, 0, nil, true},
		{"short by one", func() io.Reader { return strings.NewReader("hell") }, 5, 4, blob.ErrSizeMismatch, true},
		{"short by one, one-byte reads", func() io.Reader { return iotest.OneByteReader(strings.NewReader("hell")) }, 5, 4, blob.ErrSizeMismatch, false},
		{"empty, size 1", func() io.Reader { return strings.NewReader("") }, 1, 0, blob.ErrSizeMismatch, true},
		// Too long: the last byte is never handed out.
		{"long by one", func() io.Reader { return strings.NewReader("hello!") }, 5, 4, blob.ErrSizeMismatch, true},
		{"long by one, one-byte reads", func() io.Reader { return iotest.OneByteReader(strings.NewReader("hello!")) }, 5, 4, blob.ErrSizeMismatch, false},
		{"long, size 1", func() io.Reader { return strings.NewReader("ab") }, 1, 0, blob.ErrSizeMismatch, true},
		{"long, size 0", func() io.Reader { return strings.NewReader("a") }, 0, 0, blob.ErrSizeMismatch, true},
		{"reader error", func() io.Reader { return io.MultiReader(strings.NewReader("he"), iotest.ErrReader(errR)) }, 5, 2, errR, false},
		{"reader error at last byte", func() io.Reader { return io.MultiReader(strings.NewReader("hell"), iotest.ErrReader(errR)) }, 5, 4, errR, false},
		{"reader error after last byte", func() io.Reader { return io.MultiReader(strings.NewReader("hello"), iotest.ErrReader(errR)) }, 5, 4, errR, false},
		{"no progress", func() io.Reader { return stuck{} }, 5, 0, io.ErrNoProgress, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSizedReader(context.Background(), c.r(), c.size)
			if s.seekable() != c.seekable {
				t.Errorf("seekable = %v, want %v", s.seekable(), c.seekable)
			}
			var got strings.Builder
			n, err := io.Copy(&got, s)
			if err == nil {
				var b [8]byte
				if m, e := s.Read(b[:]); m != 0 || e != io.EOF {
					t.Errorf("Read after EOF = %d, %v", m, e)
				}
			}
			if n != c.wantN {
				t.Errorf("handed out %d bytes (%q), want %d", n, got.String(), c.wantN)
			}
			if c.wantErr == nil && err != nil || c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Errorf("err = %v, want %v", err, c.wantErr)
			}
			if c.wantErr != nil && !errors.Is(s.failure(), c.wantErr) {
				t.Errorf("failure() = %v, want %v", s.failure(), c.wantErr)
			}
		})
	}
}

type stuck struct{}

func (stuck) Read([]byte) (int, error) { return 0, nil }

// TestSizedReaderSeek: rewinding (what the SDK does to retry) starts the
// count over; the end is start+size; a failed body refuses to rewind.
func TestSizedReaderSeek(t *testing.T) {
	r := strings.NewReader("xxhello")
	r.Seek(2, io.SeekStart)
	s := seekableSized{newSizedReader(context.Background(), r, 5)}
	if pos, err := s.Seek(0, io.SeekCurrent); pos != 2 || err != nil {
		t.Fatalf("Seek(0, current) = %d, %v; want 2", pos, err)
	}
	if end, err := s.Seek(0, io.SeekEnd); end != 7 || err != nil {
		t.Fatalf("Seek(0, end) = %d, %v; want 7", end, err)
	}
	s.Seek(2, io.SeekStart)
	for range 2 {
		b, err := io.ReadAll(s)
		if string(b) != "hello" || err != nil {
			t.Fatalf("read %q, %v", b, err)
		}
		if _, err := s.Seek(2, io.SeekStart); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Seek(1, io.SeekStart); err == nil {
		t.Fatal("Seek before the start succeeded")
	}
	short := seekableSized{newSizedReader(context.Background(), strings.NewReader("hell"), 5)}
	io.Copy(io.Discard, short)
	if _, err := short.Seek(0, io.SeekStart); !errors.Is(err, blob.ErrSizeMismatch) {
		t.Fatalf("rewind after mismatch = %v, want ErrSizeMismatch", err)
	}
}

func TestSizedReaderCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := newSizedReader(ctx, strings.NewReader("hello"), 5)
	var b [2]byte
	if n, err := s.Read(b[:]); n != 2 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	cancel()
	if _, err := s.Read(b[:]); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %v, want context.Canceled", err)
	}
}

func TestMetaEncoding(t *testing.T) {
	cases := []struct {
		in, wire string
	}{
		{"plain", "plain"},
		{"a b c", "a b c"},
		{"", "=?UTF-8?B??="},
		{" lead", "=?UTF-8?B?IGxlYWQ=?="},
		{"trail ", "=?UTF-8?B?dHJhaWwg?="},
		{"two  spaces", "=?UTF-8?B?dHdvICBzcGFjZXM=?="},
		{"=?x", "=?UTF-8?B?PT94?="},
		{"=?UTF-8?B?eA==?=", "=?UTF-8?B?PT9VVEYtOD9CP2VBPT0/PQ==?="},
		{"a=?b", "a=?b"},
		{"~!@#$%^&*()[]{}\"'\\", "~!@#$%^&*()[]{}\"'\\"},
	}
	for _, c := range cases {
		wire := encodeMeta(blob.Metadata{"k": c.in})["k"]
		if wire != c.wire {
			t.Errorf("encode(%q) = %q, want %q", c.in, wire, c.wire)
		}
		if back := decodeMeta(map[string]string{"k": wire})["k"]; back != c.in {
			t.Errorf("decode(%q) = %q, want %q", wire, back, c.in)
		}
	}
	// Foreign values that look encoded but are not valid stay as they are.
	for _, v := range []string{"=?UTF-8?B?!!?=", "=?UTF-8?B?eA==", "=?utf-8?q?x?="} {
		if got := decodeMeta(map[string]string{"k": v})["k"]; got != v {
			t.Errorf("decode(%q) = %q, want it unchanged", v, got)
		}
	}
	if encodeMeta(nil) != nil || decodeMeta(nil) != nil {
		t.Error("empty metadata not nil")
	}
}

func TestViablePrefix(t *testing.T) {
	for p, want := range map[string]bool{
		"": true, "a": true, "a/": true, "a/b": true, "a/.": true, "a/..": true, ".": true,
		"/": false, "a//": false, "../": false, "a/../": false, "\x00": false, "a b": false,
		strings.Repeat("a", blob.MaxSegment): true, strings.Repeat("a", blob.MaxSegment+1): false,
	} {
		if got := viablePrefix(p); got != want {
			t.Errorf("viablePrefix(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Bucket: "mail"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	good := []Config{
		{Bucket: "my.bucket-1", Endpoint: "https://s3.example.com", Region: "eu-west-3", Prefix: "a/b/"},
		{Bucket: "abc", Endpoint: "http://127.0.0.1:9000/", PathStyle: true, Prefix: "x"},
		{Bucket: "abc", Endpoint: "http://localhost:9000", PathStyle: true, CredentialsFile: "/f", CredentialsProfile: "p"},
	}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%s) = %v", c, err)
		}
	}
	cases := []struct {
		cfg  Config
		want []string // one fragment per reported problem
	}{
		{Config{}, []string{"bucket: required"}},
		{Config{Bucket: "ab"}, []string{"bucket: \"ab\""}},
		{Config{Bucket: "Mail"}, []string{"bucket: \"Mail\""}},
		{Config{Bucket: "-mail"}, []string{"bucket:"}},
		{Config{Bucket: "a..b"}, []string{"bucket:"}},
		{Config{Bucket: "mail", Endpoint: "ftp://x"}, []string{"endpoint: \"ftp://x\": scheme"}},
		{Config{Bucket: "mail", Endpoint: "http://"}, []string{"endpoint: \"http://\": no host"}},
		{Config{Bucket: "mail", Endpoint: "https://h/p"}, []string{"no path"}},
		{Config{Bucket: "mail", Endpoint: "https://h?x=1"}, []string{"no path"}},
		{Config{Bucket: "mail", Endpoint: "https://u:secret@h"}, []string{"credentials do not belong"}},
		{Config{Bucket: "mail", Endpoint: "http://127.0.0.1:9000"}, []string{"path_style:"}},
		{Config{Bucket: "mail", Region: "EU West"}, []string{"region:"}},
		{Config{Bucket: "mail", Prefix: "/abs"}, []string{"prefix:"}},
		{Config{Bucket: "mail", Prefix: "a//b"}, []string{"prefix:"}},
		{Config{Bucket: "mail", Prefix: strings.Repeat("a/", 300)}, []string{"prefix: 599 bytes"}},
		{Config{Bucket: "mail", CredentialsProfile: "p"}, []string{"credentials_profile:"}},
		{Config{ConnectTimeout: -1, IdleTimeout: -1, MaxAttempts: -1, MaxBackoff: -1, Prefix: "..", Endpoint: "ftp://h"},
			[]string{"endpoint:", "bucket: required", "prefix:", "connect_timeout:", "idle_timeout:", "max_attempts:", "max_backoff:"}},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		if err == nil {
			t.Errorf("Validate(%+v) = nil, want %q", c.cfg, c.want)
			continue
		}
		if !errors.Is(err, ErrConfig) {
			t.Errorf("Validate(%+v) = %v, does not wrap ErrConfig", c.cfg, err)
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(c.want) {
			t.Errorf("Validate(%+v) reported %d problems, want %d:\n%v", c.cfg, len(lines), len(c.want), err)
			continue
		}
		for i, w := range c.want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("problem %d = %q, want it to contain %q", i, lines[i], w)
			}
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Validate error shows a secret: %v", err)
		}
	}
}

func TestConfigString(t *testing.T) {
	c := Config{Bucket: "mail", Endpoint: "http://127.0.0.1:1", Prefix: "p", PathStyle: true, CredentialsFile: "/run/secret"}
	want := `s3 endpoint=http://127.0.0.1:1 region= bucket=mail prefix="p" path_style=true`
	if got := c.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := fmt.Sprint(Config{Bucket: "b"}); !strings.Contains(got, "endpoint=aws ") {
		t.Errorf("String() = %q", got)
	}
}

// TestConfigTOML: the keys the [s3] table of the config file uses, and
// durations as strings.
func TestConfigTOML(t *testing.T) {
	const doc = `
endpoint = "http://127.0.0.1:7070"
region = "eu-west-3"
bucket = "mail"
prefix = "bm/"
path_style = true
credentials_file = "/etc/bucketmail/s3.credentials"
credentials_profile = "bm"
ca_file = "/etc/ssl/ca.pem"
insecure_skip_verify = false
connect_timeout = "2s"
idle_timeout = "1m30s"
max_attempts = 5
max_backoff = "500ms"
spool_dir = "/var/tmp"
skip_bucket_check = true
`
	var c Config
	md, err := toml.Decode(doc, &c)
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) != 0 {
		t.Fatalf("undecoded keys %v", u)
	}
	want := Config{
		Endpoint: "http://127.0.0.1:7070", Region: "eu-west-3", Bucket: "mail", Prefix: "bm/", PathStyle: true,
		CredentialsFile: "/etc/bucketmail/s3.credentials", CredentialsProfile: "bm", CAFile: "/etc/ssl/ca.pem",
		ConnectTimeout: 2 * time.Second, IdleTimeout: 90 * time.Second, MaxAttempts: 5, MaxBackoff: 500 * time.Millisecond,
		SpoolDir: "/var/tmp", SkipBucketCheck: true,
	}
	if fmt.Sprintf("%#v", c) != fmt.Sprintf("%#v", want) {
		t.Fatalf("decoded\n%#v\nwant\n%#v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
