package isolate_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/isolate"
)

// TestGoflagsReachBuilds: an isolated plugin's build runs the go command
// with the build pipeline's environment, so the user's GOFLAGS that
// plugin builds keep (-modcacherw) reach it, and those they drop (-race,
// which would also need cgo, which these builds do without) do not.
func TestGoflagsReachBuilds(t *testing.T) {
	t.Setenv("GOFLAGS", "-modcacherw -race")
	dir := plugintest.PluginPath(t)
	src := filepath.Join(dir, "src")
	plugintest.WriteFile(t, src, "flags.go", plugintest.Unique(t, "package main\n\nfunc GETFlagsHandler() string { return \"flags\" }\n"))
	p, err := build.New(t.Context(), build.Options{SrcDir: src, CacheDir: plugintest.CacheDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	// The go command, through a script that notes the GOFLAGS it gets.
	goPath, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	seen := filepath.Join(t.TempDir(), "goflags")
	wrapper := filepath.Join(t.TempDir(), "go")
	plugintest.WriteFile(t, filepath.Dir(wrapper), "go", "#!/bin/sh\nprintf '%s\\n' \"$GOFLAGS\" >> "+seen+"\nexec "+goPath+" \"$@\"\n")
	if err := os.Chmod(wrapper, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := isolate.New(isolate.Options{Find: isolate.PipelineFinder(p), ModuleDir: p.ModuleDir(), CacheDir: plugintest.CacheDir(),
		Go: wrapper, Env: p.GoEnv(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(t.Context())
	res, err := m.Build(t.Context(), "flags")
	if err != nil || res.Duration == 0 {
		t.Fatalf("Build = %+v, %v; want a build", res, err)
	}
	got, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != "-modcacherw" {
		t.Errorf("the isolated build ran with GOFLAGS %q; want %q", strings.TrimSpace(string(got)), "-modcacherw")
	}
}
