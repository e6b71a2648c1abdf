package mailstore

import (
	"context"
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
