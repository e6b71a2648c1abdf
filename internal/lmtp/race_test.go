//go:build race

package lmtp_test

// raceEnabled: the race detector makes a corpus delivery many times
// slower, so the corpus test samples the corpus.
const raceEnabled = true
