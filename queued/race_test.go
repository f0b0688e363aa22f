//go:build race

package queued

const raceEnabled = true
