package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

func TestHostBuildFrom(t *testing.T) {
	tests := []struct {
		name     string
		settings []debug.BuildSetting
		flags    []string
		env      []string
	}{
		{
			name:     "plain",
			settings: []debug.BuildSetting{{Key: "-buildmode", Value: "exe"}, {Key: "-compiler", Value: "gc"}, {Key: "CGO_ENABLED", Value: "1"}, {Key: "GOARCH", Value: "amd64"}, {Key: "GOOS", Value: "linux"}, {Key: "GOAMD64", Value: "v1"}},
			env:      []string{"CGO_ENABLED=1", "GOARCH=amd64", "GOOS=linux", "GOAMD64=v1"},
		},
		{
			name:     "race and trimpath",
			settings: []debug.BuildSetting{{Key: "-race", Value: "true"}, {Key: "-trimpath", Value: "true"}, {Key: "CGO_ENABLED", Value: "1"}},
			flags:    []string{"-race", "-trimpath"},
			env:      []string{"CGO_ENABLED=1"},
		},
		{
			name:     "tags and gcflags",
			settings: []debug.BuildSetting{{Key: "-tags", Value: "netgo,osusergo"}, {Key: "-gcflags", Value: "all=-N -l"}, {Key: "-ldflags", Value: "-s -w"}, {Key: "vcs.revision", Value: "abc"}},
			flags:    []string{"-tags=netgo,osusergo", "-gcflags=all=-N -l"},
		},
		{
			name:     "false flags are absent",
			settings: []debug.BuildSetting{{Key: "-race", Value: "false"}, {Key: "-trimpath", Value: "false"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := hostBuildFrom(&debug.BuildInfo{Main: debug.Module{Path: "example.com/m"}, Settings: tt.settings})
			if !slices.Equal(h.Flags, tt.flags) {
				t.Errorf("flags = %q, want %q", h.Flags, tt.flags)
			}
			if !slices.Equal(h.Env, tt.env) {
				t.Errorf("env = %q, want %q", h.Env, tt.env)
			}
			if h.Module != "example.com/m" {
				t.Errorf("module = %q", h.Module)
			}
		})
	}
	a := hostBuildFrom(&debug.BuildInfo{Settings: tests[0].settings})
	b := hostBuildFrom(&debug.BuildInfo{Settings: tests[1].settings})
	if a.Identity() == b.Identity() {
		t.Error("hosts built with different flags share an identity")
	}
	c := a
	c.SDK = "another sdk"
	if a.Identity() == c.Identity() {
		t.Error("hosts with different sdk sources share an identity: plugins would not be rebuilt")
	}
}

func TestRelativeDiagnostics(t *testing.T) {
	b := &builder{moduleDir: "/home/u/plugind", srcDir: "/home/u/plugind/lib/src"}
	out := "# command-line-arguments\n/home/u/plugind/lib/src/broken.go:5:2: undefined: x\nlib/src/broken.go:6:1: syntax error\n./lib/src/x/a.go:1:1: bad\n"
	want := "broken.go:5:2: undefined: x\nbroken.go:6:1: syntax error\nx/a.go:1:1: bad"
	if got := b.relative(out); got != want {
		t.Errorf("relative =\n%s\nwant\n%s", got, want)
	}
	b = &builder{moduleDir: "/home/u/plugind", srcDir: "/srv/plugins/src"}
	if got := b.relative("/srv/plugins/src/a.go:1:1: bad\n"); got != "a.go:1:1: bad" {
		t.Errorf("relative outside the module = %q", got)
	}
	// stamp's copy is reported as the source it stands for.
	if got := b.relative("/srv/cache/.stamp-1/a.go:1:1: bad\n", "/srv/cache/.stamp-1/a.go", "/srv/plugins/src/a.go"); got != "a.go:1:1: bad" {
		t.Errorf("relative of the stamped copy = %q", got)
	}
	b = &builder{moduleDir: "/home/u/plugind", srcDir: "/home/u/plugind/lib/src"}
	if got := b.relative("./.cache/.stamp-1/a.go:1:1: bad\n", "/home/u/plugind/.cache/.stamp-1/a.go", "/home/u/plugind/lib/src/r/a.go"); got != "r/a.go:1:1: bad" {
		t.Errorf("relative of a stamped copy below the module = %q", got)
	}
	// A checkout beside the plugins: the go command writes the shorter
	// path, up and across (CI's clone at /tmp/ci, a test's plugins in
	// /tmp/TestX).
	b = &builder{moduleDir: "/tmp/ci", srcDir: "/tmp/TestX/plugins/src"}
	if got := b.relative("../TestX/plugins/.plugind/.stamp-1/hello.go:35:13: undefined: x\n", "/tmp/TestX/plugins/.plugind/.stamp-1/hello.go", "/tmp/TestX/plugins/src/hello.go"); got != "hello.go:35:13: undefined: x" {
		t.Errorf("relative of a stamped copy beside the module = %q", got)
	}
	if got := b.relative("../TestX/plugins/src/r/a.go:1:1: bad\n"); got != "r/a.go:1:1: bad" {
		t.Errorf("relative of a source beside the module = %q", got)
	}
}

func TestSourcePaths(t *testing.T) {
	tests := []struct {
		name  string
		flags []string
		want  []string // in the result; nil: the result is ""
	}{
		{"without -trimpath paths are compiled in", []string{"-race"}, []string{"/src/tree", compiledDir(), "/cache/mod"}},
		{"with -trimpath they are not", []string{"-race", "-trimpath"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := HostBuild{Flags: tt.flags}.sourcePaths("/src/tree", "/cache/mod")
			if (got == "") != (tt.want == nil) {
				t.Errorf("sourcePaths = %q, want paths: %v", got, tt.want != nil)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("sourcePaths = %q lacks %q", got, w)
				}
			}
		})
	}
}

