// Package userdbtest is the conformance suite every user database must
// pass. A backend's test calls
//
//	userdbtest.Run(t, func(t *testing.T, seed []userdbtest.Seed) userdbtest.Backend {
//		return newBackendHolding(t, seed)
//	})
//
// The factory is called once per subtest and returns a backend holding
// exactly the seed users (read-only backends write them into their source,
// e.g. a passwd-file). Seed addresses are given as a user might type them
// (mixed case); the backend must store them normalised. If the backend
// implements userdb.Manager the management tests run too.
package userdbtest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bucketmail/bucketmail/internal/userdb"
)

// Seed is a user the factory must create.
type Seed struct {
	Address    string
	Password   string
	QuotaBytes int64
	Disabled   bool
}

// Backend is what the suite tests.
type Backend interface {
	userdb.PassDB
	userdb.UserDB
}

// Downer is implemented by test backends whose server the test can stop
// (a wrapper around the backend, e.g. struct{ *redis.DB; srv }). The
// "Down" subtest stops it and expects every call to fail with
// userdb.ErrUnavailable, never ErrAuthFailed or ErrNotFound: a user DB
// that is down must not look like a wrong password or an unknown user.
type Downer interface {
	// Down stops the backend's server; it stays down for the rest of the
	// subtest.
	Down(t *testing.T)
}

// Seeds are the users every subtest starts with.
var Seeds = []Seed{
	{Address: "alice@example.org", Password: "correct horse battery staple"},
	{Address: "Bob@Example.ORG", Password: "Secret"},
	{Address: "carol@example.org", Password: "carol-pw", Disabled: true},
	{Address: "dave+lists@example.org", Password: "dave-lists-pw"},
	{Address: "dave@example.org", Password: "dave-pw"},
	{Address: "quota@example.net", Password: "q", QuotaBytes: 1 << 30},
	{Address: "émile@exämple.org", Password: "pässwörd ✓ with spaces "},
}

// Run runs the suite.
func Run(t *testing.T, newBackend func(t *testing.T, seed []Seed) Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"Lookup", testLookup},
		{"LookupCase", testLookupCase},
		{"LookupUnknown", testLookupUnknown},
		{"AuthOK", testAuthOK},
		{"AuthFail", testAuthFail},
		{"AuthDisabled", testAuthDisabled},
		{"Delimiter", testDelimiter},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newBackend(t, Seeds)) })
	}
	mtests := []struct {
		name string
		fn   func(t *testing.T, b Backend, m userdb.Manager)
	}{
		{"ManageAdd", testManageAdd},
		{"ManageInvalid", testManageInvalid},
		{"ManagePasswd", testManagePasswd},
		{"ManageDelete", testManageDelete},
		{"ManageList", testManageList},
	}
	t.Run("Down", func(t *testing.T) {
		b := newBackend(t, Seeds)
		d, ok := b.(Downer)
		if !ok {
			t.Skip("backend cannot be stopped by the test")
		}
		testDown(t, b, d)
	})
	for _, tc := range mtests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t, Seeds)
			m, ok := b.(userdb.Manager)
			if !ok {
				t.Skip("backend is read-only")
			}
			tc.fn(t, b, m)
		})
	}
}

var ctx = context.Background()

func mustLookup(t *testing.T, b Backend, address string) *userdb.User {
	t.Helper()
	u, err := b.Lookup(ctx, address)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", address, err)
	}
	return u
}

func testLookup(t *testing.T, b Backend) {
	for _, s := range Seeds {
		u := mustLookup(t, b, s.Address)
		want := userdb.Normalize(s.Address)
		if u.Address != want || u.Account == "" || u.QuotaBytes != s.QuotaBytes || u.Disabled != s.Disabled {
			t.Errorf("Lookup(%q) = %+v, want address %q quota %d disabled %v", s.Address, *u, want, s.QuotaBytes, s.Disabled)
		}
	}
	// Accounts are distinct per user.
	a, d := mustLookup(t, b, "dave@example.org"), mustLookup(t, b, "dave+lists@example.org")
	if a.Account == d.Account {
		t.Fatalf("two users share account %q", a.Account)
	}
}

