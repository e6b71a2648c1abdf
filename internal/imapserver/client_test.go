package imapserver

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// Tests with emersion/go-imap v2's client, an independent implementation.

const msgPlain = "From: Alice <alice@example.org>\r\n" +
	"To: Bob <bob@example.org>\r\n" +
	"Subject: Hello world\r\n" +
	"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n" +
	"Message-ID: <a1@example.org>\r\n" +
	"\r\n" +
	"Hello Bob,\r\n" +
	"this is a test.\r\n"

const msgMultipart = "From: Carol <carol@example.org>\r\n" +
	"To: alice@example.org\r\n" +
	"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n" +
	"Date: Tue, 8 Feb 1994 10:00:00 +0000\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"XX\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--XX\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Gr=C3=BC=C3=9Fe aus M=C3=BCnchen\r\n" +
	"--XX\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"AAECAw==\r\n" +
	"--XX--\r\n"

func dial(t *testing.T, env *testEnv, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(env.addr, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func login(t *testing.T, c *imapclient.Client, user, pass string) {
	t.Helper()
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
}

func appendMsg(t *testing.T, c *imapclient.Client, mailbox, msg string, opts *imap.AppendOptions) *imap.AppendData {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(msg)), opts)
	if _, err := cmd.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return data
}

func TestClientAppendSelectFetch(t *testing.T) {
	env := newTestEnv(t, nil)
	c := dial(t, env, nil)
	login(t, c, "alice", "secret")
	date := time.Date(2020, 5, 17, 10, 11, 12, 0, time.FixedZone("", 2*3600))
	a1 := appendMsg(t, c, "INBOX", msgPlain, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged, "$Label1"}, Time: date})
	a2 := appendMsg(t, c, "INBOX", msgMultipart, nil)
	if a1.UID != 1 || a2.UID != 2 || a1.UIDValidity == 0 || a1.UIDValidity != a2.UIDValidity {
		t.Fatalf("APPENDUID: %+v %+v", a1, a2)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 || sel.UIDNext != 3 || sel.UIDValidity != a1.UIDValidity {
		t.Fatalf("select: %+v", sel)
	}
	if !containsFlag(sel.PermanentFlags, imap.FlagWildcard) || !containsFlag(sel.Flags, "$Label1") {
		t.Fatalf("select flags: %v / %v", sel.Flags, sel.PermanentFlags)
	}

	whole := &imap.FetchItemBodySection{Peek: true}
	text1 := &imap.FetchItemBodySection{Part: []int{1}, Peek: true}
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{whole, text1, hdr},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("fetched %d messages", len(msgs))
	}
	m1, m2 := msgs[0], msgs[1]
	if got := string(m1.FindBodySection(whole)); got != msgPlain {
		t.Errorf("BODY[] of 1 = %q", got)
	}
	if got := string(m2.FindBodySection(whole)); got != msgMultipart {
		t.Errorf("BODY[] of 2 = %q", got)
	}
	if m1.RFC822Size != int64(len(msgPlain)) || m2.RFC822Size != int64(len(msgMultipart)) {
		t.Errorf("RFC822.SIZE %d %d", m1.RFC822Size, m2.RFC822Size)
	}
	if !m1.InternalDate.Equal(date) {
		t.Errorf("INTERNALDATE %v, want %v", m1.InternalDate, date)
	}
	if m1.Envelope == nil || m1.Envelope.Subject != "Hello world" || m1.Envelope.MessageID != "a1@example.org" ||
		len(m1.Envelope.From) != 1 || m1.Envelope.From[0].Addr() != "alice@example.org" {
		t.Errorf("ENVELOPE %+v", m1.Envelope)
	}
	if m2.Envelope == nil || m2.Envelope.Subject != "Grüße" {
		t.Errorf("ENVELOPE subject %+v", m2.Envelope)
	}
	if got := string(m1.FindBodySection(text1)); got != "Hello Bob,\r\nthis is a test.\r\n" {
		t.Errorf("BODY[1] of 1 = %q", got)
	}
	if got := string(m2.FindBodySection(text1)); got != "Gr=C3=BC=C3=9Fe aus M=C3=BCnchen" {
		t.Errorf("BODY[1] of 2 = %q", got)
	}
	if got := string(m2.FindBodySection(hdr)); got != "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\r\n" {
		t.Errorf("BODY[HEADER.FIELDS (Subject)] = %q", got)
	}
	mp, ok := m2.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || strings.ToLower(mp.Subtype) != "mixed" || len(mp.Children) != 2 {
		t.Fatalf("BODYSTRUCTURE %#v", m2.BodyStructure)
	}
	if sp, ok := mp.Children[1].(*imap.BodyStructureSinglePart); !ok || strings.ToLower(sp.Encoding) != "base64" {
		t.Errorf("part 2 %#v", mp.Children[1])
	}
	if !containsFlag(m1.Flags, imap.FlagFlagged) || !containsFlag(m1.Flags, "$Label1") || containsFlag(m1.Flags, imap.FlagSeen) {
		t.Errorf("flags of 1: %v", m1.Flags)
	}

	// BINARY undoes the transfer encoding (RFC 3516).
	bin1 := &imap.FetchItemBinarySection{Part: []int{1}, Peek: true}
	bin2 := &imap.FetchItemBinarySection{Part: []int{2}}
	msgs, err = c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{
		BinarySection:     []*imap.FetchItemBinarySection{bin1, bin2},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{2}}},
		Flags:             true,
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(msgs[0].FindBinarySection(bin1)); got != "Grüße aus München" {
		t.Errorf("BINARY[1] = %q", got)
	}
	if got := msgs[0].FindBinarySection(bin2); !bytes.Equal(got, []byte{0, 1, 2, 3}) {
		t.Errorf("BINARY[2] = %q", got)
	}
	if n, ok := msgs[0].FindBinarySectionSize([]int{2}); !ok || n != 4 {
		t.Errorf("BINARY.SIZE[2] = %d %v", n, ok)
	}
	// BINARY[2] without PEEK set \Seen.
	if !containsFlag(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("flags after BINARY[2]: %v", msgs[0].Flags)
	}

	// SEARCH over decoded header and body text.
	for _, tc := range []struct {
		crit *imap.SearchCriteria
		want []uint32
	}{
		{&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "grüße"}}}, []uint32{2}},
		{&imap.SearchCriteria{Body: []string{"münchen"}}, []uint32{2}},
		{&imap.SearchCriteria{Body: []string{"THIS IS A"}}, []uint32{1}},
		{&imap.SearchCriteria{Text: []string{"carol@example"}}, []uint32{2}},
		{&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, []uint32{1}},
		{&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{1}},
		{&imap.SearchCriteria{Larger: int64(len(msgPlain))}, []uint32{2}},
		{&imap.SearchCriteria{SentBefore: time.Date(1994, 2, 8, 0, 0, 0, 0, time.UTC)}, []uint32{1}},
		{&imap.SearchCriteria{Since: time.Date(2020, 5, 18, 0, 0, 0, 0, time.UTC)}, []uint32{2}},
	} {
		data, err := c.Search(tc.crit, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if got := data.AllSeqNums(); !equalU32(got, tc.want) {
			t.Errorf("SEARCH %+v = %v, want %v", tc.crit, got, tc.want)
		}
	}

	// STORE and flags.
	sm, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(sm) != 1 || !containsFlag(sm[0].Flags, imap.FlagDeleted) {
		t.Fatalf("STORE: %+v", sm)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Fatalf("after EXPUNGE: %d messages", n)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestClientCopyMoveUIDPlus(t *testing.T) {
	env := newTestEnv(t, nil)
	c := dial(t, env, nil)
	login(t, c, "bob", "hunter2")
	for i := 0; i < 3; i++ {
		appendMsg(t, c, "INBOX", msgPlain, nil)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cd, err := c.Copy(imap.SeqSetNum(1, 3), "Archive").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if cd.SourceUIDs.String() != "1,3" || cd.DestUIDs.String() != "1:2" {
		t.Errorf("COPYUID %v → %v", cd.SourceUIDs, cd.DestUIDs)
	}
	md, err := c.Move(imap.UIDSetNum(2), "Trash").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if md.SourceUIDs.String() != "2" || md.DestUIDs.String() != "1" {
		t.Errorf("MOVE COPYUID %v → %v", md.SourceUIDs, md.DestUIDs)
	}
	if n := c.Mailbox().NumMessages; n != 2 {
		t.Errorf("after MOVE: %d messages", n)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Nope").Wait(); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Errorf("COPY to missing mailbox: %v", err)
	}
	st, err := c.Status("Archive", &imap.StatusOptions{NumMessages: true, UIDNext: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *st.NumMessages != 2 || st.UIDNext != 3 {
		t.Errorf("STATUS Archive %+v", st)
	}
}

// TestClientIdleWakeup: a session in IDLE hears of another session's
// APPEND, STORE and EXPUNGE within a second (issue item 8).
func TestClientIdleWakeup(t *testing.T) {
	env := newTestEnv(t, nil)
	var mu sync.Mutex
	exists := make(chan uint32, 10)
	fetches := make(chan []imap.Flag, 10)
	expunges := make(chan uint32, 10)
	a := dial(t, env, &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			mu.Lock()
			defer mu.Unlock()
			buf, err := m.Collect()
			if err == nil {
				fetches <- buf.Flags
			}
		},
		Expunge: func(seq uint32) { expunges <- seq },
	})
	login(t, a, "alice", "secret")
	b := dial(t, env, nil)
	login(t, b, "alice", "secret")
	appendMsg(t, b, "INBOX", msgPlain, nil)
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := a.Idle()
	if err != nil {
		t.Fatal(err)
	}
	wait := func(what string, ch any) any {
		t.Helper()
		timeout := time.After(time.Second)
		switch ch := ch.(type) {
		case chan uint32:
			select {
			case v := <-ch:
				return v
			case <-timeout:
			}
		case chan []imap.Flag:
			select {
			case v := <-ch:
				return v
			case <-timeout:
			}
		}
		t.Fatalf("no %s within a second", what)
		return nil
	}
	start := time.Now()
	appendMsg(t, b, "INBOX", msgMultipart, nil)
	if n := wait("EXISTS", exists); n.(uint32) != 2 {
		t.Fatalf("EXISTS %d", n)
	}
	t.Logf("EXISTS after %v", time.Since(start))
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if f := wait("FETCH", fetches); !containsFlag(f.([]imap.Flag), imap.FlagDeleted) {
		t.Fatalf("FETCH flags %v", f)
	}
	if _, err := b.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	if seq := wait("EXPUNGE", expunges); seq.(uint32) != 1 {
		t.Fatalf("EXPUNGE %d", seq)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := a.Mailbox().NumMessages; n != 1 {
		t.Fatalf("after IDLE: %d messages", n)
	}
}

// TestClientExpungeVisibility: another session's EXPUNGE is not reported
// during FETCH (RFC 3501 §7.4.1), so sequence numbers stay valid, and is
// reported at the next NOOP.
func TestClientExpungeVisibility(t *testing.T) {
	env := newTestEnv(t, nil)
	var mu sync.Mutex
	var expunged []uint32
	a := dial(t, env, &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) {
			mu.Lock()
			expunged = append(expunged, seq)
			mu.Unlock()
		},
	})
	login(t, a, "alice", "secret")
	b := dial(t, env, nil)
	login(t, b, "alice", "secret")
	for i := 0; i < 3; i++ {
		appendMsg(t, b, "INBOX", msgPlain, nil)
	}
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	msgs, err := a.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	n := len(expunged)
	mu.Unlock()
	if n != 0 {
		t.Fatalf("EXPUNGE during FETCH: %v", expunged)
	}
	// Message 2 is gone from the store (no data to send, RFC 2180 §4.1);
	// 1 and 3 keep their numbers.
	if len(msgs) != 2 || msgs[0].SeqNum != 1 || msgs[0].UID != 1 || msgs[1].SeqNum != 3 || msgs[1].UID != 3 {
		t.Fatalf("FETCH after foreign expunge: %+v", msgs)
	}
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(expunged) != 1 || expunged[0] != 2 {
		t.Fatalf("EXPUNGE after NOOP: %v", expunged)
	}
}

func TestClientAuthenticatePlain(t *testing.T) {
	env := newTestEnv(t, nil)
	c := dial(t, env, nil)
	if err := c.Authenticate(sasl.NewPlainClient("", "carol@example.org", "pw")); err != nil {
		t.Fatal(err)
	}
	// The server's state, not the client's: go-imap v2 beta.8 wakes
	// Authenticate before it records its own state (completeCommand), so
	// c.State() can still say "not authenticated" here.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT after AUTHENTICATE PLAIN: %v", err)
	}
	c2 := dial(t, env, nil)
	if err := c2.Authenticate(sasl.NewPlainClient("", "carol@example.org", "nope")); err == nil {
		t.Fatal("wrong password accepted")
	}
}

// remoteListener makes accepted connections look as if they came from a
// non-loopback address.
type remoteListener struct{ net.Listener }

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
}

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestPrivacyRequired: plaintext auth off loopback without TLS is refused
// until STARTTLS; AllowInsecureAuth overrides.
func TestPrivacyRequired(t *testing.T) {
	tlsConf := selfSigned(t)
	for _, allow := range []bool{false, true} {
		st := newTestStore(t)
		srv := New(Options{Store: st, Auth: testUsers, TLS: tlsConf, AllowInsecureAuth: allow, Logger: testLogger(t)})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(remoteListener{ln}, false) }()

		c, err := imapclient.DialInsecure(ln.Addr().String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		caps, err := c.Capability().Wait()
		if err != nil {
			t.Fatal(err)
		}
		if !caps.Has(imap.CapStartTLS) || caps.Has(imap.CapLoginDisabled) == allow {
			t.Errorf("allow=%v: caps %v", allow, caps)
		}
		err = c.Login("alice", "secret").Wait()
		if allow && err != nil {
			t.Errorf("allow=%v: LOGIN: %v", allow, err)
		}
		if !allow && (err == nil || !strings.Contains(err.Error(), "PRIVACYREQUIRED")) {
			t.Errorf("allow=%v: LOGIN: %v", allow, err)
		}
		c.Close()

		if !allow {
			c, err := imapclient.DialStartTLS(ln.Addr().String(), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Login("alice", "secret").Wait(); err != nil {
				t.Errorf("LOGIN after STARTTLS: %v", err)
			}
			c.Close()
		}
		ctx, cancel := contextWithTimeout(5 * time.Second)
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func containsFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, x := range flags {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestImplicitTLS: Serve with implicitTLS starts with the handshake
// (port 993 style); STARTTLS is then not offered and LOGIN is allowed
// from any address.
func TestImplicitTLS(t *testing.T) {
	st := newTestStore(t)
	srv := New(Options{Store: st, Auth: testUsers, TLS: selfSigned(t), Logger: testLogger(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(remoteListener{ln}, true) }()
	c, err := imapclient.DialTLS(ln.Addr().String(), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if caps.Has(imap.CapStartTLS) || caps.Has(imap.CapLoginDisabled) || !caps.Has(imap.AuthCap("PLAIN")) {
		t.Errorf("caps %v", caps)
	}
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatalf("LOGIN over TLS: %v", err)
	}
	c.Close()
	ctx, cancel := contextWithTimeout(5 * time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Without a TLS config, implicit TLS is refused.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := New(Options{Store: st, Auth: testUsers}).Serve(ln2, true); err == nil {
		t.Error("Serve(implicitTLS) without TLS config succeeded")
	}
}
