package build

import (
	"debug/buildinfo"
	"fmt"
	"slices"
	"strings"

	"github.com/plugind/plugind/plugerr"
)

// Difference is one way an artifact was built differently from the
// server. Any difference can make plugin.Open fail ("plugin was built with
// a different version of package ...") or, worse, succeed: Go does not
// compare toolchain versions, so a go1.26.7 plugin loads into a go1.26.8
// server.
type Difference struct {
	What   string // "go version", "-race", "module github.com/x/y"
	Plugin string // the artifact's value ("" for absent)
	Server string // the server's value
}

func (d Difference) String() string {
	return fmt.Sprintf("%s: plugin %s, server %s", d.What, orNone(d.Plugin), orNone(d.Server))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Compatible compares the build information of the artifact at path with
// the host's: Go version, build settings that change compiled code, and
// the version of every module both contain. It cannot see edits inside
// the server's own packages between two builds of the same version.
func Compatible(path string, host HostBuild) ([]Difference, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading build information: %w", err)
	}
	var diffs []Difference
	if bi.GoVersion != host.GoVersion {
		diffs = append(diffs, Difference{What: "go version", Plugin: bi.GoVersion, Server: host.GoVersion})
	}
	theirs := buildSettings(bi)
	for _, key := range append(slices.Clone(flagSettings), envSettings...) {
		a, b := normalSetting(theirs[key]), normalSetting(host.Settings[key])
		if a != b {
			diffs = append(diffs, Difference{What: key, Plugin: a, Server: b})
		}
	}
	theirDeps := deps(bi)
	if bi.Main.Path != "" && bi.Main.Path != host.Module && bi.Main.Version != "" {
		theirDeps[bi.Main.Path] = bi.Main.Version
	}
	var paths []string
	for p := range theirDeps {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		ours, ok := host.Deps[p]
		if p == host.Module {
			// A plugin built in the server's source tree has it as
			// "(devel)": a build of files records no VCS version, while
			// the server's may (go build stamps one in a git checkout).
			// Its packages' source is in the artifact's key instead (the
			// sdk fingerprint, and the tree's path without -trimpath).
			ours, ok = host.ModuleVersion, theirDeps[p] != "(devel)"
		}
		if ok && ours != theirDeps[p] {
			diffs = append(diffs, Difference{What: "module " + p, Plugin: theirDeps[p], Server: ours})
		}
	}
	return diffs, nil
}

// normalSetting makes an absent boolean setting equal to "false".
func normalSetting(v string) string {
	if v == "false" {
		return ""
	}
	return v
}

// incompatible is the error for an artifact with differences.
func incompatible(name string, diffs []Difference) *plugerr.Error {
	parts := make([]string, len(diffs))
	for i, d := range diffs {
		parts[i] = d.String()
	}
	fix := fmt.Sprintf("rebuild it with this server (plugind build %s)", name)
	if slices.ContainsFunc(diffs, func(d Difference) bool { return d.What == "go version" }) {
		fix = "rebuild it with the server's Go toolchain (plugind build " + name + ")"
	}
	return plugerr.New(plugerr.ErrIncompatible, name, nil, "plugin %q was built for a different server: %s; %s", name, strings.Join(parts, "; "), fix)
}