// TestToolchain: one go env tells the toolchain's version, C compiler and
// module cache; a missing go command is reported as such.
func TestToolchain(t *testing.T) {
	modCache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	got := readToolchain(t.Context(), "go", goEnviron())
	if got.err != nil || got.goPath == "" || got.version != runtime.Version() || got.modCache != strings.TrimSpace(string(modCache)) {
		t.Errorf("readToolchain(go) = %+v; want %s and GOMODCACHE %s", got, runtime.Version(), modCache)
	}
	l := &Pipeline{tool: readToolchain(t.Context(), "no-such-go", goEnviron()), host: HostBuild{GoVersion: runtime.Version()}, builder: &builder{goCmd: "no-such-go"}}
	if p := l.ToolchainProblems(); len(p) == 0 || !strings.Contains(p[len(p)-1], `"no-such-go" is not on PATH`) {
		t.Errorf("problems without a go command: %q", p)
	}
	l = &Pipeline{tool: toolchain{goPath: "/x/go", version: "go1.0", modCache: "/m"}, host: HostBuild{GoVersion: runtime.Version()}, builder: &builder{goCmd: "go"}}
	if p := l.ToolchainProblems(); !slices.ContainsFunc(p, func(s string) bool {
		return strings.Contains(s, "/x/go is go1.0 but the server was built with "+runtime.Version())
	}) {
		t.Errorf("problems with another Go version: %q", p)
	}
}

// TestHostModuleSelf: a server away from its source tree requires its own
// module only where that gives plugins its very sdk (a canonical version,
// built with -trimpath here, since this test binary was compiled from a
// source tree) and the proxy serves it; otherwise it is left out with a
// note saying why, and the server still starts.
func TestHostModuleSelf(t *testing.T) {
	trimpath := []string{"-trimpath"}
	tests := []struct {
		name, version string
		flags         []string
		note          string // part of the note
	}{
		{"a development build", "(devel)", nil, "development build"},
		{"a dirty build", "v0.0.0-20261122103742-a088f323c666+dirty", trimpath, "is not a module version"},
		{"a commit never published", "v0.0.0-20261122103742-a088f323c666", trimpath, "cannot be downloaded"},
		{"a release built without -trimpath elsewhere", "v0.0.0-20261122103742-a088f323c666", nil, "without -trimpath"},
	}
	cache := t.TempDir()
	dirs := make(map[string]string)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := HostBuild{GoVersion: runtime.Version(), Module: "github.com/plugind/plugind", ModuleVersion: tt.version, Flags: tt.flags}
			dir, note, err := hostModule(t.Context(), "go", cache, host, goEnviron())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(note, tt.note) || !strings.Contains(note, "cannot import") {
				t.Errorf("note = %q, want one containing %q", note, tt.note)
			}
			data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(data), host.Module+" ") {
				t.Errorf("go.mod requires the server's module:\n%s", data)
			}
			dirs[tt.name] = dir
		})
	}
	if len(dirs) == len(tests) && dirs["a development build"] != dirs["a dirty build"] {
		t.Error("equal go.mod files got two module directories")
	}
}

// TestMissingModule: the package named after the go command's marker, and
// nothing (never a panic) when the marker names none.
func TestMissingModule(t *testing.T) {
	for out, want := range map[string]string{
		"x.go:3:8: no required module provides package github.com/google/uuid; to add it:": "github.com/google/uuid",
		"x.go:3:8: no required module provides package ; to add it":                        "",
		"x.go:3:8: no required module provides package ":                                   "",
		"x.go:5:9: undefined: y": "",
	} {
		if got := missingModule(out); got != want {
			t.Errorf("missingModule(%q) = %q, want %q", out, got, want)
		}
	}
}

// TestStampCopies: copy 0 is stamped as every plugin always was (its
// artifact and key unchanged), each other copy with its index as well,
// and copy keys are distinct and derive from the plugin's key alone.
func TestStampCopies(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hello.go")
	if err := os.WriteFile(file, []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		copy int
		want string
	}{
		{0, "package main\n\n// plugind: plugin hello\n"},
		{1, "package main\n\n// plugind: plugin hello copy 1\n"},
		{63, "package main\n\n// plugind: plugin hello copy 63\n"},
	}
	keys := map[string]int{}
	for _, tt := range tests {
		overlay, stamped, err := stamp(Source{Name: "hello", Kind: KindFile, Files: []string{file}, Copy: tt.copy}, dir)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(stamped)
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != tt.want {
			t.Errorf("copy %d stamped %q, want %q", tt.copy, data, tt.want)
		}
		os.RemoveAll(filepath.Dir(overlay))
		k := CopyKey("k0", tt.copy)
		if prev, dup := keys[k]; dup {
			t.Errorf("copies %d and %d share key %s", prev, tt.copy, k)
		}
		keys[k] = tt.copy
	}
	once, again := CopyKey("k0", 1), CopyKey("k0", 1) // derived, so the same every time
	if CopyKey("k0", 0) != "k0" || once != again || once == CopyKey("k1", 1) {
		t.Error("CopyKey: copy 0 must keep the key; others must derive from it alone")
	}
}
