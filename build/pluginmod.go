package build

import (
	"os"
	"path/filepath"

	"golang.org/x/mod/modfile"

	"github.com/plugind/plugind/plugerr"
)

// Check runs the checks a source passes before it is built. A plugin
// that declares requirements (lib/go.mod, or its folder's go.mod) is
// checked when its build module is planned, as part of its build (see
// planFor), so that a failure is the build's: remembered for its source,
// and with an older version serving, the older version keeps serving.
func (p *Pipeline) Check(src Source) error {
	if p.prebuilt || src.Kind == KindPrebuilt {
		return nil // checked by plugind build, which had the build module
	}
	d, err := p.declared(src)
	if err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: the go.mod that declares its requirements cannot be read", src.Name)
	}
	if d != nil {
		return nil
	}
	return p.checkImports(src)
}

// checkImports refuses, before the compiler runs, a plugin that
// declares no requirements yet imports a package no module of the server
// provides, saying how to declare it: the go command's own message for
// this ("updates to go.mod needed") does not.
func (p *Pipeline) checkImports(src Source) error {
	data, err := os.ReadFile(filepath.Join(p.moduleDir, "go.mod"))
	if err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: the build module's go.mod cannot be read", src.Name)
	}
	f, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: the build module's go.mod cannot be parsed", src.Name)
	}
	modules := []string{f.Module.Mod.Path}
	for _, r := range f.Require {
		modules = append(modules, r.Mod.Path)
	}
	imps, parsed := imports(src)
	if !parsed {
		return nil // the compiler will say it better
	}
	if path := unprovided(imps, modules); path != "" {
		lib := filepath.Base(filepath.Dir(p.src.dir))
		fix := "cd " + lib + " && go get " + path
		if !fileExists(filepath.Join(filepath.Dir(p.src.dir), "go.mod")) {
			fix = "cd " + lib + " && go mod init plugind.local/" + lib + " && go get " + path
		}
		return plugerr.New(plugerr.ErrDependency, src.Name, nil, "plugin %q imports %s, which neither the server nor %s/go.mod provides; declare it: run %q", src.Name, path, lib, fix)
	}
	return nil
}
