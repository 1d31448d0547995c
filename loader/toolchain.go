package loader

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// CheckToolchain reports what is missing to build plugins here: the go
// command, a toolchain of the server's Go version, a C compiler (plugins
// need cgo). An empty result means nothing is.
func CheckToolchain(ctx context.Context, goCmd string, host HostBuild) []string {
	var problems []string
	if !Supported {
		problems = append(problems, unsupportedReason)
	}
	goPath, err := exec.LookPath(goCmd)
	if err != nil {
		return append(problems, fmt.Sprintf("the go command %q is not on PATH: plugins cannot be built (install Go %s or set plugins.go)", goCmd, host.GoVersion))
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, goPath, "env", "GOVERSION", "CC").Output()
	if err != nil {
		return append(problems, fmt.Sprintf("%s env failed: %v", goPath, err))
	}
	fields := strings.Split(strings.TrimSpace(string(out)), "\n")
	if v := fields[0]; v != host.GoVersion {
		problems = append(problems, fmt.Sprintf("%s is %s but the server was built with %s: plugins it builds will not load; put %s on PATH or set plugins.go", goPath, v, host.GoVersion, host.GoVersion))
	}
	cc := os.Getenv("CC")
	if cc == "" && len(fields) > 1 {
		cc = fields[1]
	}
	if cc == "" {
		cc = "gcc"
	}
	if _, err := exec.LookPath(strings.Fields(cc)[0]); err != nil {
		problems = append(problems, fmt.Sprintf("no C compiler (%s) on PATH: plugins need cgo; install gcc or clang, or set CC", cc))
	}
	return problems
}
