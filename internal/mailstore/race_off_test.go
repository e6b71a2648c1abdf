//go:build !race

package mailstore

const raceEnabled = false
