//go:build !linux

package main

import (
	"errors"
	"io"
	"os"
)

// isTerminal reports false: prompting is supported on Linux only; use
// --password-stdin elsewhere.
func isTerminal(*os.File) bool { return false }

func readNoEcho(*os.File, io.Writer, string) (string, error) {
	return "", errors.New("password prompt not supported on this system; use --password-stdin")
}
