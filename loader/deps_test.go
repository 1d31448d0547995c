package loader_test

import (
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// Plugins that import modules the server does not link, served by the
// test module proxy (internal/modproxy over testdata/modules): nothing
// here reaches the network. Go allows one version of each package per
// process, across every loader in it, so each test that opens such a
// plugin runs in a child process of its own (ownProcess).

// depsEnv is the go command's environment for builds that fetch the
// fixture modules (plugintest.ModuleProxy), with the proxy.
func depsEnv(t *testing.T) []string {
	t.Helper()
	_, env := plugintest.ModuleProxy(t)
	return env
}

// depsLib makes a plugin path ("lib") holding lib-greet (lib/go.mod
// requiring example.com/greet v1.0.0, src/greet.go) and, with shop,
// the folder plugin shop (its own go.mod requiring v1.1.0).
func depsLib(t *testing.T, shop bool) string {
	lib := filepath.Join(t.TempDir(), "lib")
	plugintest.CopyTree(t, "deps/lib-greet", lib)
	if shop {
		plugintest.CopyTree(t, "deps/shop", filepath.Join(lib, "src", "shop"))
	}
	return lib
}

// hello calls plugin name's GETHelloHandler and returns its body.
func hello(t *testing.T, l *loader.Loader, name string) (string, error) {
	t.Helper()
	h, err := l.Handler(t.Context(), name, "Hello", "GET")
	if err != nil {
		return "", err
	}
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, httptest.NewRequest("GET", "/_PLUGIN/"+name+"/Hello", nil)); err != nil {
		return "", err
	}
	return rec.Body.String(), nil
}

// depsLoader is a loader over lib whose builds use env, with its own
// artifact cache unless cache is set.
func depsLoader(t *testing.T, lib, cache string, env []string, set func(*build.Options, *loader.Options)) (*loader.Loader, *plugintest.Log) {
	t.Helper()
	if cache == "" {
		cache = t.TempDir()
	}
	return newLoaderWith(t, lib, func(b *build.Options, o *loader.Options) {
		b.CacheDir, b.Env = cache, env
		if set != nil {
			set(b, o)
		}
	})
}

func TestPluginDependencies(t *testing.T) {
	tests := []struct {
		name   string
		plugin string
		shop   bool
		want   string
		// prepare changes lib before the loader starts and returns
		// the build environment, given depsEnv's.
		prepare func(t *testing.T, lib string, env []string) []string
	}{
		{name: "single file with lib go.mod", plugin: "greet", want: "greet v1.0.0"},
		{name: "folder with its own go.mod", plugin: "shop", shop: true, want: "greet v1.1.0"},
		{
			name: "folder with vendor offline", plugin: "shop", shop: true, want: "greet v1.1.0",
			prepare: func(t *testing.T, lib string, env []string) []string {
				// Vendor with a module cache of its own: the build's
				// then has no copy of greet, and no proxy serves one.
				cmd := exec.Command("go", "mod", "vendor")
				cmd.Dir = filepath.Join(lib, "src", "shop")
				cmd.Env = append(append(os.Environ(), env...), "GOMODCACHE="+filepath.Join(t.TempDir(), "vendoring"))
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("go mod vendor: %v\n%s", err, out)
				}
				return append(env, "GOPROXY="+machineDownloads(t)+",off")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !plugintest.OwnProcess(t) {
				return
			}
			lib := depsLib(t, tt.shop)
			env := depsEnv(t)
			if tt.prepare != nil {
				env = tt.prepare(t, lib, env)
			}
			l, logs := depsLoader(t, lib, "", env, nil)
			got, err := hello(t, l, tt.plugin)
			if err != nil || got != tt.want {
				t.Fatalf("GET %s/Hello = %q, %v; want %q\n%s", tt.plugin, got, err, tt.want, logs)
			}
			// /_PLUGINS names the module version the plugin carries,
			// never a path of the server's (a vendored copy's).
			for _, i := range l.List() {
				if i.Name != tt.plugin {
					continue
				}
				version := strings.TrimPrefix(tt.want, "greet ")
				if len(i.Versions) != 1 || !strings.HasPrefix(i.Versions[0].Modules["example.com/greet"], version) ||
					strings.Contains(i.Versions[0].Modules["example.com/greet"], "/") {
					t.Errorf("listed versions %+v; want one carrying example.com/greet %s", i.Versions, version)
				}
			}
		})
	}
}

// machineDownloads is the machine's module cache as a GOPROXY entry:
// the server's own dependencies, and nothing of the fixtures'.
func machineDownloads(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	return "file://" + filepath.ToSlash(filepath.Join(strings.TrimSpace(string(out)), "cache", "download"))
}