func testLookupCase(t *testing.T, b Backend) {
	for _, addr := range []string{"ALICE@EXAMPLE.ORG", "Alice@example.org", " alice@example.org ", "bob@example.org", "BOB@EXAMPLE.ORG", "ÉMILE@EXÄMPLE.ORG",
		"e\u0301mile@exa\u0308mple.org", "E\u0301MILE@EXA\u0308MPLE.ORG"} { // NFD forms of émile@exämple.org
		u := mustLookup(t, b, addr)
		if u.Address != userdb.Normalize(addr) {
			t.Errorf("Lookup(%q).Address = %q, want %q", addr, u.Address, userdb.Normalize(addr))
		}
		if strings.Contains(addr, "\u0301") && u.Address != "émile@exämple.org" {
			t.Errorf("Lookup(%q).Address = %q, want the NFC form", addr, u.Address)
		}
	}
}

func testLookupUnknown(t *testing.T, b Backend) {
	for _, addr := range []string{"nobody@example.org", "alice@example.com", "alice", "", "alice@example.org.", "@example.org", "alice+x@example.org"} {
		if u, err := b.Lookup(ctx, addr); !errors.Is(err, userdb.ErrNotFound) || u != nil {
			t.Errorf("Lookup(%q) = %v, %v; want nil, ErrNotFound", addr, u, err)
		}
	}
}

func testAuthOK(t *testing.T, b Backend) {
	cases := []struct{ login, pw, want string }{
		{"alice@example.org", "correct horse battery staple", "alice@example.org"},
		{"ALICE@Example.Org", "correct horse battery staple", "alice@example.org"},
		{"bob@example.org", "Secret", "bob@example.org"},
		{"dave+lists@example.org", "dave-lists-pw", "dave+lists@example.org"},
		{"Émile@exämple.org", "pässwörd ✓ with spaces ", "émile@exämple.org"},
		{"e\u0301mile@exa\u0308mple.org", "pässwörd ✓ with spaces ", "émile@exämple.org"},
		{"quota@example.net", "q", "quota@example.net"},
	}
	for _, c := range cases {
		u, err := b.Authenticate(ctx, c.login, c.pw)
		if err != nil {
			t.Errorf("Authenticate(%q): %v", c.login, err)
			continue
		}
		if u.Address != c.want || u.Disabled {
			t.Errorf("Authenticate(%q) = %+v, want address %q", c.login, *u, c.want)
		}
		if l := mustLookup(t, b, c.login); l.Account != u.Account {
			t.Errorf("Authenticate(%q).Account = %q, Lookup gives %q", c.login, u.Account, l.Account)
		}
	}
}

func testAuthFail(t *testing.T, b Backend) {
	cases := []struct{ login, pw string }{
		{"alice@example.org", "wrong"},
		{"alice@example.org", ""},
		{"alice@example.org", "correct horse battery staple "},
		{"alice@example.org", "CORRECT HORSE BATTERY STAPLE"},
		{"bob@example.org", "secret"},
		{"dave@example.org", "dave-lists-pw"},
		{"dave+lists@example.org", "dave-pw"},
		{"nobody@example.org", "correct horse battery staple"},
		{"nobody@example.org", ""},
		{"", ""},
		{"alice+tag@example.org", "correct horse battery staple"},
		{"émile@exämple.org", "passworte"},
	}
	for _, c := range cases {
		u, err := b.Authenticate(ctx, c.login, c.pw)
		if !errors.Is(err, userdb.ErrAuthFailed) || u != nil {
			t.Errorf("Authenticate(%q, %q) = %v, %v; want nil, ErrAuthFailed", c.login, c.pw, u, err)
		}
		if errors.Is(err, userdb.ErrNotFound) {
			t.Errorf("Authenticate(%q) tells an unknown user apart: %v", c.login, err)
		}
		if err != nil && c.pw != "" && strings.Contains(err.Error(), c.pw) {
			t.Errorf("Authenticate error contains the password: %v", err)
		}
	}
}

func testAuthDisabled(t *testing.T, b Backend) {
	u, err := b.Authenticate(ctx, "carol@example.org", "carol-pw")
	if !errors.Is(err, userdb.ErrAuthFailed) || u != nil {
		t.Fatalf("disabled user: Authenticate = %v, %v; want ErrAuthFailed", u, err)
	}
	if l := mustLookup(t, b, "carol@example.org"); !l.Disabled {
		t.Fatalf("Lookup(disabled user).Disabled = false")
	}
}

