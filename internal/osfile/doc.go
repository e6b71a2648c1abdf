// Package osfile has the file-system calls that the blob store and the
// read cache share: unnamed temporary inodes (Linux O_TMPFILE) that get
// their name only once they are whole.
package osfile
