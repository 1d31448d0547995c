package build

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go/parser"
	"go/token"

	"golang.org/x/mod/modfile"

	"github.com/plugind/plugind/plugerr"
)

// Check runs the checks a source passes before it is built: a folder
// plugin's go.mod agrees with the build module, and its imports are
// provided by the build module.
func (p *Pipeline) Check(src Source) error {
	if p.prebuilt {
		return nil // checked by plugind build, which had the build module
	}
	if err := p.checkPluginModule(src); err != nil {
		return err
	}
	return p.checkImports(src)
}

// checkPluginModule compares the requirements of a folder plugin's own
// go.mod, if it has one, with the versions plugins are built against (the
// build module's go.mod). The plugin is built with the server's versions
// whatever its go.mod says, so a conflict is an error that names it
// rather than a surprise at run time.
func (p *Pipeline) checkPluginModule(src Source) error {
	if src.Kind != KindFolder || len(src.Files) == 0 {
		return nil
	}
	theirs, err := readRequires(filepath.Join(filepath.Dir(src.Files[0]), "go.mod"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: its go.mod cannot be read", src.Name)
	}
	ours, err := readRequires(filepath.Join(p.moduleDir, "go.mod"))
	if err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: the build module's go.mod cannot be read", src.Name)
	}
	var conflicts []string
	for path, v := range theirs {
		if have, ok := ours[path]; ok && have != v {
			conflicts = append(conflicts, fmt.Sprintf("%s %s (the server has %s)", path, v, have))
		}
	}
	if len(conflicts) == 0 {
		return nil
	}
	slices.Sort(conflicts)
	return plugerr.New(plugerr.ErrIncompatible, src.Name, nil,
		"plugin %q requires versions the server does not have: %s; plugins are built with the server's versions: change its go.mod to match",
		src.Name, strings.Join(conflicts, "; "))
}

// checkImports refuses, before the compiler runs, a plugin importing a
// package no module of the build provides: plugins are built with the
// server's modules only, and the go command's own message for this
// ("updates to go.mod needed") does not say so.
func (p *Pipeline) checkImports(src Source) error {
	if src.Kind == KindPrebuilt {
		return nil
	}
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
	fset := token.NewFileSet()
	for _, file := range src.Files {
		af, err := parser.ParseFile(fset, file, nil, parser.ImportsOnly)
		if err != nil {
			return nil // the compiler will say it better
		}
		for _, imp := range af.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			first, _, _ := strings.Cut(path, "/")
			if !strings.Contains(first, ".") || path == "C" {
				continue // the standard library
			}
			if !slices.ContainsFunc(modules, func(m string) bool { return path == m || strings.HasPrefix(path, m+"/") }) {
				return plugerr.New(plugerr.ErrBuild, src.Name, nil, "plugin %q failed to build: it imports %s, which the server was not built with; plugins can import the standard library and the server's modules", src.Name, path)
			}
		}
	}
	return nil
}

// readRequires lists a go.mod's requirements as path -> version.
func readRequires(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := modfile.ParseLax(path, data, nil)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(f.Require))
	for _, r := range f.Require {
		m[r.Mod.Path] = r.Mod.Version
	}
	return m, nil
}
