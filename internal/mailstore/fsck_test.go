package mailstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
)

func TestOrphans(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	e.appendMsg(a, "INBOX", testMsg(1))
	e.appendMsg(e.account("b@x"), "INBOX", testMsg(2))
	// An object with no row, as a crash after Put leaves.
	orphan := accountPrefix("a@x") + "msg/01JDZ8Q2V3N6K4W5X7Y8Z9A0BC"
	if err := e.blobs.Put(ctx, orphan, strings.NewReader("x"), 1, nil); err != nil {
		t.Fatal(err)
	}
	var got []string
	collect := func(at blob.Attrs) error { got = append(got, at.Key); return nil }
	if err := e.s.Orphans(ctx, "a@x", time.Hour, collect); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("young orphans reported: %v", got)
	}
	if err := e.s.Orphans(ctx, "a@x", -time.Hour, collect); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != orphan {
		t.Errorf("orphans %v, want [%s]", got, orphan)
	}
}

// unavailableStat is a blob store whose Stat fails as an unreachable
// bucket does.
type unavailableStat struct{ blob.Store }

func (unavailableStat) Stat(ctx context.Context, key string) (blob.Attrs, error) {
	return blob.Attrs{}, fmt.Errorf("blob: stat %s: %w: injected", key, blob.ErrUnavailable)
}

// TestMissingObjects: an object deleted behind the index's back is
// reported once with the rows that use it (a COPY shares it); an
// unavailable store is an error, not a list of missing objects.
func TestMissingObjects(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	r1 := e.appendMsg(a, "INBOX", testMsg(1))
	e.appendMsg(a, "INBOX", testMsg(2))
	e.appendMsg(e.account("b@x"), "INBOX", testMsg(3))
	if _, err := a.CreateMailbox(ctx, "Copies", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Copy(ctx, r1.MailboxID, []uint32{r1.UID}, "Copies"); err != nil {
		t.Fatal(err)
	}
	var key string
	if err := e.db.QueryRowContext(ctx, `SELECT blob_key FROM messages WHERE mailbox_id = ? AND uid = ?`, r1.MailboxID, r1.UID).Scan(&key); err != nil {
		t.Fatal(err)
	}
	var got []MissingObject
	collect := func(m MissingObject) error { got = append(got, m); return nil }
	n, err := e.s.MissingObjects(ctx, 2, collect)
	if err != nil || n != 3 || len(got) != 0 {
		t.Fatalf("MissingObjects on a whole store = %d checked, %v, %v; want 3, none", n, got, err)
	}
	if err := e.blobs.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	n, err = e.s.MissingObjects(ctx, 0, collect)
	if err != nil || n != 3 {
		t.Fatalf("MissingObjects = %d checked, %v; want 3", n, err)
	}
	want := MissingObject{Account: "a@x", Key: key, Size: int64(len(testMsg(1))), Messages: 2}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("missing = %+v, want [%+v]", got, want)
	}
	names, err := e.s.Accounts(ctx)
	if err != nil || strings.Join(names, ",") != "a@x,b@x" {
		t.Fatalf("Accounts = %q, %v", names, err)
	}

	e.blobs = unavailableStat{e.blobs}
	e.reopen()
	got = nil
	if _, err := e.s.MissingObjects(ctx, 4, collect); !errors.Is(err, blob.ErrUnavailable) || len(got) != 0 {
		t.Fatalf("MissingObjects on an unavailable store = %v, reported %v; want ErrUnavailable, nothing", err, got)
	}
}
