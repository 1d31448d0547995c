package build_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
)

// TestEmbeddedFilesInKey: what a plugin embeds (//go:embed) is compiled
// into it, so its key and its source hash (what plugind build records
// for a prebuilt server) change with an embedded file, a file added to
// an embedded directory included, and not with a file in a directory
// beside it that it does not embed. For a single-file plugin, a folder plugin and a
// package of lib/go.mod's module it imports. Each write is settled (an
// hour old, then a minute later each), so that remembered digests are
// trusted and must be told stale by the stamps of what changed.
func TestEmbeddedFilesInKey(t *testing.T) {
	const embedder = "package main\n\nimport _ \"embed\"\n\n//go:embed static\nvar page string\n\nfunc GETPageHandler() string { return page }\n"
	tests := []struct {
		name   string
		plugin string
		files  map[string]string
		static string // the embedded directory, under the plugin path
	}{
		{"a single-file plugin", "page", map[string]string{"src/page.go": embedder}, "src/static"},
		{"a folder plugin", "site", map[string]string{"src/site/site.go": embedder}, "src/site/static"},
		{"a package of lib/go.mod's module", "shop", map[string]string{
			"go.mod":      "module plugind.local/lib\n\ngo 1.22\n",
			"web/web.go":  "package web\n\nimport \"embed\"\n\n//go:embed static\nvar Static embed.FS\n",
			"src/shop.go": "package main\n\nimport \"plugind.local/lib/web\"\n\nvar _ = web.Static\n\nfunc GETPageHandler() string { return \"\" }\n",
		}, "web/static"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			when := time.Now().Add(-time.Hour)
			write := func(rel, content string) {
				path := filepath.Join(dir, filepath.FromSlash(rel))
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				plugintest.WriteFile(t, filepath.Dir(path), filepath.Base(path), content)
				for at := path; at != dir; at = filepath.Dir(at) {
					if err := os.Chtimes(at, when, when); err != nil {
						t.Fatal(err)
					}
				}
			}
			for rel, content := range tt.files {
				write(rel, content)
			}
			write(tt.static+"/index.html", "one")
			p, _ := newPipeline(t, dir, func(o *build.Options) { o.CacheDir = t.TempDir() })
			keys := func() (string, string) {
				t.Helper()
				src, err := p.Find(tt.plugin)
				if err != nil {
					t.Fatal(err)
				}
				k, err := p.Key(src)
				if err != nil {
					t.Fatal(err)
				}
				sh, err := p.SourceHash(src)
				if err != nil {
					t.Fatal(err)
				}
				return k, sh
			}
			k, sh := keys()
			steps := []struct {
				what    string
				do      func()
				changes bool
			}{
				{"a file in a directory beside the embedded one", func() { write(filepath.Dir(tt.static)+"/drafts/notes.txt", "x") }, false},
				{"an edit of an embedded file", func() { write(tt.static+"/index.html", "two") }, true},
				{"a file added to the embedded directory", func() { write(tt.static+"/more.html", "more") }, true},
			}
			for _, s := range steps {
				when = when.Add(time.Minute)
				s.do()
				k2, sh2 := keys()
				if (k2 != k) != s.changes || (sh2 != sh) != s.changes {
					t.Errorf("%s: key changed %v, source hash changed %v; want %v", s.what, k2 != k, sh2 != sh, s.changes)
				}
				k, sh = k2, sh2
			}
		})
	}
}
