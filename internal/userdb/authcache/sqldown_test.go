package authcache

import (
	"errors"
	"testing"

	"github.com/bucketmail/bucketmail/internal/testutil/pg"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
	"github.com/bucketmail/bucketmail/internal/userdb/sqldb"
)

// TestSQLBackendStopped: PostgreSQL stopped under the cache (finding
// 9). Every uncached Authenticate and Lookup keeps userdb.ErrUnavailable
// in its chain (IMAP answers NO [UNAVAILABLE], LMTP 451 4.3.0), nothing
// is cached from the outage, and what was cached before is still served.
func TestSQLBackendStopped(t *testing.T) {
	srv, err := pg.Start()
	if err != nil {
		pg.Skip(t, err)
		return
	}
	defer srv.Stop()
	name, err := srv.CreateDB(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	d, err := sqldb.OpenWith(ctx, srv.URL(name), sqldb.Options{Hasher: func(pw string) (string, error) {
		return password.HashScheme("SHA256-CRYPT", pw)
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, a := range []string{"alice@example.org", "bob@example.org"} {
		if err := d.AddUser(ctx, a, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	c := New(d, Options{})
	if _, err := c.Authenticate(ctx, "alice@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for range 2 {
		for _, call := range []struct {
			name string
			f    func() error
		}{
			{"Authenticate bob", func() error { _, err := c.Authenticate(ctx, "bob@example.org", "pw"); return err }},
			{"Authenticate alice, other password", func() error { _, err := c.Authenticate(ctx, "alice@example.org", "pw2"); return err }},
			{"Lookup bob", func() error { _, err := c.Lookup(ctx, "bob@example.org"); return err }},
			{"Lookup unknown", func() error { _, err := c.Lookup(ctx, "nobody@example.org"); return err }},
		} {
			if err := call.f(); !errors.Is(err, userdb.ErrUnavailable) {
				t.Errorf("%s with PostgreSQL stopped: %v, want ErrUnavailable", call.name, err)
			}
		}
	}
	if u, err := c.Authenticate(ctx, "alice@example.org", "pw"); err != nil || u.Address != "alice@example.org" {
		t.Errorf("cached Authenticate alice: %v, %v", u, err)
	}
	if st := c.Stats(); st.Entries != 2 || st.Hits != 1 || st.Misses != 10 {
		t.Errorf("stats %+v, want 2 entries (cached before the outage), 1 hit, 10 misses", st)
	}
}
