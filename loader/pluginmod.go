package loader

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
)

// checkPluginModule compares the requirements of a folder plugin's own
// go.mod, if it has one, with the versions plugins are built against (the
// build module's go.mod). The plugin is built with the server's versions
// whatever its go.mod says, so a conflict is an error that names it
// rather than a surprise at run time.
func (l *Loader) checkPluginModule(src Source) error {
	if src.Kind != KindFolder || len(src.Files) == 0 {
		return nil
	}
	theirs, err := readRequires(filepath.Join(filepath.Dir(src.Files[0]), "go.mod"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return newError(ErrBuild, src.Name, err, "plugin %q: its go.mod cannot be read", src.Name)
	}
	ours, err := readRequires(filepath.Join(l.moduleDir, "go.mod"))
	if err != nil {
		return newError(ErrBuild, src.Name, err, "plugin %q: the build module's go.mod cannot be read", src.Name)
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
	return newError(ErrIncompatible, src.Name, nil,
		"plugin %q requires versions the server does not have: %s; plugins are built with the server's versions: change its go.mod to match",
		src.Name, strings.Join(conflicts, "; "))
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
