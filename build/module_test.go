package build_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
)

func TestFindModuleDir(t *testing.T) {
	root, err := filepath.Abs(plugintest.Root())
	if err != nil {
		t.Fatal(err)
	}
	got, err := build.FindModuleDir("github.com/plugind/plugind", filepath.Join(root, "build", "testdata-does-not-exist"))
	if err != nil || got != root {
		t.Errorf("FindModuleDir = %q, %v; want %q", got, err, root)
	}
	if _, err := build.FindModuleDir("example.com/other", root); err == nil || !strings.Contains(err.Error(), "plugins.moduledir") {
		t.Errorf("err = %v, want a hint at plugins.moduledir", err)
	}
}
