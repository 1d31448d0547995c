package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/plugintest"
)

// TestCopiesConfigured: [plugin.NAME] copies reaches the loader: the
// plugin it names is served from that many copies, another from one.
// (loader's TestCopiesSpreadCalls proves what copies do.)
func TestCopiesConfigured(t *testing.T) {
	pp := plugintest.PluginPath(t, "hello")
	src := filepath.Join(pp, "src")
	hello, err := os.ReadFile(filepath.Join(src, "hello.go"))
	if err != nil {
		t.Fatal(err)
	}
	plugintest.WriteFile(t, src, "hellocp.go", string(hello)) // a name of its own: copies of its own
	r := startWith(t, pp, func(c *config.Config) {
		c.PluginConfigs = map[string]config.PluginConfig{"hellocp": {Copies: 3}}
	})
	tests := []struct {
		plugin string
		copies int // 0: no copies
	}{
		{"hellocp", 3},
		{"hello", 0},
	}
	for _, tt := range tests {
		resp := r.do(t, "GET", "/_PLUGIN/"+tt.plugin+"/Hello?abc=123", "")
		if resp.status != 200 || !strings.Contains(resp.body, `"abc":["123"]`) {
			t.Errorf("%s: %d %s", tt.plugin, resp.status, resp.body)
		}
		loaded := r.logs.Events(map[string]any{"plugin": tt.plugin, "message": "plugin copies loaded"})
		switch {
		case tt.copies == 0 && len(loaded) != 0:
			t.Errorf("%s: copies loaded without copies configured: %v", tt.plugin, loaded)
		case tt.copies > 0 && (len(loaded) != 1 || loaded[0]["copies"] != float64(tt.copies)):
			t.Errorf("%s: 'plugin copies loaded' lines %v; want one with copies %d", tt.plugin, loaded, tt.copies)
		}
	}
}
