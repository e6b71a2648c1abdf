package importer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMaildir(t *testing.T) {
	dir := t.TempDir()
	t1 := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	t2 := time.Date(2021, 1, 2, 3, 4, 5, 0, time.UTC)
	t3 := time.Date(2022, 12, 31, 23, 59, 59, 0, time.UTC)
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o700)
	writeFile(t, filepath.Join(dir, "tmp", "1500000000.x.host"), "in delivery", t1)
	writeFile(t, filepath.Join(dir, "new", "1600000003.M1P2.host"), "new mail", t3)
	writeFile(t, filepath.Join(dir, "cur", "1600000001.M1P1.host:2,SR"), "seen answered", t1)
	writeFile(t, filepath.Join(dir, "cur", "1600000002.M2P1.host,S=123:2,FPTDS"), "all flags", t2)
	writeFile(t, filepath.Join(dir, "cur", "1600000002.M1P1.host:2,"), "no flags", t2)
	writeFile(t, filepath.Join(dir, "cur", "999.old:2,Sac"), "keywords", t1)
	writeFile(t, filepath.Join(dir, "cur", "notime:2,SSx"), "undated name", t2)
	writeFile(t, filepath.Join(dir, "cur", ".hidden:2,S"), "skipped", t1)
	writeFile(t, filepath.Join(dir, "dovecot-keywords"), "0 $Junk\n1 bad keyword\n2 NonJunk\n", time.Time{})
	os.MkdirAll(filepath.Join(dir, "cur", "subdir"), 0o700)

	var lines []string
	err := Maildir(context.Background(), dir, func(path string, flags []string, d time.Time) error {
		rel, _ := filepath.Rel(dir, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s|%s|%s|%s", rel, strings.Join(flags, " "), d.UTC().Format(time.RFC3339), data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`cur/999.old:2,Sac|\Seen $Junk NonJunk|2020-05-06T07:08:09Z|keywords`,
		`cur/1600000001.M1P1.host:2,SR|\Answered \Seen|2020-05-06T07:08:09Z|seen answered`,
		`cur/1600000002.M1P1.host:2,||2021-01-02T03:04:05Z|no flags`,
		`cur/1600000002.M2P1.host,S=123:2,FPTDS|\Draft \Flagged $Forwarded \Seen \Deleted|2021-01-02T03:04:05Z|all flags`,
		`new/1600000003.M1P2.host||2022-12-31T23:59:59Z|new mail`,
		`cur/notime:2,SSx|\Seen|2021-01-02T03:04:05Z|undated name`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}

	stop := errors.New("stop")
	n := 0
	err = Maildir(context.Background(), dir, func(string, []string, time.Time) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Maildir with failing fn = %v after %d", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Maildir(ctx, dir, func(string, []string, time.Time) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Maildir = %v", err)
	}
	if err := Maildir(context.Background(), filepath.Join(dir, "cur"), nil); !errors.Is(err, ErrNotMaildir) {
		t.Fatalf("Maildir(cur) = %v, want ErrNotMaildir", err)
	}
}

func TestParseMaildirFlags(t *testing.T) {
	kw := map[int]string{0: "$Junk", 3: "Work", 4: "$Forwarded"}
	tests := []struct {
		name string
		want string
	}{
		{"123.a.b", ""},
		{"123.a.b:2,", ""},
		{"123.a.b:2,S", `\Seen`},
		{"123.a.b:2,TSRPFD", `\Draft \Flagged $Forwarded \Answered \Seen \Deleted`},
		{"123.a.b:2,adz", "$Junk Work"},
		{"123.a.b:2,Pe", "$Forwarded"},
		{"123.a.b:2,XYZ", ""},
		{"123.a.b:1,S", ""},
		{"123:2,x.b:2,F", `\Flagged`},
	}
	for _, tc := range tests {
		if got := strings.Join(ParseMaildirFlags(tc.name, kw), " "); got != tc.want {
			t.Errorf("ParseMaildirFlags(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestSubfolders(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"cur", ".Sent/cur", ".Sub.Folder/new", ".Sub/cur", ".Entw&APw-rfe/cur", ".Bad&-/cur", ".Broken&AP/cur",
		".NotMaildir", ".a..b/cur", ".x./cur", "plain/cur"} {
		os.MkdirAll(filepath.Join(dir, d), 0o700)
	}
	writeFile(t, filepath.Join(dir, ".file"), "", time.Time{})
	got, err := Subfolders(dir)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, f := range got {
		rel, _ := filepath.Rel(dir, f.Path)
		s = append(s, f.Name+"="+rel)
	}
	want := "Bad&=.Bad&-, Broken&AP=.Broken&AP, Entwürfe=.Entw&APw-rfe, Sent=.Sent, Sub=.Sub, Sub/Folder=.Sub.Folder"
	if strings.Join(s, ", ") != want {
		t.Fatalf("Subfolders =\n%s\nwant\n%s", strings.Join(s, ", "), want)
	}
	if !IsMaildir(dir) || IsMaildir(filepath.Join(dir, ".NotMaildir")) {
		t.Fatal("IsMaildir wrong")
	}
}

func TestMaildirOrder(t *testing.T) {
	read := func(dir string) string {
		var names []string
		err := Maildir(context.Background(), dir, func(path string, _ []string, _ time.Time) error {
			names = append(names, filepath.Base(path))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(names, " ")
	}
	dir := t.TempDir()
	// Microseconds are not zero-padded: M99999 is before M100000.
	for _, n := range []string{"cur/1700000000.M100000P1.h:2,S", "new/1700000000.M99999P1.h", "cur/1699999999.M5P1.h:2,", "new/x.y"} {
		writeFile(t, filepath.Join(dir, n), "m", time.Time{})
	}
	if got, want := read(dir), "1699999999.M5P1.h:2, 1700000000.M99999P1.h 1700000000.M100000P1.h:2,S x.y"; got != want {
		t.Fatalf("order = %q, want %q", got, want)
	}
	// Dovecot's UID list wins; unlisted files come after.
	writeFile(t, filepath.Join(dir, "dovecot-uidlist"),
		"3 V1 N4 G0123\n1 :x.y\n2 W12 :1700000000.M100000P1.h,S=1\n3 :1699999999.M5P1.h\n", time.Time{})
	writeFile(t, filepath.Join(dir, "cur/1700000000.M100000P1.h,S=1:2,S"), "m", time.Time{})
	os.Remove(filepath.Join(dir, "cur/1700000000.M100000P1.h:2,S"))
	if got, want := read(dir), "x.y 1700000000.M100000P1.h,S=1:2,S 1699999999.M5P1.h:2, 1700000000.M99999P1.h"; got != want {
		t.Fatalf("order with uidlist = %q, want %q", got, want)
	}
	// An unknown uidlist version is ignored.
	writeFile(t, filepath.Join(dir, "dovecot-uidlist"), "1 1 4\n1 x.y\n", time.Time{})
	if got, want := read(dir), "1699999999.M5P1.h:2, 1700000000.M99999P1.h 1700000000.M100000P1.h,S=1:2,S x.y"; got != want {
		t.Fatalf("order with old uidlist = %q, want %q", got, want)
	}
}
