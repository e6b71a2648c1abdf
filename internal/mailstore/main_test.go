package mailstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/testutil/pg"
)

// The package's tests run twice: on SQLite, then (TestMain re-runs the
// test binary with BUCKETMAIL_TEST_METADB=postgres) on PostgreSQL, one
// server for the whole run and a fresh database per test store. Set
// BUCKETMAIL_TEST_METADB=sqlite to run only the first pass. Without
// PostgreSQL installed the second pass is skipped, or fails when CI=true.

const envMetaDB = "BUCKETMAIL_TEST_METADB"

// onPG reports whether this run of the tests is the PostgreSQL one.
var onPG = os.Getenv(envMetaDB) == "postgres"

// pgServer is the PostgreSQL of the second run.
var pgServer *pg.Server

func TestMain(m *testing.M) {
	if onPG {
		os.Exit(runOnPG(m))
	}
	code := m.Run()
	if os.Getenv(envMetaDB) != "" {
		os.Exit(code)
	}
	fmt.Printf("=== mailstore: the same tests on PostgreSQL (%s=postgres)\n", envMetaDB)
	cmd := exec.Command(os.Args[0], childArgs(os.Args[1:])...)
	cmd.Env = append(os.Environ(), envMetaDB+"=postgres")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Printf("mailstore: PostgreSQL run: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// childArgs drops the flags whose output file the second run would
// overwrite (go test's cache log, profiles).
func childArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "test.testlogfile", "test.coverprofile", "test.cpuprofile", "test.memprofile",
			"test.blockprofile", "test.mutexprofile", "test.trace":
			if !hasValue {
				i++
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

func runOnPG(m *testing.M) int {
	srv, err := pg.Start()
	if err != nil {
		if errors.Is(err, pg.ErrMissing) && os.Getenv("CI") != "true" {
			fmt.Printf("mailstore: PostgreSQL run skipped: %v\n", err)
			return 0
		}
		fmt.Printf("mailstore: PostgreSQL run: %v\n", err)
		return 1
	}
	defer srv.Stop()
	pgServer = srv
	return m.Run()
}

// newMetaDB names a fresh metadata database for a test store: the SQLite
// file path as given, or on the PostgreSQL run the URL of a new database.
func newMetaDB(t testing.TB, path string) string {
	t.Helper()
	if !onPG {
		return path
	}
	name, err := pgServer.CreateDB(context.Background(), "mailstore")
	if err != nil {
		t.Fatal(err)
	}
	return pgServer.URL(name)
}

// openMetaDB opens a database named by newMetaDB (again and again: a
// restart, or another server).
func openMetaDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	ctx := context.Background()
	var db *sql.DB
	var err error
	if metadb.IsPostgresURL(dsn) {
		db, err = metadb.OpenPostgres(ctx, dsn)
	} else {
		db, err = metadb.OpenSQLite(ctx, dsn)
	}
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// sqliteOnly skips a test about SQLite itself on the PostgreSQL run.
func sqliteOnly(t *testing.T, why string) {
	t.Helper()
	if onPG {
		t.Skip("SQLite only: " + why)
	}
}

// TestSchemaParity: the PostgreSQL schema (metadb.MailMigrationsPG,
// journalMigrationsPG) has the same tables, with the same columns in the
// same order, and the same indexes as the SQLite one, and the same
// versions, so that one set of queries serves both.
func TestSchemaParity(t *testing.T) {
	if !onPG {
		t.Skip("compares with PostgreSQL: runs in the PostgreSQL pass")
	}
	e := newEnv(t) // PostgreSQL
	ctx := context.Background()
	lite, err := metadb.OpenSQLite(ctx, t.TempDir()+"/meta.db")
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	ls, err := Open(ctx, Options{DB: lite, Blobs: e.blobs, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	describe := func(db *sql.DB, tables, columns, indexes string) string {
		var b strings.Builder
		names, err := queryStrings(ctx, db, tables)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			cols, err := queryStrings(ctx, db, columns, n)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := queryStrings(ctx, db, indexes, n)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s(%s) indexes %v\n", n, strings.Join(cols, ", "), idx)
		}
		return b.String()
	}
	got := describe(e.db,
		`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`,
		`SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position`,
		`SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ?
			AND indexname NOT LIKE '%pkey' AND indexname NOT LIKE '%key' ORDER BY indexname`)
	want := describe(lite,
		`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name`,
		`SELECT name FROM pragma_table_info(?) ORDER BY cid`,
		`SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY name`)
	t.Logf("schema:\n%s", got)
	if got != want {
		t.Errorf("PostgreSQL schema:\n%s\nSQLite schema:\n%s", got, want)
	}
	for _, c := range []string{"mail", "journal"} {
		pv, err1 := metadb.Version(ctx, e.db, c)
		sv, err2 := metadb.Version(ctx, lite, c)
		if err1 != nil || err2 != nil || pv != sv || pv == 0 {
			t.Errorf("%s schema version: PostgreSQL %d (%v), SQLite %d (%v)", c, pv, err1, sv, err2)
		}
	}
}
