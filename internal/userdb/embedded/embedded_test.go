package embedded

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
	"github.com/bucketmail/bucketmail/internal/userdb/userdbtest"
)

// cheap hashes keep the suite fast; TestDefaultHash covers the default.
var cheap = func(pw string) (string, error) {
	return password.HashArgon2ID(pw, password.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1})
}

func open(t *testing.T, opts ...Option) *DB {
	t.Helper()
	d, _ := openSQL(t, opts...)
	return d
}

func openSQL(t *testing.T, opts ...Option) (*DB, *sql.DB) {
	t.Helper()
	ctx := context.Background()
	sqldb, err := metadb.OpenSQLite(ctx, filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqldb.Close() })
	d, err := New(ctx, sqldb, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d, sqldb
}

// downer takes the backend down by closing its SQLite handle (the file
// gone or the index broken): every call must be ErrUnavailable.
type downer struct {
	*DB
	sqldb *sql.DB
}

func (d downer) Down(t *testing.T) { d.sqldb.Close() }

func TestConformance(t *testing.T) {
	userdbtest.Run(t, func(t *testing.T, seed []userdbtest.Seed) userdbtest.Backend {
		d, sqldb := openSQL(t, WithHasher(cheap))
		ctx := context.Background()
		for _, s := range seed {
			if err := d.AddUser(ctx, s.Address, s.Password); err != nil {
				t.Fatal(err)
			}
			if s.Disabled {
				if err := d.SetDisabled(ctx, s.Address, true); err != nil {
					t.Fatal(err)
				}
			}
			if s.QuotaBytes != 0 {
				if err := d.SetQuota(ctx, s.Address, s.QuotaBytes); err != nil {
					t.Fatal(err)
				}
			}
		}
		return downer{d, sqldb}
	})
}

// TestPolicies: local_part_case and normalize (issue 5 item 4).
func TestPolicies(t *testing.T) {
	userdbtest.RunPolicies(t, func(t *testing.T, p userdb.AddressPolicy, seed []userdbtest.Seed) userdbtest.Backend {
		d := open(t, WithHasher(cheap), WithPolicy(p))
		for _, s := range seed {
			if err := d.AddUser(context.Background(), s.Address, s.Password); err != nil {
				t.Fatal(err)
			}
		}
		return d
	})
}

func TestDefaultHash(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	if err := d.AddUser(ctx, "a@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	var stored string
	if err := d.db.QueryRowContext(ctx, `SELECT password FROM users WHERE address = 'a@example.org'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$") {
		t.Fatalf("stored hash %q is not a default ARGON2ID hash", stored)
	}
	if _, err := d.Authenticate(ctx, "a@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
}

// TestDovecotHashes stores hashes made by doveadm, as a user table moved
// from Dovecot would hold them, and logs in with them.
func TestDovecotHashes(t *testing.T) {
	doveadm, err := exec.LookPath("doveadm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("doveadm not installed (CI=true): apt-get install dovecot-core")
		}
		t.Skip("doveadm not installed")
	}
	d := open(t, WithHasher(cheap))
	ctx := context.Background()
	for i, scheme := range []string{"BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "ARGON2ID", "PLAIN"} {
		addr := strings.ToLower(scheme) + "@example.org"
		out, err := exec.Command(doveadm, "pw", "-s", scheme, "-p", "dovecot pw").Output()
		if err != nil {
			t.Fatal(err)
		}
		if err := d.AddUser(ctx, addr, "placeholder"); err != nil {
			t.Fatal(err)
		}
		if err := d.SetPasswordHash(ctx, addr, strings.TrimSpace(string(out))); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Authenticate(ctx, addr, "dovecot pw"); err != nil {
			t.Errorf("%d %s: %v", i, scheme, err)
		}
		if _, err := d.Authenticate(ctx, addr, "placeholder"); !errors.Is(err, userdb.ErrAuthFailed) {
			t.Errorf("%s: old password = %v", scheme, err)
		}
	}
}

func TestBrokenHash(t *testing.T) {
	d := open(t, WithHasher(cheap))
	ctx := context.Background()
	d.AddUser(ctx, "x@example.org", "pw")
	d.SetPasswordHash(ctx, "x@example.org", "{NOSUCH}abc")
	_, err := d.Authenticate(ctx, "x@example.org", "abc")
	if !errors.Is(err, userdb.ErrAuthFailed) || !errors.Is(err, password.ErrUnknownScheme) {
		t.Fatalf("Authenticate with unknown scheme = %v", err)
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "index.db")
	for i := range 2 {
		sqldb, err := metadb.OpenSQLite(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(ctx, sqldb, WithHasher(cheap))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := d.AddUser(ctx, "keep@example.org", "pw"); err != nil {
				t.Fatal(err)
			}
		} else if _, err := d.Authenticate(ctx, "keep@example.org", "pw"); err != nil {
			t.Fatalf("after reopen: %v", err)
		}
		sqldb.Close()
	}
}

func TestUnavailable(t *testing.T) {
	d := open(t, WithHasher(cheap))
	d.db.Close()
	ctx := context.Background()
	if _, err := d.Lookup(ctx, "a@example.org"); !errors.Is(err, userdb.ErrUnavailable) {
		t.Fatalf("Lookup on a closed DB = %v, want ErrUnavailable", err)
	}
	if _, err := d.Authenticate(ctx, "a@example.org", "x"); !errors.Is(err, userdb.ErrUnavailable) {
		t.Fatalf("Authenticate on a closed DB = %v, want ErrUnavailable", err)
	}
}