func testDelimiter(t *testing.T, b Backend) {
	cases := []struct{ addr, delim, want string }{
		{"alice+tag@example.org", "+", "alice@example.org"},
		{"ALICE+Tag@Example.org", "+", "alice@example.org"},
		{"alice+a+b@example.org", "+", "alice@example.org"},
		{"dave+lists@example.org", "+", "dave+lists@example.org"}, // exact match wins
		{"dave+other@example.org", "+", "dave@example.org"},
		{"alice-tag@example.org", "-", "alice@example.org"},
		{"alice@example.org", "+", "alice@example.org"},
	}
	for _, c := range cases {
		u, err := userdb.LookupRecipient(ctx, b, c.addr, c.delim)
		if err != nil || u.Address != c.want {
			t.Errorf("LookupRecipient(%q, %q) = %v, %v; want %q", c.addr, c.delim, u, err, c.want)
		}
	}
	for _, c := range []struct{ addr, delim string }{
		{"alice+tag@example.org", ""},
		{"alice+tag@example.org", "-"},
		{"nobody+tag@example.org", "+"},
		{"+tag@example.org", "+"},
	} {
		if u, err := userdb.LookupRecipient(ctx, b, c.addr, c.delim); !errors.Is(err, userdb.ErrNotFound) {
			t.Errorf("LookupRecipient(%q, %q) = %v, %v; want ErrNotFound", c.addr, c.delim, u, err)
		}
	}
}

func testConcurrent(t *testing.T, b Backend) {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw := "correct horse battery staple"
			if i%2 == 1 {
				pw = "wrong"
			}
			_, err := b.Authenticate(ctx, "alice@example.org", pw)
			if (i%2 == 0) != (err == nil) {
				errs <- err
			}
			if _, err := b.Lookup(ctx, "bob@example.org"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent: %v", err)
	}
}

func testManageAdd(t *testing.T, b Backend, m userdb.Manager) {
	if err := m.AddUser(ctx, "  New.User@Example.COM ", "pw1"); err != nil {
		t.Fatal(err)
	}
	u := mustLookup(t, b, "new.user@example.com")
	if u.Address != "new.user@example.com" || u.Disabled || u.QuotaBytes != 0 {
		t.Fatalf("new user = %+v", *u)
	}
	if _, err := b.Authenticate(ctx, "NEW.USER@example.com", "pw1"); err != nil {
		t.Fatalf("Authenticate new user: %v", err)
	}
	for _, dup := range []string{"new.user@example.com", "NEW.USER@EXAMPLE.COM", "alice@example.org", "bob@example.org"} {
		if err := m.AddUser(ctx, dup, "other"); !errors.Is(err, userdb.ErrExists) {
			t.Errorf("AddUser(%q) of an existing user = %v, want ErrExists", dup, err)
		}
	}
	// The failed add did not change the password.
	if _, err := b.Authenticate(ctx, "alice@example.org", "correct horse battery staple"); err != nil {
		t.Fatalf("duplicate add changed alice: %v", err)
	}
}

func testManageInvalid(t *testing.T, b Backend, m userdb.Manager) {
	for _, addr := range []string{
		"", "alice", "@example.org", "alice@", "a b@example.org", "alice@exa mple.org",
		"al\tice@example.org", "al\x00ice@example.org", "ali\nce@example.org", "a\x7f@example.org",
		"<alice@example.org>", "\"al ice\"@example.org", ".alice@example.org", "alice.@example.org",
		"al..ice@example.org", "alice@.example.org", "alice@example..org", "alice@-example.org",
		"alice@[127.0.0.1]", "alice@exam_ple.org", "a(b)@example.org", "a,b@example.org",
		"\xff@example.org", strings.Repeat("a", 65) + "@example.org",
	} {
		if err := m.AddUser(ctx, addr, "pw"); !errors.Is(err, userdb.ErrInvalidAddress) {
			t.Errorf("AddUser(%q) = %v, want ErrInvalidAddress", addr, err)
		}
	}
	list, err := m.ListUsers(ctx)
	if err != nil || len(list) != len(Seeds) {
		t.Fatalf("after invalid adds ListUsers = %d users, %v; want %d", len(list), err, len(Seeds))
	}
}

