package main

import (
	"os"
	"testing"
)

// TestMain lets a test run the test binary as the vigil command itself
// (VIGIL_TEST_MAIN=1), so tests can check exit statuses and messages, and
// run vigil under another user, without building the binary.
func TestMain(m *testing.M) {
	if os.Getenv("VIGIL_TEST_MAIN") == "1" {
		os.Args = append([]string{"vigil"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
