package e2e

import (
	"slices"
	"testing"
)

func TestParseValue(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: Value.String()
		err      bool
	}{
		{in: `NIL`, want: `NIL`},
		{in: `nil`, want: `NIL`},
		{in: `"a b"`, want: `"a b"`},
		{in: `""`, want: `""`},
		{in: `"q\"x\\y"`, want: `"q\"x\\y"`},
		{in: "{5}\r\na\"b\r\n", want: `"a\"b\r\n"`},
		{in: "~{3}\r\na\x00b", want: `"a\x00b"`},
		{in: `("text" "plain" NIL 12)`, want: `("text" "plain" NIL 12)`},
		{in: `(("a")("b") "mixed")`, want: `(("a") ("b") "mixed")`},
		{in: `BODY[HEADER.FIELDS (A B)]`, want: `BODY[HEADER.FIELDS (A B)]`},
		{in: `\Seen`, want: `\Seen`},
		{in: `("a"`, err: true},
		{in: `"abc`, err: true},
		{in: "{9}\r\nab", err: true},
		{in: `)`, err: true},
		{in: `NIL NIL`, err: true},
	} {
		v, err := ParseValue([]byte(tc.in))
		if tc.err {
			if err == nil {
				t.Errorf("ParseValue(%q) = %s, want an error", tc.in, v)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseValue(%q): %v", tc.in, err)
			continue
		}
		if got := v.String(); got != tc.want {
			t.Errorf("ParseValue(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestEqualIgnoresStringForm(t *testing.T) {
	a, _ := ParseValue([]byte("(\"x\" {2}\r\nyz NIL 1)"))
	b, _ := ParseValue([]byte(`("x" "yz" NIL 1)`))
	c, _ := ParseValue([]byte(`("x" "yz" "" 1)`))
	d, _ := ParseValue([]byte(`("x" "yz" NIL "1")`))
	if !Equal(a, b) {
		t.Errorf("literal and quoted string differ: %s vs %s", a, b)
	}
	if Equal(b, c) {
		t.Errorf("NIL equals empty string")
	}
	if Equal(b, d) {
		t.Errorf("number equals string")
	}
}

func TestFetchItems(t *testing.T) {
	resp := []byte("* 12 FETCH (UID 7 BODY[1.MIME] {4}\r\nab\r\n RFC822.SIZE 99 BODY[HEADER.FIELDS (TO)] NIL)")
	seq, items, raw, err := FetchItems(resp)
	if err != nil {
		t.Fatal(err)
	}
	if seq != 12 {
		t.Errorf("seq = %d, want 12", seq)
	}
	if got := string(items["BODY[1.MIME]"].Str); got != "ab\r\n" {
		t.Errorf("BODY[1.MIME] = %q", got)
	}
	if got := string(raw["BODY[1.MIME]"]); got != "{4}\r\nab\r\n" {
		t.Errorf("raw BODY[1.MIME] = %q", got)
	}
	if got := string(raw["RFC822.SIZE"]); got != "99" {
		t.Errorf("raw RFC822.SIZE = %q", got)
	}
	if items["BODY[HEADER.FIELDS (TO)]"].Kind != Nil {
		t.Errorf("BODY[HEADER.FIELDS (TO)] = %s, want NIL", items["BODY[HEADER.FIELDS (TO)]"])
	}
	if _, _, _, err := FetchItems([]byte("* 1 EXISTS")); err == nil {
		t.Errorf("FetchItems(EXISTS): no error")
	}
}

func TestPartPaths(t *testing.T) {
	const text = `("text" "plain" NIL NIL NIL "7bit" 1 1)`
	env := `(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)`
	for _, tc := range []struct {
		bs   string
		want []string
	}{
		{text, []string{"1"}},
		{`(` + text + text + ` "mixed")`, []string{"1", "2"}},
		{`((` + text + text + ` "alternative")` + text + ` "mixed")`, []string{"1", "1.1", "1.2", "2"}},
		// message/rfc822 with a single-part body: its body is n.1
		{`(` + text + `("message" "rfc822" NIL NIL NIL "7bit" 10 ` + env + text + ` 3) "mixed")`, []string{"1", "2", "2.1"}},
		// message/rfc822 with a multipart body: its parts are n.1, n.2
		{`("message" "rfc822" NIL NIL NIL "7bit" 10 ` + env + `(` + text + text + ` "mixed") 3)`, []string{"1", "1.1", "1.2"}},
		// message/global (RFC 6532) is encapsulated too
		{`(` + text + `("message" "global" NIL NIL NIL "7bit" 10 ` + env + text + ` 3) "mixed")`, []string{"1", "2", "2.1"}},
	} {
		v, err := ParseValue([]byte(tc.bs))
		if err != nil {
			t.Fatalf("%s: %v", tc.bs, err)
		}
		if got := PartPaths(v); !slices.Equal(got, tc.want) {
			t.Errorf("PartPaths(%s) = %v, want %v", tc.bs, got, tc.want)
		}
	}
}

func TestMessageParts(t *testing.T) {
	const text = `("text" "plain" NIL NIL NIL "7bit" 1 1)`
	env := `(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)`
	msg := func(body string) string { return `("message" "rfc822" NIL NIL NIL "7bit" 10 ` + env + body + ` 3)` }
	for _, tc := range []struct {
		bs   string
		want []string
	}{
		{text, nil},
		{`(` + text + msg(text) + ` "mixed")`, []string{"2"}},
		{`(` + text + msg(`(`+text+msg(text)+` "mixed")`) + ` "mixed")`, []string{"2", "2.2"}},
		{msg(msg(text)), []string{"1", "1.1"}},
	} {
		v, err := ParseValue([]byte(tc.bs))
		if err != nil {
			t.Fatalf("%s: %v", tc.bs, err)
		}
		if got := MessageParts(v); !slices.Equal(got, tc.want) {
			t.Errorf("MessageParts(%s) = %v, want %v", tc.bs, got, tc.want)
		}
	}
}

func TestWire(t *testing.T) {
	for in, want := range map[string]string{
		"a\nb\n":     "a\r\nb\r\n",
		"a\r\nb\r\n": "a\r\nb\r\n",
		"a\nb":       "a\r\nb\r\n",
		"a\r":        "a\r\n",
		"a\rb\n":     "a\rb\r\n",
		"":           "",
	} {
		if got := string(Wire([]byte(in))); got != want {
			t.Errorf("Wire(%q) = %q, want %q", in, got, want)
		}
	}
	if got := string(Served([]byte("a\x00b"))); got != "a\x80b\r\n" {
		t.Errorf("Served = %q", got)
	}
}

func TestTracePrefix(t *testing.T) {
	re := TracePrefix("s@example.net", "u@example.org")
	ok := "Return-Path: <s@example.net>\r\nDelivered-To: u@example.org\r\nReceived: from x ([127.0.0.1])\r\n\tby h with LMTP id 1\r\n\tfor <u@example.org>; Sun, 29 Nov 2026 15:37:37 +0000\r\n"
	for s, want := range map[string]bool{
		ok:              true,
		ok + "X: y\r\n": false,
		"Return-Path: <s@example.net>\r\nReceived: from x\r\n":                                false,
		"Return-Path: <s@example.net>\r\nDelivered-To: u@example.org\r\nReceived: from x\r\n": true,
	} {
		if got := re.Match([]byte(s)); got != want {
			t.Errorf("TracePrefix.Match(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestQuote(t *testing.T) {
	if got := Quote(`a"b\c`); got != `"a\"b\\c"` {
		t.Errorf("Quote = %s", got)
	}
}
