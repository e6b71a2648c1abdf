package journal

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	blobfs "github.com/bucketmail/bucketmail/internal/blob/fs"
)

func TestKeys(t *testing.T) {
	p := AccountPrefix("alice@example.org")
	if p != "7a64/alice=40example.org/" {
		t.Fatalf("AccountPrefix = %q", p)
	}
	for _, tc := range []struct {
		key, kind string
		seq       uint64
		ok        bool
	}{
		{p + "journal/00000000000000000042", KindJournal, 42, true},
		{p + "snapshot/18446744073709551615", KindSnapshot, 18446744073709551615, true},
		{p + "journal/42", "", 0, false},
		{p + "msg/01JDZ8Q2V3N6K4W5X7Y8Z9A0BC", "", 0, false},
		{p + "journal/0000000000000000004x", "", 0, false},
		{"7a64/bob=40example.org/journal/00000000000000000042", "", 0, false},
	} {
		kind, seq, ok := ParseKey(p, tc.key)
		if kind != tc.kind || seq != tc.seq || ok != tc.ok {
			t.Errorf("ParseKey(%q) = %q, %d, %v", tc.key, kind, seq, ok)
		}
	}
	if k := Key(p, KindJournal, 42); k != p+"journal/00000000000000000042" || blob.ValidateKey(k) != nil {
		t.Errorf("Key = %q", k)
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct{ in, json string }{
		{"plain", `"plain"`},
		{"Ünï \"q\"", `"Ünï \"q\""`},
		{"bad \xff\xfe bytes", `{"b64":"YmFkIP/+IGJ5dGVz"}`},
		{"", `""`},
	} {
		b, err := json.Marshal(Text(tc.in))
		if err != nil || string(b) != tc.json {
			t.Errorf("Marshal(%q) = %s, %v; want %s", tc.in, b, err, tc.json)
		}
		var back Text
		if err := json.Unmarshal(b, &back); err != nil || string(back) != tc.in {
			t.Errorf("Unmarshal(%s) = %q, %v", b, back, err)
		}
	}
}

// TestWriteRead: records written come back in order and exactly, through
// a real blob store.
func TestWriteRead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := blobfs.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	date := int64(1700000000)
	recs := []Record{
		{T: TMailbox, Mailbox: &Mailbox{GUID: "g1", Name: "Ärger/日本語", UIDValidity: 7, UIDNext: 9, HighestModSeq: 12, SpecialUse: `\Archive`, Committed: 8}},
		{T: TBlob, Blob: &BlobIndex{Key: "k", Size: 10, SHA256: []byte{1, 2}, Envelope: "(\"\xe9t\xe9\")", Structure: []byte{0, 255},
			Header: []byte("Subject: \xff\r\n\r\n"), Date: &date}},
		{T: TMessage, Message: &MessageRec{GUID: "g1", UID: 3, Key: "k", Flags: []string{`\Seen`, "$Label1"}, ModSeq: 11,
			InternalDate: date, InternalTZ: -34200, SaveDate: date + 5}},
		{T: TExpunge, GUID: "g1", UIDs: []uint32{1, 2}},
		{T: TSub, Name: "Ärger"},
		{T: TMailboxGo, GUID: "g0"},
	}
	w, err := NewWriter(dir, Header{Kind: KindJournal, Account: "zoë@example.org", Seq: 5, Time: time.Unix(date, 0).UTC(), NextUIDValidity: 99})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, r := range recs {
		if err := w.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	key := Key(AccountPrefix("zoë@example.org"), KindJournal, 5)
	if err := w.Put(ctx, store, key); err != nil {
		t.Fatal(err)
	}
	var got []Record
	h, err := Read(ctx, store, key, func(_ Header, r Record) error { got = append(got, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if h.V != Version || h.Kind != KindJournal || h.Account != "zoë@example.org" || h.Seq != 5 || h.NextUIDValidity != 99 {
		t.Errorf("header %+v", h)
	}
	if !reflect.DeepEqual(got, recs) {
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(recs)
		t.Errorf("records\n got %s\nwant %s", gb, wb)
	}
	// Not a journal object.
	if err := store.Put(ctx, "x", strings.NewReader("hello"), 5, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(ctx, store, "x", nil); !errors.Is(err, ErrFormat) {
		t.Errorf("Read of a non-journal object: %v", err)
	}
}
