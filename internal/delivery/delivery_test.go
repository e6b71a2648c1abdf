package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/embedded"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
)

func TestPrefix(t *testing.T) {
	d := &Deliverer{Hostname: "mx.example.org"}
	now := time.Date(2026, 11, 29, 15, 4, 5, 0, time.FixedZone("", -3*3600))
	one := []Recipient{{Address: "Alice+tag@example.org"}}
	two := []Recipient{{Address: "a@example.org"}, {Address: "b@example.org"}}
	for _, tc := range []struct {
		name string
		env  Envelope
		want string
	}{
		{"one recipient over TCP", Envelope{From: "carol@example.net", Recipients: one, Helo: "client.example", RemoteAddr: "192.0.2.7", ID: "ABC123"},
			"Return-Path: <carol@example.net>\r\n" +
				"Delivered-To: Alice+tag@example.org\r\n" +
				"Received: from client.example ([192.0.2.7])\r\n" +
				"\tby mx.example.org with LMTP id ABC123\r\n" +
				"\t(envelope-from <carol@example.net>)\r\n" +
				"\tfor <Alice+tag@example.org>; Sun, 29 Nov 2026 15:04:05 -0300\r\n"},
		{"two recipients, null sender, unix socket, no helo", Envelope{Recipients: two},
			"Return-Path: <>\r\n" +
				"Received: from unknown\r\n" +
				"\tby mx.example.org with LMTP\r\n" +
				"\t(envelope-from <>); Sun, 29 Nov 2026 15:04:05 -0300\r\n"},
		{"TLS", Envelope{From: "c@example.net", Recipients: two, Helo: "h", ID: "X", TLS: true},
			"Return-Path: <c@example.net>\r\n" +
				"Received: from h\r\n" +
				"\tby mx.example.org with LMTPS id X\r\n" +
				"\t(envelope-from <c@example.net>); Sun, 29 Nov 2026 15:04:05 -0300\r\n"},
		{"control bytes dropped", Envelope{From: "x\r\nBcc: y@z", Recipients: one, Helo: "h\x00"},
			"Return-Path: <xBcc: y@z>\r\n" +
				"Delivered-To: Alice+tag@example.org\r\n" +
				"Received: from h\r\n" +
				"\tby mx.example.org with LMTP\r\n" +
				"\t(envelope-from <xBcc: y@z>)\r\n" +
				"\tfor <Alice+tag@example.org>; Sun, 29 Nov 2026 15:04:05 -0300\r\n"},
	} {
		if got := string(d.prefix(tc.env, now)); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// downUsers is a user database that is down.
type downUsers struct{}

func (downUsers) Lookup(ctx context.Context, address string) (*userdb.User, error) {
	return nil, fmt.Errorf("userdb: lookup %s: %w", address, userdb.ErrUnavailable)
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	db, err := metadb.OpenSQLite(ctx, filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := embedded.New(ctx, db, embedded.WithHasher(func(pw string) (string, error) {
		return password.HashArgon2ID(pw, password.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1})
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"alice@example.org", "a+b@example.org", "off@example.org"} {
		if err := u.AddUser(ctx, a, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.SetDisabled(ctx, "off@example.org", true); err != nil {
		t.Fatal(err)
	}
	d := &Deliverer{Users: u, Delimiter: "+"}
	for _, tc := range []struct {
		in      string
		account string // "" when an error is wanted
		err     error
		temp    bool
	}{
		{"alice@example.org", "alice@example.org", nil, false},
		{"  ALICE@Example.ORG ", "alice@example.org", nil, false},
		{"alice+news@example.org", "alice@example.org", nil, false},
		{"alice+news+more@example.org", "alice@example.org", nil, false},
		{"a+b@example.org", "a+b@example.org", nil, false}, // exact match wins over the delimiter
		{"a+c@example.org", "", ErrUnknownRecipient, false},
		{"nobody@example.org", "", ErrUnknownRecipient, false},
		{"off@example.org", "", ErrDisabled, false},
		{"", "", ErrBadAddress, false},
		{"a b@example.org", "", ErrBadAddress, false},
	} {
		rc, err := d.Resolve(ctx, tc.in)
		if tc.err != nil {
			if !errors.Is(err, tc.err) || !errors.Is(err, ErrPermanent) || errors.Is(err, ErrTemporary) || Temporary(err) != tc.temp {
				t.Errorf("Resolve(%q) = %v, want permanent %v", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || rc.User == nil || rc.User.Account != tc.account || rc.Address != tc.in {
			t.Errorf("Resolve(%q) = %+v, %v; want account %s", tc.in, rc, err, tc.account)
		}
	}
	// No delimiter: the tag is part of the address.
	d.Delimiter = ""
	if _, err := d.Resolve(ctx, "alice+news@example.org"); !errors.Is(err, ErrUnknownRecipient) {
		t.Errorf("Resolve without delimiter = %v, want ErrUnknownRecipient", err)
	}
	d.Users = downUsers{}
	_, err = d.Resolve(ctx, "alice@example.org")
	if !errors.Is(err, ErrTemporary) || !errors.Is(err, userdb.ErrUnavailable) || !Temporary(err) {
		t.Errorf("Resolve with the userdb down = %v, want temporary wrapping userdb.ErrUnavailable", err)
	}
}

// TestResolvePolicy: with auth.local_part_case = keep the recipient's
// local part is matched as written (the domain never), and the delimiter
// is stripped from the as-written form.
func TestResolvePolicy(t *testing.T) {
	ctx := context.Background()
	db, err := metadb.OpenSQLite(ctx, filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keep := userdb.AddressPolicy{KeepLocalCase: true}
	u, err := embedded.New(ctx, db, embedded.WithPolicy(keep), embedded.WithHasher(func(pw string) (string, error) {
		return password.HashArgon2ID(pw, password.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1})
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"Alice@example.org", "alice@example.org"} {
		if err := u.AddUser(ctx, a, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	d := &Deliverer{Users: u, Delimiter: "+", Policy: keep}
	for _, tc := range []struct{ in, account string }{
		{"Alice@EXAMPLE.org", "Alice@example.org"},
		{"Alice+x@Example.org", "Alice@example.org"},
		{"alice@example.ORG", "alice@example.org"},
		{"alice+x@example.org", "alice@example.org"},
		{"ALICE@example.org", ""},
	} {
		rc, err := d.Resolve(ctx, tc.in)
		if tc.account == "" {
			if !errors.Is(err, ErrUnknownRecipient) {
				t.Errorf("Resolve(%q) = %+v, %v; want ErrUnknownRecipient", tc.in, rc, err)
			}
			continue
		}
		if err != nil || rc.User.Account != tc.account {
			t.Errorf("Resolve(%q) = %+v, %v; want account %s", tc.in, rc, err, tc.account)
		}
	}
}

func TestTemporary(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("surprise"), true},
		{temporary("append", "a", blob.ErrUnavailable), true},
		{permanent("append", "a", ErrOverQuota, mailstore.ErrOverQuota), false},
		{permanent("resolve", "a", ErrUnknownRecipient, nil), false},
	} {
		if got := Temporary(tc.err); got != tc.want {
			t.Errorf("Temporary(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	err := permanent("append", "a@b", ErrOverQuota, mailstore.ErrOverQuota)
	if want := "delivery: append a@b: mailbox over quota: mailstore: over quota"; err.Error() != want {
		t.Errorf("error text %q, want %q", err, want)
	}
	if want := "delivery: read message: unexpected EOF"; temporary("read", "message", io.ErrUnexpectedEOF).Error() != want {
		t.Errorf("temporary error text, want %q", want)
	}
}
