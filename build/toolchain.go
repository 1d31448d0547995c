package build

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// toolchain is what the go command plugins are built with says of itself,
// read once when a Pipeline starts: one `go env` serves both the toolchain
// check and the artifact key.
type toolchain struct {
	goPath   string   // the go command found on PATH; "" if none is
	version  string   // GOVERSION
	cc       string   // CC; "" if unset
	modCache string   // GOMODCACHE
	goflags  string   // GOFLAGS, less what builds must not take (see keptGoflags)
	dropped  []string // what of GOFLAGS builds do not take
	err      error    // why go env could not be read
}

// readToolchain runs `go env` with the environment builds run with.
func readToolchain(ctx context.Context, goCmd string, environ []string) toolchain {
	goPath, err := exec.LookPath(goCmd)
	if err != nil {
		return toolchain{err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, goPath, "env", "GOVERSION", "CC", "GOMODCACHE", "GOFLAGS")
	cmd.Env = append(slices.Clip(environ), "GOWORK=off", "GOTOOLCHAIN=local")
	out, err := cmd.Output()
	if err != nil {
		return toolchain{goPath: goPath, err: fmt.Errorf("%s env: %w", goPath, err)}
	}
	// One line per variable, empty for an unset one.
	f := append(strings.Split(strings.TrimRight(string(out), "\n"), "\n"), "", "", "", "")
	goflags, dropped := keptGoflags(f[3])
	return toolchain{goPath: goPath, version: f[0], cc: f[1], modCache: f[2], goflags: goflags, dropped: dropped}
}

// keptGoflags splits GOFLAGS into what plugin builds take (flags that
// change how modules are fetched or kept, never compiled code: a plugin
// must be compiled exactly as the server was) and what they drop. -mod
// and -modfile are dropped too: builds set their own.
func keptGoflags(goflags string) (kept string, dropped []string) {
	var keep []string
	for _, f := range strings.Fields(goflags) {
		name, _, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
		switch name {
		case "modcacherw", "buildvcs", "p":
			keep = append(keep, f)
		default:
			dropped = append(dropped, f)
		}
	}
	return strings.Join(keep, " "), dropped
}

// ToolchainProblems reports what is missing to build plugins here: the go
// command, a toolchain of the server's Go version, a C compiler (plugins
// need cgo). An empty result means nothing is. Whether this platform can
// open plugins at all is the loader's to say (loader.Supported).
func (p *Pipeline) ToolchainProblems() []string {
	var problems []string
	if p.prebuilt {
		return problems // prebuilt mode needs neither go nor a C compiler
	}
	t, host := p.tool, p.host
	switch {
	case t.goPath == "":
		return append(problems, fmt.Sprintf("the go command %q is not on PATH: plugins cannot be built (install Go %s or set plugins.go)", p.builder.goCmd, host.GoVersion))
	case t.err != nil:
		return append(problems, t.err.Error())
	case t.version != host.GoVersion:
		problems = append(problems, fmt.Sprintf("%s is %s but the server was built with %s: plugins it builds will not load; put %s on PATH or set plugins.go", t.goPath, t.version, host.GoVersion, host.GoVersion))
	}
	cc := strings.Fields(t.cc) // go env's, which sees CC as builds do
	if len(cc) == 0 {
		cc = []string{"gcc"}
	}
	if _, err := exec.LookPath(cc[0]); err != nil {
		problems = append(problems, fmt.Sprintf("no C compiler (%s) on PATH: plugins need cgo; install gcc or clang, or set CC", cc[0]))
	}
	return problems
}

// blankable are compiler variables the go command indexes without a
// check: set but blank (CC=" "), it panics (Go 1.26). Blank is treated
// as unset.
var blankable = []string{"CC", "CXX"}

// goEnviron is the process environment for running the go command, with
// blank compiler variables removed, so that the go command's defaults
// apply as if they were unset.
func goEnviron() []string {
	env := os.Environ()
	return slices.DeleteFunc(env, func(kv string) bool {
		k, v, _ := strings.Cut(kv, "=")
		return slices.Contains(blankable, k) && strings.TrimSpace(v) == ""
	})
}
