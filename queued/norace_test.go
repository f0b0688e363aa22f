//go:build !race

package queued

const raceEnabled = false
