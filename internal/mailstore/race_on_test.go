//go:build race

package mailstore

// raceEnabled: the race detector makes every Append several times slower;
// TestCorpusAppend then samples the corpus.
const raceEnabled = true
