//go:build !linux

package osfile

import (
	"errors"
	"os"
)

// Outside Linux there are no unnamed inodes: Put uses named temporary
// files.

func OpenUnnamed(string) (*os.File, bool, error) { return nil, false, nil }

func LinkUnnamed(*os.File, string) error { return errors.ErrUnsupported }

func UnnamedUsable() bool { return false }

// BootID is unknown outside Linux: callers fsync each file instead.
func BootID() string { return "" }

func SyncFS(string) error { return errors.ErrUnsupported }
