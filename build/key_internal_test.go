package build

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/plugind/plugind/internal/plugintest"
)

// TestDependencyFreeKeyUnchanged: a plugin built in the server's module
// as it is (no go.mod; or one that requires nothing and whose packages
// it does not import) has the key it always had: the name, the host, the
// build module's go.mod and go.sum, the sources, hashed as below. A
// go.mod requiring nothing is a module all the same (its own packages
// can be imported), but must not give these plugins a build module of
// their own, nor another artifact than the one they had.
func TestDependencyFreeKeyUnchanged(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	const hello = "package main\n\nimport \"net/http\"\n\nfunc GETHelloHandler(w http.ResponseWriter, r *http.Request) {}\n"
	tests := []struct {
		name   string
		plugin string
		files  map[string]string // under the plugin path
	}{
		{name: "no go.mod", plugin: "hello", files: map[string]string{"src/hello.go": hello}},
		{name: "lib/go.mod requiring nothing", plugin: "hello", files: map[string]string{
			"src/hello.go": hello, "go.mod": "module plugind.local/lib\n\ngo 1.26\n"}},
		{name: "a folder's go.mod requiring nothing", plugin: "shop", files: map[string]string{
			"src/shop/shop.go": hello, "src/shop/go.mod": "module example.com/shop\n\ngo 1.26\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			for name, content := range tt.files {
				writeAt(t, filepath.Join(dir, filepath.Dir(name)), filepath.Base(name), content, old)
			}
			p := newTestPipeline(t, dir)
			src, err := p.Find(tt.plugin)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Check(src); err != nil {
				t.Fatal(err)
			}
			got, err := p.Key(src)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			fmt.Fprintf(h, "plugind artifact v2\nplugin %s\nhost %s\n", tt.plugin, p.hostID)
			for _, name := range []string{"go.mod", "go.sum"} {
				data, err := os.ReadFile(filepath.Join(p.moduleDir, name))
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(h, "%s %d\n", name, len(data))
				h.Write(data)
			}
			for _, file := range src.Files {
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(h, "source %d\n", len(data))
				h.Write(data)
			}
			if want := hex.EncodeToString(h.Sum(nil)); got != want {
				t.Errorf("key %.12s, want the plain content address %.12s", got, want)
			}
			if pl, err := p.plan(src, got); err != nil || pl != nil {
				t.Errorf("planned a build module (%v, err %v); want none: the plugin builds in the server's module", pl != nil, err)
			}
		})
	}
}
