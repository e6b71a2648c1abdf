package embedded

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bucketmail/bucketmail/internal/blob"
	blobfs "github.com/bucketmail/bucketmail/internal/blob/fs"
	"github.com/bucketmail/bucketmail/internal/userdb"
)

// TestBucketRecords: account records follow every change into the
// bucket, and an empty users table is restored from them (same hash, so
// the same password works; quota and disabled kept; deleted users stay
// deleted).
func TestBucketRecords(t *testing.T) {
	ctx := context.Background()
	store, err := blobfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	d := open(t, WithHasher(cheap), WithBucket(store))
	for _, a := range []string{"alice@example.org", "Bob@Example.org", "carol@example.org"} {
		if err := d.AddUser(ctx, a, "pw-"+a); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.SetPassword(ctx, "alice@example.org", "new secret"); err != nil {
		t.Fatal(err)
	}
	if err := d.SetQuota(ctx, "bob@example.org", 12345); err != nil {
		t.Fatal(err)
	}
	if err := d.SetDisabled(ctx, "bob@example.org", true); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteUser(ctx, "carol@example.org"); err != nil {
		t.Fatal(err)
	}
	var keys []string
	store.List(ctx, "", func(a blob.Attrs) error { keys = append(keys, a.Key); return nil })
	if want := []string{"accounts/alice=40example.org", "accounts/bob=40example.org"}; !slices.Equal(keys, want) {
		t.Fatalf("bucket keys %q, want %q", keys, want)
	}

	fresh := open(t, WithHasher(cheap), WithBucket(store))
	added, err := fresh.RestoreFromBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"alice@example.org", "bob@example.org"}; !slices.Equal(added, want) {
		t.Errorf("restored %q, want %q", added, want)
	}
	if _, err := fresh.Authenticate(ctx, "alice@example.org", "new secret"); err != nil {
		t.Errorf("alice with the new password: %v", err)
	}
	if _, err := fresh.Authenticate(ctx, "alice@example.org", "pw-alice@example.org"); !errors.Is(err, userdb.ErrAuthFailed) {
		t.Errorf("alice with the old password: %v", err)
	}
	u, err := fresh.Lookup(ctx, "bob@example.org")
	if err != nil || u.QuotaBytes != 12345 || !u.Disabled {
		t.Errorf("bob = %+v, %v", u, err)
	}
	if _, err := fresh.Lookup(ctx, "carol@example.org"); !errors.Is(err, userdb.ErrNotFound) {
		t.Errorf("carol: %v", err)
	}
	// A second restore adds nothing.
	if added, err := fresh.RestoreFromBucket(ctx); err != nil || len(added) != 0 {
		t.Errorf("second restore: %q, %v", added, err)
	}
}

// TestSyncToBucket: users added without the bucket get their records on
// sync; existing records are not rewritten.
func TestSyncToBucket(t *testing.T) {
	ctx := context.Background()
	store, err := blobfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	d := open(t, WithHasher(cheap))
	for _, a := range []string{"alice@example.org", "bob@example.org"} {
		if err := d.AddUser(ctx, a, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	d.bucket = store
	// bob already has a record (a stale one): sync leaves it alone.
	store.Put(ctx, BucketKey("bob@example.org"), strings.NewReader(`{"v":1}`), 7, nil)
	if err := d.SyncToBucket(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := d.readRecord(ctx, BucketKey("alice@example.org"))
	if err != nil || r.Address != "alice@example.org" || !strings.HasPrefix(r.Password, "{ARGON2ID}") {
		t.Errorf("alice's record %+v, %v", r, err)
	}
	if r, err := d.readRecord(ctx, BucketKey("bob@example.org")); err != nil || r.Address != "" {
		t.Errorf("bob's record was rewritten: %+v, %v", r, err)
	}
}
