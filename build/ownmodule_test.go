package build_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/plugerr"
)

// TestFolderImportsItsOwnPackages: a folder plugin whose own go.mod
// requires nothing but whose code imports a package of its own module
// (example.com/shop importing example.com/shop/cart from
// lib/src/shop/cart) passes Check, builds and serves over HTTP. One that
// imports a package nobody provides is refused with the command to run
// in its own folder, whether or not it imports its own packages too.
func TestFolderImportsItsOwnPackages(t *testing.T) {
	const missing = "example.com/nowhere"
	importsMissing := "package main\n\nimport _ \"" + missing + "\"\n"
	tests := []struct {
		name  string
		extra string // another file of the folder; "" for none
		only  bool   // extra is the folder's only file: no own package imported
		check bool   // Check passes (the refusal is the build's, see planFor)
		want  string // the body served; "" when refused
	}{
		{name: "its own package", check: true, want: "example.com/shop/cart"},
		{name: "its own package and one nobody provides", extra: importsMissing, check: true},
		{name: "only a package nobody provides", extra: importsMissing, only: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, env := plugintest.ModuleProxy(t)
			lib := filepath.Join(t.TempDir(), "lib") // no lib/go.mod: the folder's is the only one
			shop := filepath.Join(lib, "src", "shop")
			plugintest.CopyTree(t, "deps/shopcart", shop)
			if tt.only {
				if err := os.Remove(filepath.Join(shop, "shop.go")); err != nil {
					t.Fatal(err)
				}
			}
			if tt.extra != "" {
				plugintest.WriteFile(t, shop, "extra.go", tt.extra)
			}
			p, logs := newPipeline(t, lib, func(o *build.Options) { o.Env, o.CacheDir = env, t.TempDir() })
			src, err := p.Find("shop")
			if err != nil {
				t.Fatal(err)
			}
			err = p.Check(src)
			if tt.check != (err == nil) {
				t.Fatalf("Check: %v; want passing %v", err, tt.check)
			}
			if err == nil && tt.want == "" {
				_, err = p.Build(t.Context(), "shop")
			}
			if tt.want == "" {
				wantRefusal(t, err, missing)
				return
			}

			l, err := loader.New(loader.Options{Pipeline: p, BuildWait: plugintest.BuildWait, Log: zerolog.New(logs)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close(t.Context()) })
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h, err := l.Handler(r.Context(), "shop", "Hello", r.Method)
				if err == nil {
					err = h.ServeHTTP(w, r)
				}
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
				}
			}))
			defer srv.Close()
			client := &http.Client{Timeout: plugintest.BuildWait + time.Minute}
			resp, err := client.Get(srv.URL + "/_PLUGIN/shop/Hello")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK || string(body) != tt.want {
				t.Fatalf("GET shop/Hello = %d %q; want 200 %q\n%s", resp.StatusCode, body, tt.want, logs)
			}

			// The package is compiled from the folder: an edit of it is
			// another artifact, built anew (not opened here: one process
			// holds one version of example.com/shop/cart).
			first, err := p.Build(t.Context(), "shop")
			if err != nil || first.Duration != 0 {
				t.Fatalf("Build after serving: %+v, %v; want the artifact served", first, err)
			}
			plugintest.WriteFile(t, filepath.Join(shop, "cart"), "cart.go", "package cart\n\nfunc Hello() string { return \"edited\" }\n")
			second, err := p.Build(t.Context(), "shop")
			if err != nil || second.Key == first.Key || second.Duration == 0 {
				t.Errorf("Build after an edit of example.com/shop/cart: %+v, %v; want a new artifact built (was %.12s)", second, err, first.Key)
			}
		})
	}
}

// wantRefusal fails t unless err refuses plugin shop for importing pkg,
// telling the user to declare it in the folder's own go.mod.
func wantRefusal(t *testing.T, err error, pkg string) {
	t.Helper()
	var e *plugerr.Error
	if !errors.As(err, &e) || !errors.Is(err, plugerr.ErrDependency) {
		t.Fatalf("err = %v; want ErrDependency", err)
	}
	fix := `"cd lib/src/shop && go get ` + pkg + `"`
	if !strings.Contains(e.Msg, pkg) || !strings.Contains(e.Msg, "lib/src/shop/go.mod") || !strings.Contains(e.Msg, fix) || strings.Contains(e.Msg, "go mod init") {
		t.Errorf("message %q: want %s, lib/src/shop/go.mod and %s, no go mod init", e.Msg, pkg, fix)
	}
}
