package build

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOwnPackageEditSeen: a plugin that imports packages of its own
// module compiles them from its folder, so an edit of one, or of a
// package one of them imports, is a new artifact: the next Key is a new
// pipeline's, and another than before; prebuilt mode's source hash
// changes with it, so a server that never builds asks for plugind build
// instead of serving the old artifact. Files are stamped as the build
// module's are: an edit in the same tick, or a rename over a file with
// its size and time, is seen.
func TestOwnPackageEditSeen(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	files := maps.Clone(cartPlugin)
	files["src/shop/cart/cart.go"] = "package cart\n\nimport \"example.com/shop/internal/money\"\n\nfunc Hello() string { return \"cart \" + money.Unit }\n"
	files["src/shop/internal/money/money.go"] = "package money\n\nconst Unit = \"EUR\"\n"
	tests := []struct {
		name string
		at   time.Time // the files' modification time before the edit; zero: now
		edit func(t *testing.T, shop string)
	}{
		{name: "an imported package's file", at: old, edit: func(t *testing.T, shop string) {
			writeAt(t, filepath.Join(shop, "cart"), "cart.go", strings.Replace(files["src/shop/cart/cart.go"], "cart ", "basket ", 1), time.Time{})
		}},
		{name: "a package imported in turn, in the same tick", edit: func(t *testing.T, shop string) {
			dir := filepath.Join(shop, "internal", "money")
			fi, err := os.Stat(filepath.Join(dir, "money.go"))
			if err != nil {
				t.Fatal(err)
			}
			writeAt(t, dir, "money.go", strings.Replace(files["src/shop/internal/money/money.go"], "EUR", "USD", 1), fi.ModTime())
		}},
		{name: "an imported package's file replaced by one of the same size and time", at: old, edit: func(t *testing.T, shop string) {
			dir := filepath.Join(shop, "cart")
			writeAt(t, dir, "cart.go.new", strings.Replace(files["src/shop/cart/cart.go"], "cart ", "CART ", 1), old)
			if err := os.Rename(filepath.Join(dir, "cart.go.new"), filepath.Join(dir, "cart.go")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a file added to an imported package", at: old, edit: func(t *testing.T, shop string) {
			writeAt(t, filepath.Join(shop, "cart"), "more.go", "package cart\n\nfunc More() string { return \"more\" }\n", old)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, pluginPath, moduleDir := buildModuleFixture(t, files, tt.at)
			src, err := p.Find("shop")
			if err != nil {
				t.Fatal(err)
			}
			before := key(t, p, "shop")
			shBefore, err := p.SourceHash(src)
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(t, filepath.Join(pluginPath, "src", "shop"))
			after := key(t, p, "shop")
			want := key(t, newModulePipeline(t, pluginPath, moduleDir, p.cacheDir), "shop")
			if after != want || after == before {
				t.Errorf("key after the edit %.12s, before %.12s; a new pipeline's %.12s", after, before, want)
			}
			if shAfter, err := p.SourceHash(src); err != nil || shAfter == shBefore {
				t.Errorf("prebuilt mode's source hash after the edit %.12s (%v), before %.12s; want another", shAfter, err, shBefore)
			}
		})
	}
}
