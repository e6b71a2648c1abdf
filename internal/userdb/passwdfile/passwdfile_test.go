package passwdfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
	"github.com/bucketmail/bucketmail/internal/userdb/userdbtest"
)

var ctx = context.Background()

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	userdbtest.Run(t, func(t *testing.T, seed []userdbtest.Seed) userdbtest.Backend {
		var b strings.Builder
		b.WriteString("# written by the test\n\n")
		for _, s := range seed {
			h, err := password.HashScheme("SHA256-CRYPT", s.Password)
			if err != nil {
				t.Fatal(err)
			}
			var extra []string
			if s.QuotaBytes > 0 {
				extra = append(extra, fmt.Sprintf("userdb_quota_rule=*:bytes=%d", s.QuotaBytes))
			}
			if s.Disabled {
				extra = append(extra, "nologin", "reason=gone")
			}
			fmt.Fprintf(&b, "%s:%s:1000:1000::/home/x::%s\n", s.Address, h, strings.Join(extra, " "))
		}
		path := filepath.Join(t.TempDir(), "passwd")
		writeFile(t, path, b.String())
		d, err := Open(ctx, Prefix+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return downer{d, path}
	})
}

// TestPolicies: the file's user names and the looked-up addresses are
// normalised under the configured policy (issue 5 item 4).
func TestPolicies(t *testing.T) {
	userdbtest.RunPolicies(t, func(t *testing.T, p userdb.AddressPolicy, seed []userdbtest.Seed) userdbtest.Backend {
		var b strings.Builder
		for _, s := range seed {
			h, err := password.HashScheme("SHA256-CRYPT", s.Password)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s:%s::::::\n", s.Address, h) // as written by the operator, any case
		}
		path := filepath.Join(t.TempDir(), "passwd")
		writeFile(t, path, b.String())
		d, err := Open(ctx, Prefix+path, nil, WithPolicy(p))
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// downer takes the backend down by removing its file.
type downer struct {
	*DB
	path string
}

func (d downer) Down(t *testing.T) {
	if err := os.Remove(d.path); err != nil {
		t.Fatal(err)
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		line     string
		addr     string
		hash     string
		quota    int64
		disabled bool
		err      bool
	}{
		{"alice@example.org:{PLAIN}pw", "alice@example.org", "{PLAIN}pw", 0, false, false},
		{"Alice@Example.ORG:{PLAIN}pw:::::", "alice@example.org", "{PLAIN}pw", 0, false, false},
		{"a@b:{PLAIN}pw:8:8::/home/a::userdb_quota_rule=*:bytes=1G", "a@b", "{PLAIN}pw", 1 << 30, false, false},
		{"a@b:{PLAIN}pw:8:8::/home/a::userdb_quota_rule=*:storage=1024", "a@b", "{PLAIN}pw", 1 << 20, false, false},
		{"a@b:{PLAIN}pw:8:8::/home/a::quota_rule=*:storage=2M", "a@b", "{PLAIN}pw", 2 << 20, false, false},
		{"a@b:{PLAIN}pw:8:8::/home/a::userdb_quota_rule=*:bytes=12345", "a@b", "{PLAIN}pw", 12345, false, false},
		{"a@b:{PLAIN}pw:8:8::/home/a::userdb_quota_rule=Trash:bytes=1G", "a@b", "{PLAIN}pw", 0, false, false},
		{"a@b:{PLAIN}pw:8:8::/home/a::userdb_quota_rule=*:bytes=1X", "", "", 0, false, true},
		{"a@b:{PLAIN}pw:8:8::/home/a::nologin reason=moved allow_nets=10.0.0.0/8", "a@b", "{PLAIN}pw", 0, true, false},
		{"a@b:{PLAIN}pw:8:8::/home/a::userdb_disabled=yes", "a@b", "{PLAIN}pw", 0, true, false},
		{"a@b:{PLAIN}pw:8:8::/home/a::disabled=no", "a@b", "{PLAIN}pw", 0, false, false},
		{"a@b:$6$salt$hash", "a@b", "$6$salt$hash", 0, false, false},
		{"a@b", "a@b", "", 0, false, false},
		{":{PLAIN}pw", "", "", 0, false, true},
	}
	for _, tc := range tests {
		e, err := ParseLine(tc.line)
		if tc.err {
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("ParseLine(%q) err = %v, want ErrSyntax", tc.line, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseLine(%q): %v", tc.line, err)
			continue
		}
		if e.user.Address != tc.addr || e.user.Account != tc.addr || e.hash != tc.hash || e.user.QuotaBytes != tc.quota || e.user.Disabled != tc.disabled {
			t.Errorf("ParseLine(%q) = %+v %q, want %s %q quota %d disabled %v", tc.line, e.user, e.hash, tc.addr, tc.hash, tc.quota, tc.disabled)
		}
	}
}

// TestReloadAndDown: edits take effect on the next lookup; a missing file
// is ErrUnavailable, and the users come back with it.
func TestReloadAndDown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	writeFile(t, path, "a@example.org:{PLAIN}one\n")
	d, err := Open(ctx, Prefix+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(ctx, "a@example.org", "one"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "a@example.org:{PLAIN}two\nb@example.org:{PLAIN}b\n")
	if _, err := d.Authenticate(ctx, "a@example.org", "one"); !errors.Is(err, userdb.ErrAuthFailed) {
		t.Fatalf("old password after edit: %v, want ErrAuthFailed", err)
	}
	if _, err := d.Authenticate(ctx, "a@example.org", "two"); err != nil {
		t.Fatalf("new password after edit: %v", err)
	}
	if u, err := d.Lookup(ctx, "b@example.org"); err != nil || u.Address != "b@example.org" {
		t.Fatalf("added user: %v, %v", u, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lookup(ctx, "a@example.org"); !errors.Is(err, userdb.ErrUnavailable) {
		t.Fatalf("Lookup with the file gone = %v, want ErrUnavailable", err)
	}
	if _, err := d.Authenticate(ctx, "a@example.org", "two"); !errors.Is(err, userdb.ErrUnavailable) || errors.Is(err, userdb.ErrAuthFailed) {
		t.Fatalf("Authenticate with the file gone = %v, want ErrUnavailable only", err)
	}
	writeFile(t, path, "a@example.org:{PLAIN}three\n")
	if _, err := d.Authenticate(ctx, "a@example.org", "three"); err != nil {
		t.Fatalf("after the file is back: %v", err)
	}
	if _, err := Open(ctx, Prefix+filepath.Join(t.TempDir(), "missing"), nil); !errors.Is(err, userdb.ErrUnavailable) {
		t.Fatalf("Open of a missing file = %v, want ErrUnavailable", err)
	}
	if _, err := Open(ctx, "passwd-file:", nil); err == nil {
		t.Fatal("Open without a path succeeded")
	}
}

// TestDoveadmHashes: a passwd-file whose hashes doveadm pw made, in
// several schemes, authenticates.
func TestDoveadmHashes(t *testing.T) {
	doveadm, err := exec.LookPath("doveadm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("doveadm not installed (Debian dovecot-core)")
		}
		t.Skip("doveadm not installed (Debian dovecot-core)")
	}
	var b strings.Builder
	schemes := []string{"SHA512-CRYPT", "BLF-CRYPT", "ARGON2ID", "SSHA256", "PBKDF2", "MD5-CRYPT"}
	for i, s := range schemes {
		out, err := exec.Command(doveadm, "pw", "-s", s, "-p", fmt.Sprintf("pw-%d ü", i)).Output()
		if err != nil {
			t.Fatalf("doveadm pw -s %s: %v", s, err)
		}
		fmt.Fprintf(&b, "u%d@example.org:%s::::::\n", i, strings.TrimSpace(string(out)))
	}
	path := filepath.Join(t.TempDir(), "passwd")
	writeFile(t, path, b.String())
	d, err := Open(ctx, Prefix+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range schemes {
		addr := fmt.Sprintf("u%d@example.org", i)
		if _, err := d.Authenticate(ctx, addr, fmt.Sprintf("pw-%d ü", i)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
		if _, err := d.Authenticate(ctx, addr, fmt.Sprintf("pw-%d u", i)); !errors.Is(err, userdb.ErrAuthFailed) {
			t.Errorf("%s wrong password: %v", s, err)
		}
	}
}

// TestMkpasswdHashes: a passwd-file holding crypt(3) hashes made by
// Debian's mkpasswd (whois), as /etc/shadow-style tools write them,
// without a {SCHEME} prefix (CRYPT, as in Dovecot) and with one.
func TestMkpasswdHashes(t *testing.T) {
	mkpasswd, err := exec.LookPath("mkpasswd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mkpasswd not installed (Debian whois)")
		}
		t.Skip("mkpasswd not installed (Debian whois)")
	}
	methods := []struct{ method, scheme string }{
		{"sha512crypt", "SHA512-CRYPT"}, {"sha256crypt", "SHA256-CRYPT"}, {"md5crypt", "MD5-CRYPT"}, {"bcrypt", "BLF-CRYPT"}, {"bcrypt-a", "BLF-CRYPT"},
	}
	var b strings.Builder
	for i, m := range methods {
		out, err := exec.Command(mkpasswd, "-m", m.method, "--", fmt.Sprintf("pw-%d ü", i)).Output()
		if err != nil {
			t.Fatalf("mkpasswd -m %s: %v", m.method, err)
		}
		h := strings.TrimSpace(string(out))
		fmt.Fprintf(&b, "bare%d@example.org:%s:1000:1000::/home/x:/bin/false\n", i, h)
		fmt.Fprintf(&b, "prefixed%d@example.org:{%s}%s\n", i, m.scheme, h)
	}
	path := filepath.Join(t.TempDir(), "passwd")
	writeFile(t, path, b.String())
	d, err := Open(ctx, Prefix+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range methods {
		for _, kind := range []string{"bare", "prefixed"} {
			addr := fmt.Sprintf("%s%d@example.org", kind, i)
			if u, err := d.Authenticate(ctx, addr, fmt.Sprintf("pw-%d ü", i)); err != nil || u.Address != addr {
				t.Errorf("%s %s: Authenticate = %v, %v", m.method, kind, u, err)
			}
			if _, err := d.Authenticate(ctx, addr, fmt.Sprintf("pw-%d u", i)); !errors.Is(err, userdb.ErrAuthFailed) {
				t.Errorf("%s %s wrong password: %v", m.method, kind, err)
			}
		}
	}
}
