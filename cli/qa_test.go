package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/plugind/plugind/cli"
)

// TestNewRefuses: plugind new refuses, with a message that says why and
// without leaving a file behind, a name that would write no servable
// plugin (the go command and plugind ignore names beginning with '_') or
// whose test file is in the way.
func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name     string
		existing []string // files in src before the command
		want     string   // in the error
	}{
		{name: "_draft", want: "'_'"},
		{name: "_", want: "'_'"},
		{name: "half", existing: []string{"half_test.go"}, want: "half_test.go"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "lib", "src")
			if err := os.MkdirAll(src, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range tt.existing {
				if err := os.WriteFile(filepath.Join(src, f), []byte("package main\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			t.Chdir(dir)
			var stdout, stderr bytes.Buffer
			code := cli.Main(context.Background(), []string{"new", tt.name}, nil, &stdout, &stderr)
			if code == 0 {
				t.Fatalf("plugind new %s = 0 (%s), want a refusal", tt.name, stdout.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("plugind new %s said %q, want it to mention %s", tt.name, stderr.String(), tt.want)
			}
			entries, err := os.ReadDir(src)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Name())
			}
			if !slices.Equal(got, tt.existing) {
				t.Errorf("src holds %v after the refusal, want %v", got, tt.existing)
			}
		})
	}
}

// TestDoctorCountsInEnglish: one problem is "1 problem", not "1 problems".
func TestDoctorCountsInEnglish(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	// Prebuilt mode with no source directory: exactly one problem.
	env := []string{"PREST_PLUGINS_BUILD=off", "PREST_TASKS_DIR=" + filepath.Join(dir, "tasks")}
	var stdout, stderr bytes.Buffer
	if code := cli.Main(context.Background(), []string{"doctor"}, env, &stdout, &stderr); code != 1 {
		t.Fatalf("plugind doctor = %d, want 1\n%s%s", code, stdout.String(), stderr.String())
	}
	if got := strings.TrimSpace(stderr.String()); got != "plugind: 1 problem" {
		t.Errorf("plugind doctor said %q, want %q\n%s", got, "plugind: 1 problem", stdout.String())
	}
}
