package build_test

import (
	"strings"
	"testing"

	"github.com/plugind/plugind/build"
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
