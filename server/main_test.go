package server_test

import (
	"os"
	"testing"

	"github.com/plugind/plugind/loader"
)

// TestMain lets this test binary serve as the load-check child process
// of the servers these tests start: they run their own executable.
func TestMain(m *testing.M) {
	loader.RunLoadCheckIfAsked()
	os.Exit(m.Run())
}
