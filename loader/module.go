package loader

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

// hostModule writes, once per host build, a Go module that requires
// exactly the modules linked into the server, at the versions its build
// information records, and returns its directory. Plugins built in it
// share the server's dependency versions although no source tree of the
// server is at hand (an installed binary). The module belongs to plugind:
// making its go.sum is the only time a go command may edit a go.mod.
//
// A released server's own module is required too, so plugins can import
// its sdk. A version the module proxy cannot serve (a "+dirty" build, a
// commit never pushed) is left out rather than failing the start: note
// then says that plugins cannot import the server's packages.
func hostModule(ctx context.Context, goCmd, dir string, host HostBuild) (moduleDir, note string, err error) {
	dir = filepath.Join(dir, "module-"+host.Identity()[:16])
	if _, err := os.Stat(filepath.Join(dir, "go.sum")); err == nil {
		return dir, "", nil
	}
	v := host.ModuleVersion
	requireSelf := v != "" && v != "(devel)" && module.Check(host.Module, v) == nil && module.CanonicalVersion(v) == v
	if !requireSelf && v != "" && v != "(devel)" {
		note = fmt.Sprintf("the server's own version %s is not a module version: plugins cannot import its packages (sdk)", v)
	}
	err = writeHostModule(ctx, goCmd, dir, host, requireSelf)
	if err != nil && requireSelf {
		if err2 := writeHostModule(ctx, goCmd, dir, host, false); err2 == nil {
			return dir, fmt.Sprintf("the server's own module %s@%s cannot be downloaded, so plugins cannot import its packages (sdk): %v", host.Module, v, err), nil
		}
	}
	if err != nil {
		return "", "", err
	}
	return dir, note, nil
}

// writeHostModule writes hostModule's module into dir, with the server's
// own module required if requireSelf.
func writeHostModule(ctx context.Context, goCmd, dir string, host HostBuild, requireSelf bool) error {
	f := &modfile.File{}
	if err := f.AddModuleStmt("plugind.local/plugins"); err != nil {
		return err
	}
	goVersion := strings.TrimPrefix(host.GoVersion, "go")
	if err := f.AddGoStmt(goVersion); err != nil {
		return fmt.Errorf("go version %s: %w", host.GoVersion, err)
	}
	paths := make([]string, 0, len(host.Deps))
	for p := range host.Deps {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		version, replacement, replaced := strings.Cut(host.Deps[p], " => ")
		if err := f.AddRequire(p, version); err != nil {
			return err
		}
		if replaced {
			newPath, newVersion, _ := strings.Cut(replacement, " ")
			if err := f.AddReplace(p, "", newPath, newVersion); err != nil {
				return err
			}
		}
	}
	if requireSelf {
		if err := f.AddRequire(host.Module, host.ModuleVersion); err != nil {
			return err
		}
	}
	f.Cleanup()
	data, err := f.Format()
	if err != nil {
		return err
	}

	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".module-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), data, 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "mod", "download", "all")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("preparing the plugin build module (go mod download): %w\n%s", err, strings.TrimSpace(out.String()))
	}
	if !fileExists(filepath.Join(tmp, "go.sum")) { // a server with no dependencies
		if err := os.WriteFile(filepath.Join(tmp, "go.sum"), nil, 0o644); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil && !fileExists(filepath.Join(dir, "go.sum")) {
		return err
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