func testManagePasswd(t *testing.T, b Backend, m userdb.Manager) {
	if err := m.SetPassword(ctx, "ALICE@example.org", "new pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Authenticate(ctx, "alice@example.org", "correct horse battery staple"); !errors.Is(err, userdb.ErrAuthFailed) {
		t.Errorf("old password after SetPassword = %v, want ErrAuthFailed", err)
	}
	if _, err := b.Authenticate(ctx, "alice@example.org", "new pw"); err != nil {
		t.Errorf("new password: %v", err)
	}
	if _, err := b.Authenticate(ctx, "bob@example.org", "Secret"); err != nil {
		t.Errorf("SetPassword changed another user: %v", err)
	}
	if err := m.SetPassword(ctx, "nobody@example.org", "x"); !errors.Is(err, userdb.ErrNotFound) {
		t.Errorf("SetPassword(unknown) = %v, want ErrNotFound", err)
	}
}

func testManageDelete(t *testing.T, b Backend, m userdb.Manager) {
	if err := m.DeleteUser(ctx, "Bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lookup(ctx, "bob@example.org"); !errors.Is(err, userdb.ErrNotFound) {
		t.Errorf("Lookup after delete = %v, want ErrNotFound", err)
	}
	if _, err := b.Authenticate(ctx, "bob@example.org", "Secret"); !errors.Is(err, userdb.ErrAuthFailed) {
		t.Errorf("Authenticate after delete = %v, want ErrAuthFailed", err)
	}
	if err := m.DeleteUser(ctx, "bob@example.org"); !errors.Is(err, userdb.ErrNotFound) {
		t.Errorf("second DeleteUser = %v, want ErrNotFound", err)
	}
	mustLookup(t, b, "alice@example.org")
	// The address can be added again.
	if err := m.AddUser(ctx, "bob@example.org", "again"); err != nil {
		t.Fatalf("re-add: %v", err)
	}
	if _, err := b.Authenticate(ctx, "bob@example.org", "again"); err != nil {
		t.Errorf("re-added user: %v", err)
	}
}

func testManageList(t *testing.T, b Backend, m userdb.Manager) {
	list, err := m.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range list {
		got = append(got, u.Address)
		if u.Address == "carol@example.org" && !u.Disabled {
			t.Errorf("ListUsers: carol not disabled")
		}
		if u.Address == "quota@example.net" && u.QuotaBytes != 1<<30 {
			t.Errorf("ListUsers: quota = %d", u.QuotaBytes)
		}
	}
	want := "alice@example.org bob@example.org carol@example.org dave+lists@example.org dave@example.org quota@example.net émile@exämple.org"
	if strings.Join(got, " ") != want {
		t.Fatalf("ListUsers = %q\nwant %q", strings.Join(got, " "), want)
	}
}

func testDown(t *testing.T, b Backend, d Downer) {
	mustLookup(t, b, "alice@example.org")
	d.Down(t)
	want := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, userdb.ErrUnavailable) || errors.Is(err, userdb.ErrAuthFailed) || errors.Is(err, userdb.ErrNotFound) {
			t.Errorf("backend down: %s = %v, want ErrUnavailable", op, err)
		}
	}
	for _, addr := range []string{"alice@example.org", "nobody@example.org"} {
		u, err := b.Lookup(ctx, addr)
		want("Lookup("+addr+")", err)
		if u != nil {
			t.Errorf("backend down: Lookup(%s) returned %+v", addr, *u)
		}
		u, err = b.Authenticate(ctx, addr, "correct horse battery staple")
		want("Authenticate("+addr+")", err)
		if u != nil {
			t.Errorf("backend down: Authenticate(%s) returned %+v", addr, *u)
		}
	}
	_, err := userdb.LookupRecipient(ctx, b, "alice+tag@example.org", "+")
	want("LookupRecipient", err)
	m, ok := b.(userdb.Manager)
	if !ok {
		return
	}
	want("AddUser", m.AddUser(ctx, "new@example.org", "pw"))
	want("SetPassword", m.SetPassword(ctx, "alice@example.org", "pw"))
	want("DeleteUser", m.DeleteUser(ctx, "alice@example.org"))
	_, err = m.ListUsers(ctx)
	want("ListUsers", err)
}

// Policies are the address policies RunPolicies tests: every combination
// of auth.local_part_case (lower, keep) and auth.normalize (nfc, none).
var Policies = []userdb.AddressPolicy{
	{},
	{KeepLocalCase: true},
	{NoNFC: true},
	{KeepLocalCase: true, NoNFC: true},
}

