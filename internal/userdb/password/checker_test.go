package password

import (
	"context"
	"errors"
	"testing"
)

func TestChecker(t *testing.T) {
	calls := 0
	cheap := func(pw string) (string, error) { calls++; return "{PLAIN}" + pw, nil }
	c := NewChecker(cheap)
	ctx := context.Background()
	for _, tc := range []struct {
		hash, pw string
		want     bool
		wantErr  bool
	}{
		{"{PLAIN}secret", "secret", true, false},
		{"{PLAIN}secret", "wrong", false, false},
		{"", "bucketmail-dummy-password", false, false}, // unknown user: never true, even for the dummy's password
		{"{NOSUCHSCHEME}x", "x", false, true},
	} {
		got, err := c.Check(ctx, tc.hash, tc.pw)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("Check(%q, %q) = %v, %v; want %v, error %v", tc.hash, tc.pw, got, err, tc.want, tc.wantErr)
		}
	}
	c.Check(ctx, "", "again")
	if calls != 1 {
		t.Errorf("hasher called %d times for the dummy hash, want once", calls)
	}

	// A cancelled context while every slot is taken gives ctx.Err().
	for i := 0; i < cap(c.sem); i++ {
		c.sem <- struct{}{}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Check(cctx, "{PLAIN}secret", "secret"); !errors.Is(err, context.Canceled) {
		t.Errorf("Check with all slots taken and ctx cancelled = %v, want context.Canceled", err)
	}
}
