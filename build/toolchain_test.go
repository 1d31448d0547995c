package build_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
)

// TestBlankCC: a blank CC is treated as an unset one, by the toolchain
// check and by builds (the go command itself panics on CC=" ").
func TestBlankCC(t *testing.T) {
	for _, cc := range []string{"", " ", "\t "} {
		t.Run("CC="+strings.ReplaceAll(cc, "\t", `\t`), func(t *testing.T) {
			t.Setenv("CC", cc)
			dir := plugintest.PluginPath(t)
			plugintest.WriteFile(t, filepath.Join(dir, "src"), "cc.go",
				plugintest.Unique(t, "package main\n\nfunc GETCCHandler() string { return \"cc\" }\n"))
			p, _ := newPipeline(t, dir, func(o *build.Options) { o.CacheDir = t.TempDir() })
			if problems := p.ToolchainProblems(); slices.ContainsFunc(problems, func(s string) bool { return strings.Contains(s, "C compiler") }) {
				t.Errorf("problems = %q; a blank CC means the default compiler, which is installed", problems)
			}
			if _, err := p.Build(context.Background(), "cc"); err != nil {
				t.Errorf("building with CC=%q: %v", cc, err)
			}
		})
	}
}
