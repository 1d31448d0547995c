package build

import (
	"path/filepath"

	"github.com/plugind/plugind/plugerr"
)

// Check runs the checks a source passes before it is built. A plugin
// built in a module of its own (see module) is checked when that module
// is planned, as part of its build (see planFor), so that a failure is
// the build's: remembered for its source, and with an older version
// serving, the older version keeps serving.
func (p *Pipeline) Check(src Source) error {
	if p.prebuilt || src.Kind == KindPrebuilt {
		return nil // checked by plugind build, which had the build module
	}
	d, err := p.declared(src)
	if err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: the go.mod that declares its requirements cannot be read", src.Name)
	}
	if d != nil && !d.empty() {
		return nil
	}
	base, err := p.buildModule()
	if err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: the build module's go.mod cannot be read", src.Name)
	}
	imps, parsed := imports(src)
	if d != nil && d.ownImported(imps, base.path) {
		return nil
	}
	if !parsed {
		return nil // the compiler will say it better
	}
	return p.checkImports(src, d, base, imps)
}

// module is the module src's build module is planned from (see
// planFor): the one it declares its requirements in (see declared),
// unless that requires, replaces and vendors nothing and src imports
// none of its packages. nil: src builds in the server's module as it is,
// with the key and artifact it always had.
func (p *Pipeline) module(src Source) (*declared, error) {
	d, err := p.declared(src)
	if err != nil {
		return nil, plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: the go.mod that declares its requirements cannot be read", src.Name)
	}
	if d == nil || !d.empty() {
		return d, nil
	}
	base, err := p.buildModule()
	if err != nil {
		return nil, plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: the build module's go.mod cannot be read", src.Name)
	}
	if imps, _ := imports(src); !d.ownImported(imps, base.path) {
		return nil, nil
	}
	return d, nil
}

// checkImports refuses, before the compiler runs, a plugin built in the
// server's module (base) as it is that imports a package no module of
// the server provides, saying how to declare it in d, the module src
// declares its requirements in (nil: none yet): the go command's own
// message for this ("updates to go.mod needed") does not.
func (p *Pipeline) checkImports(src Source, d *declared, base *buildModule, imps []string) error {
	if base.modErr != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, base.modErr, "plugin %q: the build module's go.mod cannot be read", src.Name)
	}
	if base.parseErr != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, base.parseErr, "plugin %q: the build module's go.mod cannot be parsed", src.Name)
	}
	path := unprovided(imps, base.modules)
	if path == "" {
		return nil
	}
	if d != nil {
		return plugerr.New(plugerr.ErrDependency, src.Name, nil, "plugin %q imports %s, which neither the server nor %s/go.mod provides; declare it: run %q", src.Name, path, d.shown, d.fix("go get "+path))
	}
	lib := filepath.Base(filepath.Dir(p.src.dir))
	fix := "cd " + lib + " && go mod init plugind.local/" + lib + " && go get " + path
	return plugerr.New(plugerr.ErrDependency, src.Name, nil, "plugin %q imports %s, which neither the server nor %s/go.mod provides; declare it: run %q", src.Name, path, lib, fix)
}
