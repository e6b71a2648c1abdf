package mailstore

import (
	"strings"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/oklog/ulid/v2"
)

func TestBlobKey(t *testing.T) {
	id := ulid.MustParse("01JDZ8Q2V3N6K4W5X7Y8Z9A0BC")
	for _, tc := range []struct{ account, seg string }{
		{"alice@example.org", "alice=40example.org"},
		{"a.b+tag_x-y@x.y", "a.b+tag_x-y=40x.y"},
		{".hidden", "=2Ehidden"},
		{"..", "=2E."},
		{"a=b", "a=3Db"},
		{"a/b", "a=2Fb"},
		{"Ünï", "=C3=9Cn=C3=AF"},
		{"sp ace", "sp=20ace"},
	} {
		key := blobKey(tc.account, id)
		parts := strings.Split(key, "/")
		if len(parts) != 4 || len(parts[0]) != 4 || parts[1] != tc.seg || parts[2] != "msg" || parts[3] != id.String() {
			t.Errorf("blobKey(%q) = %q, want segment %q", tc.account, key, tc.seg)
		}
		if err := blob.ValidateKey(key); err != nil {
			t.Errorf("blobKey(%q) = %q: %v", tc.account, key, err)
		}
		if !strings.HasPrefix(key, accountPrefix(tc.account)) {
			t.Errorf("key %q lacks prefix %q", key, accountPrefix(tc.account))
		}
	}
	// Long names are cut and made unique with a hash.
	long1 := strings.Repeat("é", 300) + "1"
	long2 := strings.Repeat("é", 300) + "2"
	k1, k2 := blobKey(long1, id), blobKey(long2, id)
	if k1 == k2 || blob.ValidateKey(k1) != nil || blob.ValidateKey(k2) != nil {
		t.Errorf("long keys %q %q", k1, k2)
	}
	if seg := strings.Split(k1, "/")[1]; len(seg) > 200 || !strings.Contains(seg, "==") {
		t.Errorf("long segment %q (%d bytes)", seg, len(seg))
	}
	// The hash prefix is stable: printf alice@example.org | sha256sum.
	if got := blobKey("alice@example.org", id)[:4]; got != "7a64" {
		t.Errorf("hash prefix %s", got)
	}
}

func TestMetaValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"Hello", 10, "Hello"},
		{"100%", 10, "100%25"},
		{"é\r\n", 20, "%C3%A9%0D%0A"},
		{"abcdefghijkl", 10, "abcdef%..."},
		{"ééééé", 12, "%C3%A9%..."},
	} {
		if got := metaValue(tc.in, tc.max); got != tc.want {
			t.Errorf("metaValue(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

// TestBlobMeta: the metadata of a message with huge, non-ASCII headers
// is valid and keeps every required field.
func TestBlobMeta(t *testing.T) {
	e := newEnv(t)
	subj := strings.Repeat("Ünïcödé ", 200)
	raw := "From: " + strings.Repeat("x", 900) + "@example.org\r\nTo: " + strings.Repeat("y", 900) +
		"@example.org\r\nSubject: " + subj + "\r\nMessage-ID: <" + strings.Repeat("m", 500) + "@x>\r\n\r\nbody\r\n"
	in := e.spool(raw)
	defer in.Close()
	mb := Mailbox{GUID: strings.Repeat("a", 32), UIDValidity: 4000000000}
	date := time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("", -5*3600))
	kws := make([]string, 100)
	for i := range kws {
		kws[i] = "$Keyword" + strings.Repeat("k", i%10)
	}
	meta := blobMeta("ünï@example.org", mb, 42, in, append([]string{`\Seen`}, kws...), date)
	if err := blob.ValidateMetadata(meta); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"v": "1", "account": "%C3%BCn%C3%AF@example.org", "mailbox-guid": mb.GUID, "uidvalidity": "4000000000",
		"uid": "42", "internaldate": "2024-01-02T03:04:05-05:00", "size": "0",
	} {
		if k == "size" {
			continue
		}
		if meta[k] != want {
			t.Errorf("meta[%s] = %q, want %q", k, meta[k], want)
		}
	}
	if len(meta["sha256"]) != 64 || !strings.HasSuffix(meta["flags"], "%...") || !strings.HasPrefix(meta["flags"], `\Seen $Keyword`) {
		t.Errorf("sha256 %q flags %q", meta["sha256"], meta["flags"])
	}
	if meta["message-id"] == "" || !strings.HasSuffix(meta["subject"], "%...") {
		t.Errorf("hints: message-id %q subject %q", meta["message-id"], meta["subject"])
	}
}
