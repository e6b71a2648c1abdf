//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readNoEcho turns echo off, writes prompt to w and reads one line from
// the terminal f. Echo goes off before the prompt, so that nothing typed
// after the prompt appears is echoed.
func readNoEcho(f *os.File, w io.Writer, prompt string) (string, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", fmt.Errorf("terminal: %w", err)
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return "", fmt.Errorf("terminal: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	defer fmt.Fprintln(w) // the Enter that was not echoed
	fmt.Fprint(w, prompt)
	// One byte at a time, so nothing after the line is consumed.
	var b strings.Builder
	r := bufio.NewReaderSize(f, 16)
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", fmt.Errorf("terminal: %w", err)
		}
		if c == '\n' {
			return strings.TrimRight(b.String(), "\r"), nil
		}
		b.WriteByte(c)
	}
}
