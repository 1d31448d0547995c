package build

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/plugind/plugind/internal/plugintest"
)

// TestEmbedded: the files //go:embed directives embed, resolved as the
// go command resolves them: relative to the Go file, globs, quoted
// patterns, several on a line, a directory's files but hidden and "_"
// ones (all of them with "all:"), nothing for a pattern that matches
// nothing or a line that only looks like a directive.
func TestEmbedded(t *testing.T) {
	tests := []struct {
		name      string
		directive string
		want      []string
	}{
		{"a file", "//go:embed page.html", []string{"page.html"}},
		{"a glob", "//go:embed *.tmpl", []string{"a.tmpl", "b.tmpl"}},
		{"several, one quoted", "//go:embed page.html \"my page.txt\"", []string{"my page.txt", "page.html"}},
		{"a raw-quoted one", "//go:embed `my page.txt`", []string{"my page.txt"}},
		{"a directory", "//go:embed static", []string{"static/index.html", "static/js/app.js"}},
		{"a directory, all:", "//go:embed all:static", []string{"static/.hidden", "static/_draft.html", "static/index.html", "static/js/app.js"}},
		{"a file in a directory", "//go:embed static/js/app.js", []string{"static/js/app.js"}},
		{"no match", "//go:embed missing.txt", nil},
		{"not a directive", "//go:embedded page.html", nil},
		{"a comment about it", "// go:embed page.html", nil},
	}
	dir := t.TempDir()
	for _, f := range []string{"page.html", "a.tmpl", "b.tmpl", "my page.txt", "static/index.html", "static/js/app.js", "static/.hidden", "static/_draft.html"} {
		path := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		plugintest.WriteFile(t, filepath.Dir(path), filepath.Base(path), f)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plugintest.WriteFile(t, dir, "p.go", "package main\n\nimport _ \"embed\"\n\n"+tt.directive+"\nvar page string\n")
			got, err := embedded([]string{filepath.Join(dir, "p.go")})
			if err != nil {
				t.Fatal(err)
			}
			var rel []string
			for _, g := range got {
				r, _ := filepath.Rel(dir, g)
				rel = append(rel, filepath.ToSlash(r))
			}
			if !slices.Equal(rel, tt.want) {
				t.Errorf("%s embeds %q; want %q", tt.directive, rel, tt.want)
			}
		})
	}
}
