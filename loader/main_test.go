package loader_test

import (
	"os"
	"testing"

	"github.com/plugind/plugind/loader"
)

// TestMain lets this test binary serve as the load-check child process:
// loaders in these tests run os.Args[0] __loadcheck PATH.
func TestMain(m *testing.M) {
	loader.RunLoadCheckIfAsked()
	os.Exit(m.Run())
}
