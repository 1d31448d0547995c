package build_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
)

// TestDiscoverSymlinkedFolder: a folder plugin linked into the source
// directory from elsewhere is discovered, as a folder, as it is found
// by name: the go command builds through the link.
func TestDiscoverSymlinkedFolder(t *testing.T) {
	dir := plugintest.PluginPath(t)
	target := t.TempDir()
	plugintest.WriteFile(t, target, "shop.go", "package main\n\nfunc GETShopHandler() string { return \"shop\" }\n")
	if err := os.Symlink(target, filepath.Join(dir, "src", "shop")); err != nil {
		t.Fatal(err)
	}
	p, _ := newPipeline(t, dir, nil)
	found, skipped, err := p.Discover()
	if err != nil || len(skipped) != 0 || len(found) != 1 || found[0].Name != "shop" || found[0].Kind != build.KindFolder {
		t.Fatalf("Discover = %+v, skipped %v, %v; want the linked folder plugin shop", found, skipped, err)
	}
	if s, err := p.Find("shop"); err != nil || s.Kind != build.KindFolder {
		t.Errorf("Find(shop) = %+v, %v", s, err)
	}
}
