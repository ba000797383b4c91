//go:build race

package testcluster

// raceEnabled is true when the test binary was built with -race; the broker
// binary is then built with -race too (see RaceEnabled).
const raceEnabled = true
