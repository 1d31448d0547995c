package build_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/plugerr"
)

// TestConflictAdvice: the advice of a version conflict fits who holds the
// other version. Against another plugin: align the two go.mod files.
// Against the plugin's own running version (lib/go.mod upgraded under a
// running server) there is one go.mod, already changed: restart, or
// isolate; "require the same version in both go.mod files" sent the
// author looking for a second one.
func TestConflictAdvice(t *testing.T) {
	tests := []struct {
		name      string
		conflicts []build.Conflict
		want      []string
		notWant   string
	}{
		{
			name:      "another plugin",
			conflicts: []build.Conflict{{Module: "example.com/greet", Want: "v1.1.0", Loaded: build.Loaded{Version: "v1.0.0", Plugin: "gr"}}},
			want:      []string{`plugin "gr" loaded v1.0.0`, "both go.mod files", "restart the server", `isolation = "process"`},
		},
		{
			name:      "its own running version",
			conflicts: []build.Conflict{{Module: "example.com/greet", Want: "v1.1.0", Loaded: build.Loaded{Version: "v1.0.0", Plugin: "gr2"}}},
			want:      []string{"its running version loaded v1.0.0", "restart the server", `isolation = "process"`},
			notWant:   "both go.mod files",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := build.ConflictError("gr2", tt.conflicts).Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q lacks %q", msg, w)
				}
			}
			if tt.notWant != "" && strings.Contains(msg, tt.notWant) {
				t.Errorf("%q says %q", msg, tt.notWant)
			}
		})
	}
}

// TestEmptySourceDiagnostic: a plugin file that is empty (an editor's new
// file, saved under a running dev server) fails with the compiler's
// diagnostic at its own first line, not at a line 2 that the file does
// not have: the comment plugind appends to tell plugins apart was the
// only text the compiler saw.
func TestEmptySourceDiagnostic(t *testing.T) {
	for _, tt := range []struct{ name, content string }{
		{"empty", ""},
		{"blank", "\n\n  \n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			plugintest.WriteFile(t, filepath.Join(dir, "src"), tt.name+".go", tt.content)
			p, err := build.New(t.Context(), build.Options{SrcDir: filepath.Join(dir, "src"), CacheDir: t.TempDir(), Log: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Build(context.Background(), tt.name)
			var e *plugerr.Error
			if !errors.As(err, &e) || !errors.Is(err, plugerr.ErrBuild) {
				t.Fatalf("Build = %v, want a build failure", err)
			}
			if !strings.Contains(e.Output, tt.name+".go:") || strings.Contains(e.Output, "plugind: plugin") {
				t.Fatalf("diagnostics %q: want the file's own", e.Output)
			}
			lines := strings.Count(tt.content, "\n") + 1
			for _, l := range strings.Split(e.Output, "\n") {
				var line int
				if _, err := fmt.Sscanf(strings.TrimPrefix(l, tt.name+".go:"), "%d:", &line); err == nil && line > lines {
					t.Errorf("diagnostic %q names line %d of a file of %d", l, line, lines)
				}
			}
		})
	}
}
