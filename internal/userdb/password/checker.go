package password

import (
	"context"
	"runtime"
	"sync"
)

// Checker verifies passwords for a user database backend: at most
// GOMAXPROCS verifications run at once (an ARGON2ID check takes 64 MiB),
// and a user with no hash costs the same work as one with a hash made by
// the backend's Hasher, so timing does not tell unknown users apart.
// The zero value is not usable; use NewChecker. Safe for concurrent use.
type Checker struct {
	hasher Hasher
	sem    chan struct{}

	dummyOnce sync.Once
	dummy     string
}

// NewChecker returns a Checker whose dummy hash is made by hasher (nil:
// Hash, the ARGON2ID default).
func NewChecker(hasher Hasher) *Checker {
	if hasher == nil {
		hasher = Hash
	}
	return &Checker{hasher: hasher, sem: make(chan struct{}, runtime.GOMAXPROCS(0))}
}

// Check reports whether pw matches hash. An empty hash (unknown user, or
// a user with no password) verifies a dummy hash and reports false. err
// is ctx.Err() when ctx ends while waiting for a slot, or Verify's error
// for a hash it cannot read; callers turn every false or error into
// userdb.ErrAuthFailed except a context error.
func (c *Checker) Check(ctx context.Context, hash, pw string) (bool, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-c.sem }()
	if hash == "" {
		_, _ = Verify(c.dummyHash(), pw)
		return false, nil
	}
	return Verify(hash, pw)
}

func (c *Checker) dummyHash() string {
	c.dummyOnce.Do(func() {
		h, err := c.hasher("bucketmail-dummy-password")
		if err != nil {
			h = dummyHash
		}
		c.dummy = h
	})
	return c.dummy
}
