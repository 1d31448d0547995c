package cli

import (
	"bytes"
	"os/exec"
	"regexp"
	"testing"

	"github.com/plugind/plugind/internal/plugintest"
)

// TestDoctorToolchain: doctor names the go command and C compiler the
// server builds with, asked with the server's go environment rather than
// the process's. A blank CC is unset to builds (the go command panics on
// one), so doctor names the default compiler, as the loader's check
// finds it, not "unknown".
func TestDoctorToolchain(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatalf("plugin builds need a C compiler: %v", err)
	}
	tests := []struct {
		name string
		cc   string // CC in the process environment
		want string // doctor's cc line
		code int    // its exit code: 1 when the loader finds a problem
	}{
		{"CC empty", "", `(?m)^cc          /\S+/gcc, \S+`, 0},
		{"CC blank", " ", `(?m)^cc          /\S+/gcc, \S+`, 0},
		{"CC named", "gcc", `(?m)^cc          /\S+/gcc, \S+`, 0},
		{"CC missing", "no-such-cc", `(?m)^cc          "no-such-cc" \(go env CC\) not found on PATH$`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CC", tt.cc) // the pipeline reads the process environment
			environ := []string{"PREST_PLUGINPATH=" + plugintest.PluginPath(t), "PREST_PLUGINS_CACHEDIR=" + t.TempDir(), "PREST_CONF="}
			var stdout, stderr bytes.Buffer
			code := Main(t.Context(), []string{"doctor"}, environ, &stdout, &stderr)
			out := stdout.String()
			if code != tt.code {
				t.Errorf("doctor exited %d, want %d:\n%s%s", code, tt.code, out, stderr.String())
			}
			if !regexp.MustCompile(`(?m)^go          /\S+/go, go1\.\d+`).MatchString(out) {
				t.Errorf("doctor names no go command:\n%s%s", out, stderr.String())
			}
			if !regexp.MustCompile(tt.want).MatchString(out) {
				t.Errorf("doctor's cc line does not match %s:\n%s%s", tt.want, out, stderr.String())
			}
		})
	}
}
