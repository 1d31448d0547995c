package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
)

// hostModule writes a Go module that requires exactly the modules linked
// into the server, at the versions its build information records, and
// returns its directory. Plugins built in it share the server's dependency
// versions although no source tree of the server is at hand (an installed
// binary). The module belongs to plugind: making its go.sum is the only
// time a go command may edit a go.mod. Its directory is named by its
// go.mod, so a server with other dependencies gets another one.
//
// The server's own module is required too when that gives plugins the
// very sdk the server has: a release built with -trimpath, or one built
// from the module cache. Otherwise, or when the module proxy cannot serve
// it, it is left out rather than failing the start, and note says that
// plugins cannot import the server's packages, and why.
func hostModule(ctx context.Context, goCmd, cacheDir string, host HostBuild, environ []string) (moduleDir, note string, err error) {
	const cannot = "plugins cannot import the server's own packages (sdk): "
	v := host.ModuleVersion
	requireSelf := false
	switch {
	case host.Module == "":
	case v == "" || v == "(devel)":
		note = cannot + "a development build away from its source tree; set plugins.moduledir to that tree"
	case module.Check(host.Module, v) != nil || module.CanonicalVersion(v) != v:
		note = fmt.Sprintf(cannot+"its version %s is not a module version; set plugins.moduledir to its source tree", v)
	case !host.Trimpath() && !inModuleCache(host.Module, compiledDir()):
		note = cannot + "it was built without -trimpath from a source tree that is not here; build it with -trimpath or set plugins.moduledir to that tree"
	default:
		requireSelf = true
	}
	if requireSelf {
		dir, err := writeHostModule(ctx, goCmd, cacheDir, host, environ, true)
		if err == nil {
			return dir, "", nil
		}
		note = fmt.Sprintf(cannot+"%s@%s cannot be downloaded: %v", host.Module, v, err)
	}
	dir, err := writeHostModule(ctx, goCmd, cacheDir, host, environ, false)
	if err != nil {
		return "", "", err
	}
	return dir, note, nil
}

// writeHostModule writes hostModule's module, with the server's own
// module required if requireSelf, into cacheDir unless it is there, and
// returns its directory.
func writeHostModule(ctx context.Context, goCmd, cacheDir string, host HostBuild, environ []string, requireSelf bool) (string, error) {
	f := &modfile.File{}
	if err := f.AddModuleStmt("plugind.local/plugins"); err != nil {
		return "", err
	}
	goVersion := strings.TrimPrefix(host.GoVersion, "go")
	if err := f.AddGoStmt(goVersion); err != nil {
		return "", fmt.Errorf("go version %s: %w", host.GoVersion, err)
	}
	paths := make([]string, 0, len(host.Deps))
	for p := range host.Deps {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		version, replacement, replaced := strings.Cut(host.Deps[p], " => ")
		if err := f.AddRequire(p, version); err != nil {
			return "", err
		}
		if replaced {
			newPath, newVersion, _ := strings.Cut(replacement, " ")
			if err := f.AddReplace(p, "", newPath, newVersion); err != nil {
				return "", err
			}
		}
	}
	if requireSelf {
		if err := f.AddRequire(host.Module, host.ModuleVersion); err != nil {
			return "", err
		}
	}
	f.Cleanup()
	data, err := f.Format()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cacheDir, "module-"+hashOf(string(data))[:16])
	if fileExists(filepath.Join(dir, "go.sum")) {
		return dir, nil
	}

	tmp, err := os.MkdirTemp(cacheDir, ".module-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), data, 0o644); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "mod", "download", "all")
	cmd.Dir = tmp
	cmd.Env = append(slices.Clip(environ), "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("preparing the plugin build module (go mod download): %w\n%s", err, strings.TrimSpace(out.String()))
	}
	if !fileExists(filepath.Join(tmp, "go.sum")) { // a server with no dependencies
		if err := os.WriteFile(filepath.Join(tmp, "go.sum"), nil, 0o644); err != nil {
			return "", err
		}
	}
	if err := os.Rename(tmp, dir); err != nil && !fileExists(filepath.Join(dir, "go.sum")) {
		return "", err
	}
	return dir, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
