package corpus

import "testing"

func TestWalkCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("counts need the large files")
	}
	n := map[string]int{}
	for _, sub := range []string{"real", "edge"} {
		Walk(t, sub, func(m Message) { n[sub]++ })
	}
	// The README's stricter blank-line rule: 3,270 in all.
	if got := n["real"] + n["edge"]; got != 3270 {
		t.Errorf("messages: real %d + edge %d = %d, want 3270", n["real"], n["edge"], got)
	}
}

func TestCRLF(t *testing.T) {
	for in, want := range map[string]string{"a\nb\r\nc\n": "a\r\nb\r\nc\r\n", "\n": "\r\n", "x": "x"} {
		if got := string(CRLF([]byte(in))); got != want {
			t.Errorf("CRLF(%q) = %q, want %q", in, got, want)
		}
	}
}