// Addresses used by RunPolicies.
const (
	nfcEmile = "\u00e9mile@ex\u00e4mple.org"   // émile@exämple.org, precomposed
	nfdEmile = "e\u0301mile@exa\u0308mple.org" // the same typed with combining marks
)

// PolicySeeds are the users RunPolicies' factory must create for policy p
// (through the backend's own normalisation under p: a read-only backend
// writes p.Normalize(Address) into its source).
func PolicySeeds(p userdb.AddressPolicy) []Seed {
	s := []Seed{
		{Address: "Alice@Example.ORG", Password: "upper-pw"},
		{Address: "Dave@Example.org", Password: "dave-pw"},
		{Address: nfcEmile, Password: "nfc-pw"},
	}
	if p.KeepLocalCase {
		s = append(s, Seed{Address: "alice@example.org", Password: "lower-pw"})
	}
	if p.NoNFC {
		s = append(s, Seed{Address: nfdEmile, Password: "nfd-pw"})
	}
	return s
}

// RunPolicies runs the address-policy conformance tests (issue 5 item 4)
// for each of Policies: newBackend must return a backend using policy p
// and holding exactly PolicySeeds(p). Under local_part_case = lower,
// "Alice@Example.org" and "alice@example.org" are one account; under keep
// they are two, and the domain is case-insensitive either way. Under
// normalize = nfc an NFD-typed address is its NFC account; under none it
// is a different one.
func RunPolicies(t *testing.T, newBackend func(t *testing.T, p userdb.AddressPolicy, seed []Seed) Backend) {
	for _, p := range Policies {
		t.Run(strings.NewReplacer("local_part_case=", "", " normalize=", "_").Replace(p.String()), func(t *testing.T) {
			b := newBackend(t, p, PolicySeeds(p))
			testPolicyCase(t, p, b)
			testPolicyNFC(t, p, b)
			testPolicyDelimiter(t, p, b)
			if m, ok := b.(userdb.Manager); ok {
				testPolicyManage(t, p, b, m)
			}
		})
	}
}

// wantUser checks that Lookup(addr) finds address want and that
// Authenticate(addr, pw) succeeds with the same account.
func wantUser(t *testing.T, b Backend, addr, want, pw string) *userdb.User {
	t.Helper()
	u, err := b.Lookup(ctx, addr)
	if err != nil || u.Address != want {
		t.Errorf("Lookup(%q) = %v, %v; want address %q", addr, u, err, want)
		return nil
	}
	a, err := b.Authenticate(ctx, addr, pw)
	if err != nil || a.Address != want || a.Account != u.Account {
		t.Errorf("Authenticate(%q) = %v, %v; want address %q account %q", addr, a, err, want, u.Account)
	}
	return u
}

func wantNoUser(t *testing.T, b Backend, addr string, pws ...string) {
	t.Helper()
	if u, err := b.Lookup(ctx, addr); !errors.Is(err, userdb.ErrNotFound) {
		t.Errorf("Lookup(%q) = %v, %v; want ErrNotFound", addr, u, err)
	}
	for _, pw := range pws {
		if u, err := b.Authenticate(ctx, addr, pw); !errors.Is(err, userdb.ErrAuthFailed) {
			t.Errorf("Authenticate(%q, %q) = %v, %v; want ErrAuthFailed", addr, pw, u, err)
		}
	}
}

func wantAuthFail(t *testing.T, b Backend, addr, pw string) {
	t.Helper()
	if u, err := b.Authenticate(ctx, addr, pw); !errors.Is(err, userdb.ErrAuthFailed) {
		t.Errorf("Authenticate(%q, %q) = %v, %v; want ErrAuthFailed", addr, pw, u, err)
	}
}

func testPolicyCase(t *testing.T, p userdb.AddressPolicy, b Backend) {
	if !p.KeepLocalCase {
		for _, addr := range []string{"alice@example.org", "ALICE@EXAMPLE.ORG", " Alice@Example.ORG ", "aLiCe@example.org"} {
			wantUser(t, b, addr, "alice@example.org", "upper-pw")
		}
		wantUser(t, b, "DAVE@example.ORG", "dave@example.org", "dave-pw")
		return
	}
	upper := wantUser(t, b, "Alice@EXAMPLE.org", "Alice@example.org", "upper-pw")
	wantUser(t, b, " Alice@example.org ", "Alice@example.org", "upper-pw")
	lower := wantUser(t, b, "alice@Example.Org", "alice@example.org", "lower-pw")
	if upper != nil && lower != nil && upper.Account == lower.Account {
		t.Errorf("local_part_case=keep: Alice@ and alice@ share account %q", upper.Account)
	}
	wantAuthFail(t, b, "Alice@example.org", "lower-pw")
	wantAuthFail(t, b, "alice@example.org", "upper-pw")
	wantNoUser(t, b, "ALICE@example.org", "upper-pw", "lower-pw")
	wantNoUser(t, b, "dave@example.org", "dave-pw")
	wantUser(t, b, "Dave@EXAMPLE.ORG", "Dave@example.org", "dave-pw")
}

