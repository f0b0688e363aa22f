//go:build race

package testproc

// raceEnabled builds the binary under test with -race when the tests run
// with -race, so data races in the daemons fail the tests too.
const raceEnabled = true
