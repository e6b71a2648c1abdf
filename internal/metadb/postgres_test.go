package metadb

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/pg"
)

var (
	pgOnce sync.Once
	pgSrv  *pg.Server
	pgErr  error
)

// pgURL starts (once per package) a PostgreSQL server and returns the
// URL of a fresh database.
func pgURL(t *testing.T) string {
	t.Helper()
	pgOnce.Do(func() { pgSrv, pgErr = pg.Start() })
	if pgErr != nil {
		pg.Skip(t, pgErr)
	}
	name, err := pgSrv.CreateDB(context.Background(), "metadb")
	if err != nil {
		t.Fatal(err)
	}
	return pgSrv.URL(name)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pgSrv != nil {
		pgSrv.Stop()
	}
	os.Exit(code)
}

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT ? , ?`, `SELECT $1 , $2`},
		{`WHERE a = '?' AND b = ?`, `WHERE a = '?' AND b = $1`},
		{`WHERE a = 'it''s ?' AND b = ?`, `WHERE a = 'it''s ?' AND b = $1`},
		{`SELECT "a?b", ? -- what?` + "\n" + `, ?`, `SELECT "a?b", $1 -- what?` + "\n" + `, $2`},
		{`SELECT /* ? */ ?, ?/**/`, `SELECT /* ? */ $1, $2/**/`},
		{`SELECT '?`, `SELECT '?`},
		{`SELECT ? -- ?`, `SELECT $1 -- ?`},
		{`max(uidnext, ?) WHERE id = ?`, `max(uidnext, $1) WHERE id = $2`},
	} {
		if got := Rebind(tc.in); got != tc.want {
			t.Errorf("Rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:secret@h:5432/db?x=1", "postgres://u:xxxxx@h:5432/db?x=1"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"host=h password=secret", "(key=value string with a password)"},
	} {
		if got := redact(tc.in); got != tc.want {
			t.Errorf("redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestOpenDispatch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, "sqlite", dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := DialectOf(db); d != SQLite {
		t.Errorf("dialect %v, want sqlite", d)
	}
	db.Close()
	if _, err := os.Stat(dir + "/index.db"); err != nil {
		t.Errorf("index.db: %v", err)
	}
	_, err = Open(ctx, "mysql://u:secret@h/db", dir)
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "want sqlite or postgres") {
		t.Errorf("unknown scheme: err = %v", err)
	}
}

func TestOpenPostgres(t *testing.T) {
	ctx := context.Background()
	url := pgURL(t)
	// Servers starting at once: every Open migrates or finds it done.
	const n = 4
	dbs := make([]*sql.DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errs[i] = Open(ctx, url, "")
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		defer dbs[i].Close()
	}
	db := dbs[0]
	if d := DialectOf(db); d != Postgres {
		t.Fatalf("dialect %v, want postgres", d)
	}
	v, err := Version(ctx, db, "mail")
	if err != nil || v != len(MailMigrationsPG) {
		t.Fatalf("version %d, %v; want %d", v, err, len(MailMigrationsPG))
	}
	if len(MailMigrationsPG) != len(MailMigrations) {
		t.Fatalf("%d PG migrations, %d SQLite ones: versions must match", len(MailMigrationsPG), len(MailMigrations))
	}
	// Placeholders, the scalar max and 64-bit integers.
	var got int64
	if err := db.QueryRowContext(ctx, `SELECT max(?, ?) + ?`, int64(7), uint32(0xfffffff0), 5).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != 0xfffffff0+5 {
		t.Errorf("max = %d, want %d", got, 0xfffffff0+5)
	}
	// Bytewise ordering (COLLATE "C"), as SQLite's BINARY.
	tx, err := BeginWrite(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (name, next_uidvalidity, created) VALUES (?, 1, 1), (?, 1, 1), (?, 1, 1), (?, 1, 1)`,
		"b", "B", "a/b", "a0"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, `SELECT name FROM accounts WHERE name >= ? ORDER BY name`, "B")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		names = append(names, s)
	}
	rows.Close()
	if g := strings.Join(names, ","); g != "B,a/b,a0,b" {
		t.Errorf("order %q, want B,a/b,a0,b", g)
	}
	// A newer schema is refused.
	if _, err := db.ExecContext(ctx, `UPDATE schema_version SET version = 99 WHERE component = 'mail'`); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPostgres(ctx, url); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("open with version 99: %v, want ErrSchema", err)
	}
}

