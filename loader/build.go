package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// builder runs go build -buildmode=plugin, one build at a time: on a
// small machine concurrent plugin builds are slower than serial ones.
type builder struct {
	goCmd     string
	moduleDir string
	srcDir    string
	host      HostBuild
	timeout   time.Duration
	slot      chan struct{} // one token: the build in progress
}

// build compiles src into out. The artifact appears at out atomically, or
// not at all.
func (b *builder) build(ctx context.Context, src Source, out string) (err error) {
	select {
	case b.slot <- struct{}{}:
		defer func() { <-b.slot }()
	case <-ctx.Done():
		return newError(ErrBuild, src.Name, ctx.Err(), "plugin %q: gave up waiting to build", src.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return newError(ErrBuild, src.Name, err, "plugin %q: cannot create the artifact directory", src.Name)
	}
	// Unique across processes sharing the cache (a shared volume): each
	// writes its own file and renames it into place, so a reader sees a
	// whole artifact or none.
	tmp := fmt.Sprintf("%s.%d.%d.tmp", out, os.Getpid(), time.Now().UnixNano())
	defer os.Remove(tmp)

	args := append([]string{"build", "-buildmode=plugin", "-o", tmp}, b.host.Flags...)
	args = append(args, src.Files...)
	cmd := exec.CommandContext(ctx, b.goCmd, args...)
	cmd.Dir = b.moduleDir
	cmd.Env = append(os.Environ(), b.host.Env...)
	cmd.Env = append(cmd.Env,
		"GOWORK=off",            // a go.work above the module silently changes versions
		"GOFLAGS=-mod=readonly", // never edit go.mod; drops the caller's GOFLAGS
		"GOTOOLCHAIN=local",     // the server's toolchain, never a download
		"CGO_ENABLED=1",
	)
	cmd.WaitDelay = 5 * time.Second
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		diag := b.relative(output.String())
		cause := err
		if ctx.Err() != nil {
			cause = fmt.Errorf("build exceeded %s: %w", b.timeout, ctx.Err())
		}
		var execErr *exec.Error
		if errors.As(err, &execErr) {
			return newError(ErrBuild, src.Name, err, "plugin %q cannot be built: the go command %q was not found; install Go or set plugins.go", src.Name, b.goCmd)
		}
		e := newError(ErrBuild, src.Name, cause, "plugin %q failed to build", src.Name)
		if pkg := missingModule(diag); pkg != "" {
			e.Msg = fmt.Sprintf("plugin %q failed to build: it imports %s, which the server was not built with; plugins can import the standard library and the server's modules", src.Name, pkg)
		}
		e.Output = diag
		return e
	}
	if err := os.Rename(tmp, out); err != nil {
		return newError(ErrBuild, src.Name, err, "plugin %q: cannot store its artifact", src.Name)
	}
	return nil
}

// relative strips the source and module directories from compiler
// output, so diagnostics read "hello.go:12:3: ..." and never show where
// the server keeps its files. The go command's package header line goes.
func (b *builder) relative(out string) string {
	prefixes := []string{b.srcDir + string(filepath.Separator)}
	if rel, err := filepath.Rel(b.moduleDir, b.srcDir); err == nil && !strings.HasPrefix(rel, "..") {
		prefixes = append(prefixes, "./"+rel+string(filepath.Separator), rel+string(filepath.Separator))
	}
	prefixes = append(prefixes, b.moduleDir+string(filepath.Separator))
	var lines []string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if strings.HasPrefix(line, "# ") {
			continue
		}
		for _, p := range prefixes {
			line = strings.ReplaceAll(line, p, "")
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// missingModule finds, in compiler output, a package no module of the
// build provides.
func missingModule(out string) string {
	for _, marker := range []string{"no required module provides package ", "cannot find module providing package "} {
		if _, rest, ok := strings.Cut(out, marker); ok {
			pkg, _, _ := strings.Cut(rest, ";")
			return strings.Fields(pkg + " ")[0]
		}
	}
	return ""
}
