package build

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/plugind/plugind/internal/plugintest"
)

// TestUnprovided: the one test of a plugin's imports that Check (no
// declared module) and planFor (a declared one) share.
func TestUnprovided(t *testing.T) {
	modules := []string{"github.com/plugind/plugind", "example.com/greet"}
	tests := []struct {
		name    string
		imports string // the import block of the plugin's one file
		want    string
	}{
		{"standard library and cgo", `"net/http"; "C"`, ""},
		{"a module's root package", `"example.com/greet"`, ""},
		{"a module's package", `"example.com/greet/v2x"; "github.com/plugind/plugind/sdk"`, ""},
		{"a path the first element of which has no dot", `"shop/internal/cart"`, ""},
		{"a module named like a provided one", `"example.com/greeter"`, "example.com/greeter"},
		{"the first missing, in order", `"example.com/z"; "example.com/greet"; "example.com/b/c"`, "example.com/b/c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			plugintest.WriteFile(t, dir, "p.go", "package main\n\nimport ("+tt.imports+")\n")
			imps, parsed := imports(Source{Files: []string{filepath.Join(dir, "p.go")}})
			if !parsed {
				t.Fatal("the file did not parse")
			}
			if !slices.IsSorted(imps) || slices.Contains(imps, "C") {
				t.Errorf("imports = %q: want them sorted, without C", imps)
			}
			if got := unprovided(imps, modules); got != tt.want {
				t.Errorf("unprovided(%q) = %q, want %q", imps, got, tt.want)
			}
		})
	}
	dir := t.TempDir()
	plugintest.WriteFile(t, dir, "a.go", "package main\n\nimport \"example.com/x\"\n")
	plugintest.WriteFile(t, dir, "b.go", "package main\n\nimport (\n")
	imps, parsed := imports(Source{Files: []string{filepath.Join(dir, "a.go"), filepath.Join(dir, "b.go")}})
	if parsed || !slices.Equal(imps, []string{"example.com/x"}) {
		t.Errorf("with a file that does not parse: %q, parsed %v; want the other file's imports, not parsed", imps, parsed)
	}
}
