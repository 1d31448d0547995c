package build_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// TestMain lets this test binary serve as the load-check child process:
// pipelines in these tests run os.Args[0] __loadcheck PATH.
func TestMain(m *testing.M) {
	loader.RunLoadCheckIfAsked()
	os.Exit(m.Run())
}

// newPipeline is a pipeline over pluginPath with the shared artifact
// cache, logging into a buffer, with options changed by set (if not nil).
func newPipeline(t *testing.T, pluginPath string, set func(*build.Options)) (*build.Pipeline, *plugintest.Log) {
	t.Helper()
	logs := &plugintest.Log{}
	opts := build.Options{
		SrcDir:   filepath.Join(pluginPath, "src"),
		CacheDir: plugintest.CacheDir(),
		Log:      zerolog.New(logs),
	}
	if set != nil {
		set(&opts)
	}
	p, err := build.New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p, logs
}