func TestPreparedModuleCacheBuildsOffline(t *testing.T) {
	if !plugintest.OwnProcess(t) {
		return
	}
	lib, env := depsLib(t, false), depsEnv(t)
	// The first server fills the module cache; the second, with another
	// artifact cache and GOPROXY=off, resolves and builds from it.
	l, logs := depsLoader(t, lib, "", env, nil)
	if got, err := hello(t, l, "greet"); err != nil || got != "greet v1.0.0" {
		t.Fatalf("first server: %q, %v\n%s", got, err, logs)
	}
	if len(logs.Events(map[string]any{"plugin": "greet", "message": "downloading module", "module": "example.com/greet"})) != 1 ||
		len(logs.Events(map[string]any{"plugin": "greet", "message": "greet: downloading 1 module"})) != 1 {
		t.Errorf("the download of example.com/greet was not logged once with the plugin's name:\n%s", logs)
	}
	// Another name: this process holds greet's package path already.
	plugintest.WriteFile(t, filepath.Join(lib, "src"), "greet2.go", readFile(t, filepath.Join(lib, "src", "greet.go")))
	l2, logs2 := depsLoader(t, lib, "", append(env, "GOPROXY=off"), nil)
	if got, err := hello(t, l2, "greet2"); err != nil || got != "greet v1.0.0" {
		t.Fatalf("offline: %q, %v\n%s", got, err, logs2)
	}
	if builds(logs2, "greet2") != 1 {
		t.Errorf("the offline server built greet2 %d times; want 1", builds(logs2, "greet2"))
	}
}

func TestRestartReusesDependencyBuild(t *testing.T) {
	if !plugintest.OwnProcess(t) {
		return
	}
	lib, cache, env := depsLib(t, false), t.TempDir(), depsEnv(t)
	l, logs := depsLoader(t, lib, cache, env, nil)
	if _, err := hello(t, l, "greet"); err != nil || builds(logs, "greet") != 1 {
		t.Fatalf("first start: %v, %d builds", err, builds(logs, "greet"))
	}
	l2, logs2 := depsLoader(t, lib, cache, env, nil)
	if got, err := hello(t, l2, "greet"); err != nil || got != "greet v1.0.0" {
		t.Fatalf("restart: %q, %v", got, err)
	}
	if n := builds(logs2, "greet"); n != 0 {
		t.Errorf("a restart with unchanged dependencies built greet %d times; want the cached artifact", n)
	}
	// A dependency change is another artifact.
	plugintest.WriteFile(t, lib, "go.mod", strings.Replace(readFile(t, filepath.Join(lib, "go.mod")), "v1.0.0", "v1.1.0", 1))
	plugintest.WriteFile(t, lib, "go.sum", readFile(t, filepath.Join(lib, "go.sum"))+sumLines(t, "example.com/greet v1.1.0"))
	// A server started afresh: its record of loaded versions is empty,
	// so the key is the planned build module's (l2's record holds v1.0.0
	// and would refuse the plan, keying the source as unbuildable).
	l3, _ := depsLoader(t, lib, cache, env, nil)
	if _, cached, err := l3.Pipeline().Cached("greet"); err != nil || cached {
		t.Errorf("after a dependency change: cached %v, %v; want a new artifact to build", cached, err)
	}
}

// readFile returns the file at path.
func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// sumLines returns the fixture proxy's go.sum lines of module ("path
// version").
func sumLines(t *testing.T, module string) string {
	t.Helper()
	p, _ := plugintest.ModuleProxy(t)
	return plugintest.Sums(t, p, module)
}

func TestDependencyRefusals(t *testing.T) {
	const xid = "github.com/rs/xid"
	tests := []struct {
		name  string
		gomod string // lib/go.mod's requirements
		sums  []string
		code  string // src/p.go's body, after package and imports
		imp   string
		want  []string // in the error
		kind  error
		// resolved: refused once the go command resolved the
		// requirements (before compiling); else before it runs at all.
		resolved bool
	}{
		{
			name: "missing go.sum line", gomod: "require example.com/greet v1.0.0",
			imp: "example.com/greet", code: "func GETHelloHandler() string { return greet.Hello() }",
			want: []string{`lib/go.sum has no checksum for example.com/greet`, `run "cd lib && go mod download example.com/greet"`},
			kind: loader.ErrDependency,
		},
		{
			name: "newer than the server's", gomod: "require " + xid + " v1.7.0", sums: []string{xid + " v1.7.0"},
			imp: xid, code: "func GETHelloHandler() string { return xid.New().String() }",
			want: []string{`requires github.com/rs/xid v1.7.0, but the server links v1.6.0`, `cd lib && go get github.com/rs/xid@v1.6.0`},
			kind: loader.ErrDependency,
		},
		{
			name: "raised through a requirement", gomod: "require example.com/pinned v1.1.0", sums: []string{"example.com/pinned v1.1.0"},
			imp: "example.com/pinned", code: "func GETHelloHandler() string { return pinned.Version }",
			want: []string{`raise github.com/rs/xid from the server's v1.6.0 to v1.7.0 (through example.com/pinned@v1.1.0)`},
			kind: loader.ErrDependency, resolved: true,
		},
		{
			name: "an import nothing provides", gomod: "require example.com/greet v1.0.0", sums: []string{"example.com/greet v1.0.0"},
			imp: "example.com/nowhere", code: "func GETHelloHandler() string { return nowhere.X }",
			want: []string{`imports example.com/nowhere, which neither the server nor lib/go.mod provides`, `run "cd lib && go get example.com/nowhere"`},
			kind: loader.ErrDependency,
		},
	}
	host, err := build.HostBuildInfo()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary does not link xid; the server does, at v1.6.0.
	host.Deps = map[string]string{xid: "v1.6.0"}
	for k, v := range mustHost(t).Deps {
		host.Deps[k] = v
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lib := filepath.Join(t.TempDir(), "lib")
			if err := os.MkdirAll(filepath.Join(lib, "src"), 0o755); err != nil {
				t.Fatal(err)
			}
			plugintest.WriteFile(t, lib, "go.mod", "module plugind.local/lib\n\ngo 1.26\n\n"+tt.gomod+"\n")
			var sums strings.Builder
			for _, m := range tt.sums {
				sums.WriteString(sumLines(t, m))
			}
			plugintest.WriteFile(t, lib, "go.sum", sums.String())
			plugintest.WriteFile(t, filepath.Join(lib, "src"), "p.go", "package main\n\nimport \""+tt.imp+"\"\n\n"+tt.code+"\n")
			l, logs := depsLoader(t, lib, "", depsEnv(t), func(b *build.Options, _ *loader.Options) { b.Host = &host })
			_, err := call(t, l, "p", "Hello")
			if !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v; want %v", err, tt.kind)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if n := len(logs.Events(map[string]any{"plugin": "p", "message": "plugin build finished"})); !tt.resolved && n != 0 {
				t.Errorf("the go command ran %d times for a plugin refused before it", n)
			}
		})
	}
}

