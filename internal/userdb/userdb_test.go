package userdb

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestValidateAddress(t *testing.T) {
	valid := []string{
		"a@b", "alice@example.org", "first.last@sub.example.co.uk", "user+tag@example.org",
		"o'brien@example.ie", "x!#$%&'*+-/=?^_`{|}~@example.org", "émile@exämple.org",
		"用户@例子.中国", strings.Repeat("a", 64) + "@example.org", "a@xn--bcher-kva.example",
	}
	for _, a := range valid {
		if err := ValidateAddress(a); err != nil {
			t.Errorf("ValidateAddress(%q) = %v, want nil", a, err)
		}
	}
	invalid := []string{
		"", "a", "@b", "a@", "a b@c", "a@b c", "a@@b", "a\"@b", "a\\b@c", "a<b@c", "a@b_c",
		"a@[1.2.3.4]", "a.@b", ".a@b", "a..b@c", "a@b..c", "a@-b", "a@b-", "a@.b", "a@b.",
		"a\u0085@b", "a\u2028@b", "\xc3@b", strings.Repeat("a", 65) + "@b",
		"a@" + strings.Repeat("b", 64) + ".org", "a@" + strings.Repeat("b.", 127) + "org",
	}
	for _, a := range invalid {
		if err := ValidateAddress(a); !errors.Is(err, ErrInvalidAddress) {
			t.Errorf("ValidateAddress(%q) = %v, want ErrInvalidAddress", a, err)
		}
	}
}

func TestNormalizeStrip(t *testing.T) {
	tests := []struct{ in, delim, norm, stripped string }{
		{" Alice@Example.ORG\t", "+", "alice@example.org", "alice@example.org"},
		{"Alice+Tag@Example.org", "+", "alice+tag@example.org", "alice@example.org"},
		{"a+b+c@x", "+", "a+b+c@x", "a@x"},
		{"+tag@x", "+", "+tag@x", "+tag@x"},
		{"a-b@x", "-", "a-b@x", "a@x"},
		{"a+b@x", "", "a+b@x", "a+b@x"},
		{"noat+tag", "+", "noat+tag", "noat"},
		{"ÉMILE@X", "+", "émile@x", "émile@x"},
		{"E\u0301MILE+t@exa\u0308mple.org", "+", "\u00e9mile+t@ex\u00e4mple.org", "\u00e9mile@ex\u00e4mple.org"}, // NFD in, NFC out
		{"\u212bngstr\u00f6m@x", "+", "\u00e5ngstr\u00f6m@x", "\u00e5ngstr\u00f6m@x"},                            // ANGSTROM SIGN -> å
	}
	for _, tc := range tests {
		n := Normalize(tc.in)
		if n != tc.norm {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, n, tc.norm)
		}
		if s := StripDelimiter(n, tc.delim); s != tc.stripped {
			t.Errorf("StripDelimiter(%q, %q) = %q, want %q", n, tc.delim, s, tc.stripped)
		}
	}
}

func TestConsistentReadContext(t *testing.T) {
	ctx := context.Background()
	if ConsistentRead(ctx) {
		t.Fatal("plain context is consistent")
	}
	c := WithConsistentRead(ctx)
	if !ConsistentRead(c) || !ConsistentRead(context.WithValue(c, struct{}{}, 1)) {
		t.Fatal("WithConsistentRead not seen")
	}
}

func TestAddressPolicy(t *testing.T) {
	keep, none := AddressPolicy{KeepLocalCase: true}, AddressPolicy{NoNFC: true}
	both := AddressPolicy{KeepLocalCase: true, NoNFC: true}
	tests := []struct {
		p        AddressPolicy
		in, want string
	}{
		{AddressPolicy{}, " Alice@Example.ORG\t", "alice@example.org"},
		{AddressPolicy{}, "E\u0301MILE@X", "\u00e9mile@x"},
		{keep, " Alice@Example.ORG\t", "Alice@example.org"},
		{keep, "Al@ice@Example.ORG", "Al@ice@example.org"}, // the domain follows the last @
		{keep, "NoAt", "NoAt"},
		{keep, "E\u0301MILE@EXA\u0308MPLE.org", "\u00c9MILE@ex\u00e4mple.org"},
		{none, "E\u0301MILE@EXA\u0308MPLE.org", "e\u0301mile@exa\u0308mple.org"},
		{none, "\u212bngstr\u00f6m@x", "\u00e5ngstr\u00f6m@x"}, // lower-casing maps ANGSTROM SIGN to å even without NFC
		{both, "\u212bngstr\u00f6m@x", "\u212bngstr\u00f6m@x"}, // kept as typed
		{both, " E\u0301mile@EXA\u0308MPLE.org ", "E\u0301mile@exa\u0308mple.org"},
	}
	for _, tc := range tests {
		if got := tc.p.Normalize(tc.in); got != tc.want {
			t.Errorf("%v.Normalize(%q) = %q, want %q", tc.p, tc.in, got, tc.want)
		}
	}
	for _, in := range []string{" Alice@Example.ORG", "E\u0301MILE+t@exa\u0308mple.org", "", "x"} {
		if a, b := (AddressPolicy{}).Normalize(in), Normalize(in); a != b {
			t.Errorf("zero policy Normalize(%q) = %q, package Normalize = %q", in, a, b)
		}
	}
	for _, c := range []struct {
		lpc, norm string
		want      AddressPolicy
	}{
		{"", "", AddressPolicy{}}, {"lower", "nfc", AddressPolicy{}}, {"keep", "nfc", keep},
		{"lower", "none", none}, {"keep", "none", both},
	} {
		p, err := ParseAddressPolicy(c.lpc, c.norm)
		if err != nil || p != c.want {
			t.Errorf("ParseAddressPolicy(%q, %q) = %+v, %v; want %+v", c.lpc, c.norm, p, err, c.want)
		}
	}
	for _, c := range [][2]string{{"upper", "nfc"}, {"lower", "nfd"}, {"Keep", ""}} {
		if _, err := ParseAddressPolicy(c[0], c[1]); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("ParseAddressPolicy(%q, %q) = %v, want ErrBadPolicy", c[0], c[1], err)
		}
	}
	if s := both.String(); s != "local_part_case=keep normalize=none" {
		t.Errorf("String = %q", s)
	}
}
