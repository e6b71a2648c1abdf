package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteResultsKeepsNotes: a run rewrites only the block between the
// markers; hand-written text before and after it stays byte for byte.
func TestWriteResultsKeepsNotes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "RESULTS.md")
	if err := writeResults(file, SmokeSizes, []string{"info one"}, "| t |\n", []string{"note"}, ""); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(file)
	want1 := "# Benchmark results: bucketmail vs Dovecot\n\n" +
		"Made by `go run ./bench` (see bench/main.go). The block between the markers is rewritten by each run.\n\n" +
		beginMarker + "\n## Latest run (smoke)\n\n- info one\n\n| t |\n\n- note\n" + endMarker + "\n"
	if string(first) != want1 {
		t.Fatalf("new file:\n%s\nwant:\n%s", first, want1)
	}
	hand := string(first) + "\n## Findings\n\nkept text\n"
	if err := os.WriteFile(file, []byte("head text\n"+hand), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeResults(file, FullSizes, []string{"info two"}, "| u |\n", nil, "\n#### p\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(file)
	want2 := "head text\n# Benchmark results: bucketmail vs Dovecot\n\n" +
		"Made by `go run ./bench` (see bench/main.go). The block between the markers is rewritten by each run.\n\n" +
		beginMarker + "\n## Latest run (full)\n\n- info two\n\n| u |\n\n\n### Profiles of bucketmail-fs (go tool pprof -top)\n\n#### p\n" + endMarker + "\n" +
		"\n## Findings\n\nkept text\n"
	if string(got) != want2 {
		t.Fatalf("rewritten file:\n%s\nwant:\n%s", got, want2)
	}
}

// TestBestOf: the best value per direction, n/a only when no round had
// a number.
func TestBestOf(t *testing.T) {
	cols := []server{{Name: "dovecot", Title: "Dovecot"}}
	r1, r2 := newReport(cols), newReport(cols)
	r1.set("lmtp1.rate", "dovecot", cell{V: 10, Prec: 1})
	r2.set("lmtp1.rate", "dovecot", cell{V: 30, Prec: 1})
	r1.set("lmtp1.p99", "dovecot", cell{V: 5, Prec: 1})
	r2.set("lmtp1.p99", "dovecot", cell{V: 7, Prec: 1})
	r1.set("idle.kib", "dovecot", cell{V: 500, Prec: 1})
	r2.set("idle.kib", "dovecot", cell{NA: "n/a (not run)"})
	r1.set("reindex.seconds", "dovecot", cell{NA: "n/a (not built yet)"})
	r2.set("reindex.seconds", "dovecot", cell{NA: "n/a (not built yet)"})
	b := bestOf([]*Report{r1, r2})
	for key, want := range map[string]string{
		"lmtp1.rate": "30.0", "lmtp1.p99": "5.0", "idle.kib": "500.0", "reindex.seconds": "n/a (not built yet)",
	} {
		if got := b.get(key, "dovecot").String(); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if len(b.Notes) != 1 || b.Notes[0] != "rounds, LMTP 1 sender: messages/s, Dovecot: 10.0 / 30.0" {
		t.Errorf("notes = %q", b.Notes)
	}
}
