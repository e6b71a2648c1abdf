package mailstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
)

// TestBlobMetaCorpus: for every corpus message, the object metadata is
// printable ASCII and within blob.MaxMetadataBytes, carries every
// required field exactly (parseBlobMeta gives back what went in, even
// with a non-ASCII account and mailbox name and a long flag list), and
// every hint decodes (unMetaValue) to the header value it came from, or
// to a prefix of it when cut with the "%..." marker.
func TestBlobMetaCorpus(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	account := "jürgen.übermäßig+" + strings.Repeat("ß", 40) + "@bücher.example"
	mb := Mailbox{GUID: "0123456789abcdef0123456789abcdef", UIDValidity: 4294967295,
		Name: "Archiv/" + strings.Repeat("日本語", 30) + "/Ünïcödé"}
	flags := []string{FlagAnswered, FlagSeen}
	for i := 0; i < 40; i++ {
		flags = append(flags, "$Keyword"+strconv.Itoa(i))
	}
	date := time.Date(2024, 2, 29, 23, 59, 58, 0, time.FixedZone("", -(9*3600+30*60)))
	var n, cut, encoded int
	corpus.Walk(t, "", func(m corpus.Message) {
		in, err := e.s.Spool(ctx, bytes.NewReader(m.Raw), true, 0)
		if err != nil {
			t.Fatalf("%s: %v", m.ID, err)
		}
		defer in.Close()
		n++
		meta := blobMeta(account, mb, 4294967294, in, flags, date)
		if err := blob.ValidateMetadata(meta); err != nil {
			t.Errorf("%s: %v", m.ID, err)
		}
		total := 0
		for k, v := range meta {
			total += len(k) + len(v)
			if strings.Contains(v, "%...") {
				cut++
			}
			if strings.Contains(v, "%") {
				encoded++
			}
		}
		if total > blob.MaxMetadataBytes {
			t.Errorf("%s: %d bytes of metadata", m.ID, total)
		}
		p, err := parseBlobMeta(meta)
		if err != nil {
			t.Fatalf("%s: %v", m.ID, err)
		}
		if p.guid != mb.GUID || p.uidValidity != mb.UIDValidity || p.uid != 4294967294 || !p.date.Equal(date) ||
			p.date.Format(time.RFC3339) != "2024-02-29T23:59:58-09:30" || p.mailbox != "" && p.mailbox != mb.Name {
			t.Errorf("%s: placement %+v", m.ID, p)
		}
		// The flag list is cut at 400 bytes: what is left is a prefix.
		if len(p.flags) < 20 || !slices.Equal(p.flags, flags[:len(p.flags)]) {
			t.Errorf("%s: flags %q", m.ID, p.flags)
		}
		if got, ok := unMetaValue(meta["account"]); !ok || got != account {
			t.Errorf("%s: account %q (complete %v)", m.ID, got, ok)
		}
		if meta["size"] != strconv.FormatInt(in.Size, 10) || meta["sha256"] != hex.EncodeToString(in.SHA256[:]) || meta["v"] != "1" {
			t.Errorf("%s: size %q sha256 %q v %q", m.ID, meta["size"], meta["sha256"], meta["v"])
		}
		for _, h := range []struct{ key, raw string }{
			{"mailbox", mb.Name}, {"message-id", in.idx.messageID}, {"subject", in.idx.rawSubject},
			{"from", in.idx.rawFrom}, {"to", in.idx.rawTo}, {"date", in.idx.rawDate},
		} {
			v, present := meta[h.key]
			if !present {
				continue
			}
			got, complete := unMetaValue(v)
			if complete && got != h.raw || !complete && !strings.HasPrefix(h.raw, got) {
				t.Errorf("%s: hint %s = %q decodes to %q (complete %v), header %q", m.ID, h.key, v, got, complete, h.raw)
			}
		}
	})
	t.Logf("%d messages; %d values cut with a marker, %d with encoded bytes", n, cut, encoded)
	if n < 500 || cut == 0 || encoded == 0 {
		t.Errorf("corpus coverage: %d messages, %d cut, %d encoded", n, cut, encoded)
	}
}
