//go:build !unix

package cache

import (
	"fmt"
	"os"
)

// lockDir opens path; without flock(2) nothing stops a second process.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache: lock %s: %w", path, err)
	}
	return f, nil
}
