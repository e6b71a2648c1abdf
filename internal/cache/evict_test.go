package cache

import (
	"context"
	"slices"
	"testing"
)

// TestKeysEvict: Keys lists cached keys by prefix; Evict and EvictPrefix
// drop local copies only (the inner store keeps the objects, so a later
// read is a miss served from it) and leave other keys cached.
func TestKeysEvict(t *testing.T) {
	inner := newInner(t)
	dir := t.TempDir()
	c := openCache(t, Config{Dir: dir}, inner)
	for _, k := range []string{"aa/alice/msg/1", "aa/alice/msg/2", "aa/alice/msg/3", "bb/bob/msg/1", "bb/bob/msg/2"} {
		putString(t, c, k, "body of "+k)
	}
	keys := c.Keys("aa/alice/")
	slices.Sort(keys)
	if want := []string{"aa/alice/msg/1", "aa/alice/msg/2", "aa/alice/msg/3"}; !slices.Equal(keys, want) {
		t.Fatalf("Keys(alice) = %q, want %q", keys, want)
	}
	if got := len(c.Keys("")); got != 5 {
		t.Fatalf("len(Keys(\"\")) = %d, want 5", got)
	}
	if n := c.Evict("aa/alice/msg/1", "aa/alice/msg/3", "zz/none"); n != 2 {
		t.Fatalf("Evict = %d, want 2", n)
	}
	if got := c.Keys("aa/"); !slices.Equal(got, []string{"aa/alice/msg/2"}) {
		t.Fatalf("Keys after Evict = %q, want [aa/alice/msg/2]", got)
	}
	if n := countFiles(t, dir); n != 3 {
		t.Fatalf("%d object files after Evict, want 3", n)
	}
	before := len(inner.calls())
	if got := readAll(t, c, "aa/alice/msg/1", 0, -1); got != "body of aa/alice/msg/1" {
		t.Fatalf("read after Evict = %q", got)
	}
	if got := len(inner.calls()) - before; got != 1 {
		t.Fatalf("inner reads after Evict = %d, want 1 (a miss)", got)
	}
	if n := c.EvictPrefix("bb/bob/"); n != 2 {
		t.Fatalf("EvictPrefix(bob) = %d, want 2", n)
	}
	keys = c.Keys("")
	slices.Sort(keys)
	if want := []string{"aa/alice/msg/1", "aa/alice/msg/2"}; !slices.Equal(keys, want) {
		t.Fatalf("Keys after EvictPrefix = %q, want %q", keys, want)
	}
	if st := c.Stats(); st.Evictions != 0 {
		t.Fatalf("Stats.Evictions = %d, want 0 (Evict is not policy eviction)", st.Evictions)
	}
	if _, err := inner.Stat(context.Background(), "bb/bob/msg/1"); err != nil {
		t.Fatalf("inner object gone after EvictPrefix: %v", err)
	}
}