func testPolicyNFC(t *testing.T, p userdb.AddressPolicy, b Backend) {
	upperNFD := "E\u0301MILE@EXA\u0308MPLE.ORG"
	if !p.NoNFC {
		wantUser(t, b, nfcEmile, nfcEmile, "nfc-pw")
		wantUser(t, b, nfdEmile, nfcEmile, "nfc-pw")
		if !p.KeepLocalCase {
			wantUser(t, b, upperNFD, nfcEmile, "nfc-pw")
		} else {
			wantNoUser(t, b, upperNFD, "nfc-pw")
		}
		return
	}
	nfc := wantUser(t, b, nfcEmile, nfcEmile, "nfc-pw")
	nfd := wantUser(t, b, nfdEmile, nfdEmile, "nfd-pw")
	if nfc != nil && nfd != nil && nfc.Account == nfd.Account {
		t.Errorf("normalize=none: NFC and NFD forms share account %q", nfc.Account)
	}
	wantAuthFail(t, b, nfdEmile, "nfc-pw")
	wantAuthFail(t, b, nfcEmile, "nfd-pw")
	if !p.KeepLocalCase {
		wantUser(t, b, upperNFD, nfdEmile, "nfd-pw")
	} else {
		wantNoUser(t, b, upperNFD, "nfd-pw", "nfc-pw")
	}
}

func testPolicyDelimiter(t *testing.T, p userdb.AddressPolicy, b Backend) {
	want := "dave@example.org"
	if p.KeepLocalCase {
		want = "Dave@example.org"
	}
	u, err := p.LookupRecipient(ctx, b, "Dave+Tag@EXAMPLE.org", "+")
	if err != nil || u.Address != want {
		t.Errorf("LookupRecipient(Dave+Tag@EXAMPLE.org) = %v, %v; want %q", u, err, want)
	}
	u, err = p.LookupRecipient(ctx, b, "dave+tag@example.org", "+")
	if p.KeepLocalCase {
		if !errors.Is(err, userdb.ErrNotFound) {
			t.Errorf("keep: LookupRecipient(dave+tag@example.org) = %v, %v; want ErrNotFound", u, err)
		}
	} else if err != nil || u.Address != want {
		t.Errorf("LookupRecipient(dave+tag@example.org) = %v, %v; want %q", u, err, want)
	}
}

func testPolicyManage(t *testing.T, p userdb.AddressPolicy, b Backend, m userdb.Manager) {
	if err := m.AddUser(ctx, "Bob@Example.COM", "pw-upper"); err != nil {
		t.Fatalf("AddUser(Bob@Example.COM): %v", err)
	}
	err := m.AddUser(ctx, "bob@example.com", "pw-lower")
	want := []string{"alice@example.org", "bob@example.com", "dave@example.org", nfcEmile}
	if p.KeepLocalCase {
		if err != nil {
			t.Fatalf("keep: AddUser(bob@example.com) beside Bob@: %v", err)
		}
		wantUser(t, b, "Bob@example.com", "Bob@example.com", "pw-upper")
		wantUser(t, b, "bob@example.com", "bob@example.com", "pw-lower")
		want = []string{"Alice@example.org", "Bob@example.com", "Dave@example.org", "alice@example.org", "bob@example.com", nfcEmile}
	} else {
		if !errors.Is(err, userdb.ErrExists) {
			t.Fatalf("lower: AddUser(bob@example.com) after Bob@ = %v, want ErrExists", err)
		}
		wantUser(t, b, "bob@example.com", "bob@example.com", "pw-upper")
	}
	if p.NoNFC {
		want = append(want, nfdEmile)
	}
	list, err := m.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range list {
		got = append(got, u.Address)
	}
	slices.Sort(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("ListUsers = %q\nwant %q", got, want)
	}
}
