package metadb

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

func TestOpenSQLiteSettings(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "meta.db")
	db, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Per-connection settings must hold on every pooled connection: take
	// several connections at once.
	conns := make([]interface{ Close() error }, 0, 4)
	for i := 0; i < 4; i++ {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		for _, tc := range []struct {
			pragma string
			want   string
		}{
			{"journal_mode", "wal"},
			{"synchronous", "2"}, // FULL
			{"foreign_keys", "1"},
			{"busy_timeout", "10000"},
		} {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("conn %d: PRAGMA %s = %q, want %q", i, tc.pragma, got, tc.want)
			}
		}
	}
	for _, c := range conns {
		c.Close()
	}
	v, err := Version(ctx, db, "mail")
	if err != nil {
		t.Fatal(err)
	}
	if v != len(MailMigrations) {
		t.Fatalf("mail schema version %d, want %d", v, len(MailMigrations))
	}
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	migs := []string{
		`CREATE TABLE t1 (a INTEGER)`,
		`ALTER TABLE t1 ADD COLUMN b TEXT; CREATE TABLE t2 (c INTEGER)`,
	}
	// Concurrent first runs (two processes starting at once) apply each
	// migration exactly once.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Migrate(ctx, db, "test", migs[:1])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := Version(ctx, db, "test"); v != 1 {
		t.Fatalf("version %d, want 1", v)
	}
	if err := Migrate(ctx, db, "test", migs); err != nil {
		t.Fatal(err)
	}
	if v, _ := Version(ctx, db, "test"); v != 2 {
		t.Fatalf("version %d, want 2", v)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t1 (a, b) VALUES (1, 'x'); INSERT INTO t2 (c) VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	// An older binary (knows only version 1) must refuse the newer file.
	if err := Migrate(ctx, db, "test", migs[:1]); !errors.Is(err, ErrSchema) {
		t.Fatalf("Migrate with older list: %v, want ErrSchema", err)
	}
	// A failing migration leaves the version where it was.
	bad := append(append([]string{}, migs...), `CREATE TABLE t1 (x INTEGER)`)
	if err := Migrate(ctx, db, "test", bad); err == nil {
		t.Fatal("failing migration succeeded")
	}
	if v, _ := Version(ctx, db, "test"); v != 2 {
		t.Fatalf("version after failed migration %d, want 2", v)
	}
	// Components are independent; reopening re-runs nothing.
	db.Close()
	db, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, _ := Version(ctx, db, "test"); v != 2 {
		t.Fatalf("version after reopen %d, want 2", v)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM t2`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("t2 rows %d, %v; want 1", n, err)
	}
}

// TestOpenSQLiteRace: processes opening a new database file at once (serve
// starting while `bucketmail user add` runs) all succeed: the one that
// loses the switch to WAL retries instead of failing with SQLITE_BUSY.
func TestOpenSQLiteRace(t *testing.T) {
	for round := range 20 {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("race%d.db", round))
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				db, err := OpenSQLite(context.Background(), path)
				if err == nil {
					db.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, opener %d: %v", round, i, err)
			}
		}
	}
}