// TestBeginWriteSerialises: a second server's write transaction waits
// for the first one's commit.
func TestBeginWriteSerialises(t *testing.T) {
	ctx := context.Background()
	url := pgURL(t)
	a, err := OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ta, err := BeginWrite(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ta.ExecContext(ctx, `INSERT INTO counters (name, value) VALUES ('x', 1)`); err != nil {
		t.Fatal(err)
	}
	got := make(chan int64, 1)
	go func() {
		tb, err := BeginWrite(ctx, b)
		if err != nil {
			got <- -1
			return
		}
		defer tb.Rollback()
		var v int64
		if err := tb.QueryRowContext(ctx, `SELECT value FROM counters WHERE name = 'x'`).Scan(&v); err != nil {
			v = -2
		}
		got <- v
	}()
	time.Sleep(300 * time.Millisecond) // time enough to run if it were not blocked
	select {
	case v := <-got:
		t.Fatalf("second writer ran while the first held the lock (read %d)", v)
	default:
	}
	// A reader is not blocked and does not see the uncommitted row.
	rt, err := BeginRead(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := rt.QueryRowContext(ctx, `SELECT count(*) FROM counters`).Scan(&n); err != nil || n != 0 {
		t.Errorf("reader: %d rows, %v; want 0", n, err)
	}
	rt.Rollback()
	if err := ta.Commit(); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != 1 {
		t.Errorf("second writer read %d, want 1 (the first one's committed row)", v)
	}
}

// TestBeginAfterBackendsTerminated: the pool's connections die (the
// server restarted, or an administrator ended them); the next write and
// read transactions still begin, and SELECTs outside a transaction
// still run, on fresh connections, without an error.
func TestBeginAfterBackendsTerminated(t *testing.T) {
	ctx := context.Background()
	url := pgURL(t)
	db, err := OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	admin, err := OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for round := range 3 {
		// Fill the pool with idle connections, taken twice: the second
		// time makes their last reset recent, so that pgx's stdlib does
		// not ping them on the next reuse (it pings after 1 s idle only).
		const n = 5
		var conns []*sql.Conn
		for tries := 0; len(conns) < n; tries++ {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.PingContext(ctx); err != nil {
				if tries > 3*n {
					t.Fatal(err)
				}
				c.Close() // a connection the last round's terminations left dead
				continue
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
		conns = conns[:0]
		for range n {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
		var killed int
		if err := admin.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend') AS t`).Scan(&killed); err != nil {
			t.Fatal(err)
		}
		if killed < n {
			t.Fatalf("round %d: %d backends terminated, want at least %d", round, killed, n)
		}
		for i := range n + 1 {
			if round == 2 { // a SELECT outside a transaction
				var one int
				if err := db.QueryRowContext(ctx, `SELECT ?::int`, 1).Scan(&one); err != nil || one != 1 {
					t.Fatalf("round %d, query %d after the terminations: %d, %v", round, i, one, err)
				}
				continue
			}
			var tx *sql.Tx
			var err error
			if round == 0 {
				tx, err = BeginWrite(ctx, db)
			} else {
				tx, err = BeginRead(ctx, db)
			}
			if err != nil {
				t.Fatalf("round %d, transaction %d after the terminations: %v", round, i, err)
			}
			var one int
			if err := tx.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
				t.Fatalf("round %d, transaction %d: %d, %v", round, i, one, err)
			}
			tx.Rollback()
		}
	}
}
