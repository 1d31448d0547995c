package main

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plugind/plugind/internal/plugintest"
)

// TestPrebuiltIsolatedWithoutToolchain: with every plugin isolated
// (plugins.isolation = "process"), plugind build builds their
// executables; the same binary in prebuilt mode, with no go and no C
// compiler on PATH and the plugin directory (cache included) read-only,
// serves each from a process of its own, writes nothing, and answers a
// plugin built by nobody 503 naming plugind build, as the start logged.
func TestPrebuiltIsolatedWithoutToolchain(t *testing.T) {
	bin := buildBinary(t)
	pp := plugintest.PluginPath(t, "hello", "crashy")
	cache := filepath.Join(pp, ".plugind") // the default: inside the plugin path
	t.Setenv("PREST_PLUGINS_ISOLATION", "process")
	out, err := plugind(t, bin, plugintest.Root(), pp, cache, "build")
	if err != nil || strings.Count(out, " (process) ") != 2 || strings.Count(out, " built ") != 2 {
		t.Fatalf("plugind build: %v\n%s", err, out)
	}
	plugintest.WriteFile(t, filepath.Join(pp, "src"), "unbuilt.go",
		plugintest.Unique(t, "package main\n\nfunc GETHiHandler() string { return \"hi\" }\n"))

	p, ready := startPrebuilt(t, bin, pp, "PREST_PLUGINS_ISOLATION=process")
	t.Logf("prebuilt mode, isolated plugins: start to /readyz 200 in %s", ready)
	if !p.logged("isolated plugin is not built; its calls fail until plugind build builds it") {
		t.Error("the start did not log the isolated plugin built by nobody")
	}
	tests := []struct {
		path   string
		status int
		want   string
	}{
		{"/_PLUGIN/hello/Hello?abc=123", 200, `"abc":["123"]`},
		{"/_PLUGIN/crashy/Ok", 200, "ok "},
		{"/_PLUGIN/unbuilt/Hi", 503, "run `plugind build unbuilt`"},
	}
	for _, tt := range tests {
		status, body := get(t, p.url+tt.path)
		if status != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s = %d %s, want %d with %q", tt.path, status, body, tt.status, tt.want)
		}
		if tt.status != 200 && !json.Valid([]byte(body)) {
			t.Errorf("GET %s: not JSON: %s", tt.path, body)
		}
		if tt.path == "/_PLUGIN/crashy/Ok" {
			if pid, err := strconv.Atoi(strings.TrimPrefix(body, "ok ")); err != nil || pid == p.cmd.Process.Pid {
				t.Errorf("crashy answered %q; want ok from a process other than the server's (%d)", body, p.cmd.Process.Pid)
			}
		}
	}
}

// TestPrebuiltIsolatedOwnPackages: a folder plugin with a go.mod of its
// own that imports a package of its own module (testdata/deps/shopcart
// in lib/src/shop, importing example.com/shop/cart from lib/src/shop/cart)
// runs in a process in prebuilt mode from the executable plugind build
// made, and only for the package it was built from: after an edit of
// cart/cart.go alone the server answers 503 naming plugind build (as its
// start logged) instead of serving the old code, and serves the edit
// once plugind build has built it.
func TestPrebuiltIsolatedOwnPackages(t *testing.T) {
	bin := buildBinary(t)
	pp := plugintest.PluginPath(t)
	shop := filepath.Join(pp, "src", "shop")
	plugintest.CopyTree(t, "deps/shopcart", shop)
	cache := filepath.Join(pp, ".plugind") // the default: inside the plugin path
	_, env := plugintest.ModuleProxy(t)    // plugind build fetches nothing
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("PREST_PLUGINS_ISOLATION", "process")
	buildShop := func() {
		t.Helper()
		out, err := plugind(t, bin, plugintest.Root(), pp, cache, "build", "shop")
		if err != nil || !strings.Contains(out, "shop (process) ") || !strings.Contains(out, " built ") {
			t.Fatalf("plugind build shop: %v\n%s", err, out)
		}
	}
	buildShop()
	edited := "edited " + strconv.FormatInt(time.Now().UnixNano(), 10) // a program no cache has seen
	plugintest.WriteFile(t, filepath.Join(shop, "cart"), "cart.go", "package cart\n\nfunc Hello() string { return "+strconv.Quote(edited)+" }\n")

	t.Run("an edit nobody built", func(t *testing.T) {
		p, _ := startPrebuilt(t, bin, pp, "PREST_PLUGINS_ISOLATION=process")
		if !p.logged("isolated plugin is not built; its calls fail until plugind build builds it") {
			t.Error("the start did not log the edited plugin as not built")
		}
		status, body := get(t, p.url+"/_PLUGIN/shop/Hello")
		if status != 503 || !strings.Contains(body, "run `plugind build shop`") || !json.Valid([]byte(body)) {
			t.Errorf("GET shop/Hello = %d %s; want 503 JSON naming plugind build shop", status, body)
		}
	})
	buildShop()
	t.Run("the edit built", func(t *testing.T) {
		p, _ := startPrebuilt(t, bin, pp, "PREST_PLUGINS_ISOLATION=process")
		if status, body := get(t, p.url+"/_PLUGIN/shop/Hello"); status != 200 || body != edited {
			t.Errorf("GET shop/Hello = %d %s; want 200 %q", status, body, edited)
		}
	})
}
