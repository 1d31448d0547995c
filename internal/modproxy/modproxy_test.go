package modproxy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
)

const (
	modulesDir = "../../testdata/modules"
	depsDir    = "../../testdata/deps"
)

// goTimeout bounds one go command; a cold build cache on a shared machine
// can take tens of seconds.
const goTimeout = 3 * time.Minute

func buildProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := Build(modulesDir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// goCmd runs the go command in dir with env on top of the test's
// environment and returns its combined output; it fails the test if the
// command fails.
func goCmd(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	out, err := tryGo(t, dir, env, args...)
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func tryGo(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), goTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeFile(t *testing.T, file, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sumLines splits go.sum content into its lines.
func sumLines(data []byte) []string {
	var lines []string
	for line := range strings.Lines(string(data)) {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

func TestBuildLayout(t *testing.T) {
	p := buildProxy(t)
	// File contents under the proxy directory; "" only requires the file.
	want := map[string]string{
		"example.com/greet/@v/list":                   "v1.0.0\nv1.1.0\n",
		"example.com/greet/@v/v1.0.0.zip":             "",
		"example.com/greet/@v/v1.1.0.info":            `{"Version":"v1.1.0","Time":"2024-01-01T00:00:00Z"}`,
		"example.com/greet/@v/v1.1.0.mod":             "module example.com/greet\n\ngo 1.21\n",
		"example.com/pinned/@v/list":                  "v1.0.0\nv1.1.0\n",
		"example.com/pinned/@v/v1.0.0.info":           `{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}`,
		"example.com/pinned/@v/v1.1.0.mod":            "module example.com/pinned\n\ngo 1.21\n\nrequire github.com/rs/xid v1.7.0\n",
		"github.com/rs/xid/@v/list":                   "v1.7.0\n",
		"github.com/rs/xid/@v/v1.7.0.mod":             "module github.com/rs/xid\n\ngo 1.16\n",
		"github.com/rs/xid/@v/v1.7.0.zip":             "",
		"github.com/urfave/negroni/v3/@v/list":        "v3.1.2\n",
		"github.com/urfave/negroni/v3/@v/v3.1.2.info": `{"Version":"v3.1.2","Time":"2024-01-01T00:00:00Z"}`,
		"github.com/urfave/negroni/v3/@v/v3.1.2.mod":  "module github.com/urfave/negroni/v3\n\ngo 1.17\n",
		"github.com/urfave/negroni/v3/@v/v3.1.2.zip":  "",
	}
	for name, content := range want {
		data, err := os.ReadFile(filepath.Join(p.Dir(), filepath.FromSlash(name)))
		switch {
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case content != "" && string(data) != content:
			t.Errorf("%s = %q, want %q", name, data, content)
		}
	}
	if got, want := len(p.Sums()), 2*len(p.Versions()); got != want || got != 12 {
		t.Errorf("%d go.sum lines for %d versions, want 12 for 6: %q", got, len(p.Versions()), p.Sums())
	}
	if !strings.HasPrefix(p.URL(), "file:///") {
		t.Errorf("URL() = %q, want a file:/// URL", p.URL())
	}
}

// TestGoCommand resolves, downloads and builds the fixture modules with the
// real go command and the environment Env gives, in a fresh module each, and
// checks the go.sum the go command writes against Proxy.Sums.
func TestGoCommand(t *testing.T) {
	p := buildProxy(t)
	tests := []struct {
		name    string
		get     string            // go get argument
		main    string            // body of main.go
		want    string            // the program's output
		modules map[string]string // module -> version the build list must hold
	}{{
		name:    "greet v1.0.0",
		get:     "example.com/greet@v1.0.0",
		main:    `import "example.com/greet"; func main() { print(greet.Hello()) }`,
		want:    "greet v1.0.0",
		modules: map[string]string{"example.com/greet": "v1.0.0"},
	}, {
		name:    "greet v1.1.0",
		get:     "example.com/greet@v1.1.0",
		main:    `import "example.com/greet"; func main() { print(greet.Hello()) }`,
		want:    "greet v1.1.0",
		modules: map[string]string{"example.com/greet": "v1.1.0"},
	}, {
		// xid v1.6.0 is not in the proxy: it comes from the machine's module
		// cache, the second GOPROXY entry, before "off".
		name:    "pinned v1.0.0 takes xid v1.6.0 from the machine's cache",
		get:     "example.com/pinned@v1.0.0",
		main:    `import "example.com/pinned"; func main() { print(pinned.Version, " ", len(pinned.ID())) }`,
		want:    "pinned v1.0.0 20",
		modules: map[string]string{"example.com/pinned": "v1.0.0", "github.com/rs/xid": "v1.6.0"},
	}, {
		name:    "pinned v1.1.0 selects the fixture xid v1.7.0",
		get:     "example.com/pinned@v1.1.0",
		main:    `import ("example.com/pinned"; "github.com/rs/xid"); func main() { print(pinned.Version, " ", len(pinned.ID()), " xid ", xid.FixtureVersion) }`,
		want:    "pinned v1.1.0 20 xid v1.7.0",
		modules: map[string]string{"example.com/pinned": "v1.1.0", "github.com/rs/xid": "v1.7.0"},
	}, {
		name: "negroni v3",
		get:  "github.com/urfave/negroni/v3@v3.1.2",
		main: `import ("net/http"; "net/http/httptest"; "github.com/urfave/negroni/v3")
func main() {
	n := negroni.New(negroni.HandlerFunc(func(w http.ResponseWriter, r *http.Request, next http.HandlerFunc) {
		w.Header().Set("X-Mw", "negroni")
		next(w, r)
	}))
	n.UseHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	rec := httptest.NewRecorder()
	n.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	print(rec.Header().Get("X-Mw"))
}`,
		want:    "negroni",
		modules: map[string]string{"github.com/urfave/negroni/v3": "v3.1.2"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			env := p.Env(filepath.Join(t.TempDir(), "modcache"))
			writeFile(t, filepath.Join(dir, "go.mod"), "module tryit\n\ngo 1.22\n")
			writeFile(t, filepath.Join(dir, "main.go"), "package main\n\n"+tt.main+"\n")
			goCmd(t, dir, env, "get", tt.get)
			goCmd(t, dir, env, "mod", "download")
			exe := filepath.Join(dir, "tryit")
			goCmd(t, dir, env, "build", "-o", exe, ".")
			out, err := exec.CommandContext(t.Context(), exe).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", exe, err, out)
			}
			if string(out) != tt.want {
				t.Errorf("program printed %q, want %q", out, tt.want)
			}

			for mod, version := range tt.modules {
				got := strings.TrimSpace(goCmd(t, dir, env, "list", "-m", "-f", "{{.Version}}", mod))
				if got != version {
					t.Errorf("build list has %s %s, want %s", mod, got, version)
				}
			}

			gosum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
			if err != nil {
				t.Fatal(err)
			}
			served := p.Sums()
			fromProxy := 0
			for _, line := range sumLines(gosum) {
				f := strings.Fields(line)
				if len(f) != 3 {
					t.Fatalf("go.sum line %q", line)
				}
				version := strings.TrimSuffix(f[1], "/go.mod")
				if !slices.ContainsFunc(p.Versions(), func(v module.Version) bool { return v.Path == f[0] && v.Version == version }) {
					continue // from the machine's cache
				}
				fromProxy++
				if !slices.Contains(served, line) {
					t.Errorf("go.sum has %q, Sums() has no such line: %q", line, served)
				}
			}
			if fromProxy == 0 {
				t.Errorf("go.sum has no line for a module of the proxy:\n%s", gosum)
			}
		})
	}
}

// TestOffline shows the environment ends in "off": a module neither the
// proxy nor the machine's cache holds is refused without a network lookup.
func TestOffline(t *testing.T) {
	p := buildProxy(t)
	env := p.Env(filepath.Join(t.TempDir(), "modcache"))
	for _, kv := range []string{"GOSUMDB=off", "GOPRIVATE=", "GONOPROXY=", "GOTOOLCHAIN=local"} {
		if !slices.Contains(env, kv) {
			t.Errorf("Env() lacks %s: %q", kv, env)
		}
	}
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GOPROXY=") && strings.HasSuffix(kv, ",off") }) {
		t.Errorf("Env() has no GOPROXY ending in ,off: %q", env)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "go.mod"), "module tryit\n\ngo 1.22\n")
	for _, get := range []string{
		"example.com/absent@v1.0.0", // in neither
		"example.com/greet@v9.9.9",  // a version the proxy lacks
		"github.com/rs/xid@v1.5.0",  // a version neither the proxy nor the machine's cache has
	} {
		out, err := tryGo(t, dir, env, "get", get)
		if err == nil {
			t.Errorf("go get %s succeeded offline:\n%s", get, out)
			continue
		}
		if !strings.Contains(out, "module lookup disabled by GOPROXY=off") {
			t.Errorf("go get %s: %v\n%s\nwant a lookup refused by GOPROXY=off", get, err, out)
		}
	}
}

// TestDepsFixtures builds the user-side fixtures under testdata/deps as
// plugins with the proxy's environment, with the default -mod=readonly (so
// go.mod and go.sum must be complete), and checks their committed go.sum
// against Proxy.Sums, so a change to a fixture module is caught here.
func TestDepsFixtures(t *testing.T) {
	p := buildProxy(t)
	tests := []struct {
		dir string // under testdata/deps
		pkg string // the plugin's package, relative to dir
	}{
		{dir: "lib-greet", pkg: "./src/greet.go"},
		{dir: "shop", pkg: "."},
		{dir: "middlewares", pkg: "./src/middlewares/hello.go"},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			dir := filepath.Join(depsDir, tt.dir)
			data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err != nil {
				t.Fatal(err)
			}
			mf, err := modfile.Parse("go.mod", data, nil)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, r := range mf.Require {
				for _, line := range p.Sums() {
					if strings.HasPrefix(line, r.Mod.Path+" "+r.Mod.Version+" ") || strings.HasPrefix(line, r.Mod.Path+" "+r.Mod.Version+"/go.mod ") {
						want = append(want, line)
					}
				}
			}
			slices.Sort(want)
			gosum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
			if err != nil {
				t.Fatal(err)
			}
			if got := sumLines(gosum); !slices.Equal(got, want) {
				t.Errorf("%s/go.sum is stale; the proxy serves:\n%s", dir, strings.Join(want, "\n"))
			}

			// Built where a user's tree would be, outside this repository.
			tree := filepath.Join(t.TempDir(), tt.dir)
			if err := os.CopyFS(tree, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			env := p.Env(filepath.Join(t.TempDir(), "modcache"))
			goCmd(t, tree, env, "build", "-buildmode=plugin", "-o", filepath.Join(t.TempDir(), "p.so"), tt.pkg)
			if after, err := os.ReadFile(filepath.Join(tree, "go.sum")); err != nil || !bytes.Equal(after, gosum) {
				t.Errorf("building changed go.sum (err %v)", err)
			}
		})
	}
}

// TestGoModSum checks GoModSum against hashes the go command and the
// public checksum database recorded: negroni v3.1.2's go.mod (our copy of it
// is unchanged) and xid v1.6.0's, as the repository's go.sum has it.
func TestGoModSum(t *testing.T) {
	rootSum, err := os.ReadFile("../../go.sum")
	if err != nil {
		t.Fatal(err)
	}
	xidLine := ""
	for _, line := range sumLines(rootSum) {
		if strings.HasPrefix(line, "github.com/rs/xid v1.6.0/go.mod ") {
			xidLine = line
		}
	}
	if xidLine == "" {
		t.Fatal("go.sum has no line for github.com/rs/xid v1.6.0/go.mod")
	}
	tests := []struct {
		gomod string
		want  string
	}{
		{gomod: modulesDir + "/github.com/urfave/negroni/v3@v3.1.2/go.mod", want: "h1:jWvnX03kcSjDBl/ShB0iHvx5uOs7mAzZXW+JvJ5XYAs="},
		{gomod: modulesDir + "/github.com/rs/xid@v1.7.0/go.mod", want: strings.Fields(xidLine)[2]}, // v1.6.0's go.mod, unchanged
	}
	for _, tt := range tests {
		data, err := os.ReadFile(tt.gomod)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := GoModSum(data); err != nil || got != tt.want {
			t.Errorf("GoModSum(%s) = %q, %v; want %q", tt.gomod, got, err, tt.want)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	tests := []struct {
		name  string
		files []string // under the source directory
		want  string   // in the error
	}{
		{name: "no module directories", files: []string{"example.com/greet/go.mod"}, want: "no <module>@<version> directories"},
		{name: "version not canonical", files: []string{"example.com/greet@1.0/go.mod"}, want: "example.com/greet@1.0"},
		{name: "no go.mod", files: []string{"example.com/greet@v1.0.0/greet.go"}, want: "go.mod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := t.TempDir()
			for _, f := range tt.files {
				writeFile(t, filepath.Join(src, filepath.FromSlash(f)), "package greet\n")
			}
			_, err := Build(src, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build: %v, want an error naming %q", err, tt.want)
			}
		})
	}
}