// mustHost is the test binary's build.
func mustHost(t *testing.T) build.HostBuild {
	t.Helper()
	h, err := build.HostBuildInfo()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestOneVersionPerProcess(t *testing.T) {
	tests := []struct {
		name  string
		order []string // plugins, in the order requested
		want  map[string]string
		err   []string // the last plugin's error, if it is refused
	}{
		{
			// shop loads greet v1.1.0; greet's lib/go.mod asks for
			// v1.0.0 or later: it is built with v1.1.0.
			name: "aligned", order: []string{"shop", "greet"},
			want: map[string]string{"shop": "greet v1.1.0", "greet": "greet v1.1.0"},
		},
		{
			// greet loads v1.0.0; shop needs v1.1.0 or later.
			name: "refused", order: []string{"greet", "shop"},
			want: map[string]string{"greet": "greet v1.0.0"},
			err:  []string{`plugin "shop" needs example.com/greet v1.1.0, but plugin "greet" loaded v1.0.0`, "one version of a package per process"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !plugintest.OwnProcess(t) {
				return
			}
			l, logs := depsLoader(t, depsLib(t, true), "", depsEnv(t), nil)
			for i, name := range tt.order {
				got, err := hello(t, l, name)
				if i == len(tt.order)-1 && tt.err != nil {
					if !errors.Is(err, loader.ErrDependency) {
						t.Fatalf("%s: %q, %v; want ErrDependency\n%s", name, got, err, logs)
					}
					for _, w := range tt.err {
						if !strings.Contains(err.Error(), w) {
							t.Errorf("error %q\nlacks %q", err, w)
						}
					}
					continue
				}
				if err != nil || got != tt.want[name] {
					t.Fatalf("%s: %q, %v; want %q\n%s", name, got, err, tt.want[name], logs)
				}
			}
		})
	}
}

func TestReloadKeepsTheLoadedDependency(t *testing.T) {
	if !plugintest.OwnProcess(t) {
		return
	}
	lib := depsLib(t, false)
	l, logs := depsLoader(t, lib, "", depsEnv(t), func(_ *build.Options, o *loader.Options) { o.Reload = true })
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	if got, err := hello(t, l, "greet"); err != nil || got != "greet v1.0.0" {
		t.Fatalf("before: %q, %v", got, err)
	}
	// The bump, as `go get example.com/greet@v1.1.0` makes it.
	plugintest.WriteFile(t, lib, "go.sum", readFile(t, filepath.Join(lib, "go.sum"))+sumLines(t, "example.com/greet v1.1.0"))
	plugintest.WriteFile(t, lib, "go.mod", strings.Replace(readFile(t, filepath.Join(lib, "go.mod")), "v1.0.0", "v1.1.0", 1))
	var info loader.Info
	eventually(t, "the reload to fail", func() bool {
		for _, i := range l.List() {
			if i.Name == "greet" {
				info = i
			}
		}
		return info.LastError != ""
	})
	for _, w := range []string{`plugin "greet" needs example.com/greet v1.1.0, but its running version loaded v1.0.0`, "restart the server"} {
		if !strings.Contains(info.LastError, w) {
			t.Errorf("/_PLUGINS last_error %q\nlacks %q", info.LastError, w)
		}
	}
	if got, err := hello(t, l, "greet"); err != nil || got != "greet v1.0.0" {
		t.Errorf("after the refused bump: %q, %v; want the last good version", got, err)
	}
	if len(logs.Events(map[string]any{"plugin": "greet", "message": "plugin reload failed; the last good version keeps serving"})) == 0 {
		t.Errorf("the log does not say the last good version keeps serving:\n%s", logs)
	}
}
