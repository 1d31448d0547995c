package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"

	"github.com/plugind/plugind/sdk"
)

// HostBuild is how the running server was built: what every plugin it
// opens must be built with too.
type HostBuild struct {
	GoVersion     string   // runtime.Version()
	Module        string   // the server's main module path
	ModuleVersion string   // its version: "(devel)" when built from a source tree
	Flags         []string // go build flags that change compiled packages
	Env           []string // environment that changes compiled packages
	// Settings are the recorded values of flagSettings and envSettings.
	Settings map[string]string
	// Deps are the modules linked into the server: path -> version, with
	// " => path version" appended for a replaced module.
	Deps map[string]string
	// SDK fingerprints the server's copy of package sdk, which plugins
	// may import: a changed sdk changes every artifact's key, so plugins
	// are rebuilt rather than refused by plugin.Open.
	SDK string
}

// flagSettings are the build settings recorded in build information that
// change how packages compile; a plugin built without the same value fails
// plugin.Open ("built with a different version of package ...").
var flagSettings = []string{"-race", "-msan", "-asan", "-trimpath", "-tags", "-gcflags", "-asmflags", "-pgo"}

// envSettings are recorded environment variables with the same effect.
var envSettings = []string{
	"CGO_ENABLED", "CGO_CFLAGS", "CGO_CPPFLAGS", "CGO_CXXFLAGS", "CGO_LDFLAGS",
	"GOOS", "GOARCH", "GOAMD64", "GOARM", "GOARM64", "GO386", "GOMIPS", "GOMIPS64",
	"GOPPC64", "GORISCV64", "GOWASM", "GOEXPERIMENT",
}

// HostBuildInfo reads the running binary's build information.
func HostBuildInfo() (HostBuild, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return HostBuild{}, errors.New("the server binary carries no build information")
	}
	h := hostBuildFrom(bi)
	h.SDK = sdk.Fingerprint()
	return h, nil
}

func hostBuildFrom(bi *debug.BuildInfo) HostBuild {
	h := HostBuild{
		GoVersion:     runtime.Version(),
		Module:        bi.Main.Path,
		ModuleVersion: bi.Main.Version,
		Settings:      buildSettings(bi),
		Deps:          deps(bi),
	}
	for _, s := range bi.Settings {
		switch {
		case slices.Contains(flagSettings, s.Key):
			switch {
			case s.Value == "true":
				h.Flags = append(h.Flags, s.Key)
			case s.Value == "false", s.Value == "":
			default:
				h.Flags = append(h.Flags, s.Key+"="+s.Value)
			}
		case slices.Contains(envSettings, s.Key):
			h.Env = append(h.Env, s.Key+"="+s.Value)
		}
	}
	return h
}

// buildSettings picks the settings that decide plugin compatibility.
func buildSettings(bi *debug.BuildInfo) map[string]string {
	m := make(map[string]string)
	for _, s := range bi.Settings {
		if slices.Contains(flagSettings, s.Key) || slices.Contains(envSettings, s.Key) {
			m[s.Key] = s.Value
		}
	}
	return m
}

// deps lists bi's modules as path -> version.
func deps(bi *debug.BuildInfo) map[string]string {
	m := make(map[string]string, len(bi.Deps))
	for _, d := range bi.Deps {
		v := d.Version
		if d.Replace != nil {
			v += " => " + d.Replace.Path + " " + d.Replace.Version
		}
		m[d.Path] = v
	}
	return m
}

// Identity is a digest of everything in h that decides whether a plugin
// built for it can be opened by it.
func (h HostBuild) Identity() string {
	sum := sha256.New()
	fmt.Fprintf(sum, "%s\n%s\n%s\n%s\nsdk %s\n", h.GoVersion, h.Module, strings.Join(h.Flags, " "), strings.Join(h.Env, " "), h.SDK)
	return hex.EncodeToString(sum.Sum(nil))
}

// Trimpath reports whether h was built with -trimpath.
func (h HostBuild) Trimpath() bool { return slices.Contains(h.Flags, "-trimpath") }

// sourcePaths is what, besides h.Identity, decides whether a plugin built
// in moduleDir can be opened by h. Without -trimpath the compiler records
// the absolute paths of a package's sources in its export data, whose hash
// plugin.Open compares: package sdk from another checkout, or zerolog from
// another module cache, is "a different version of package" although not
// a byte of its source differs. So the tree the server was compiled from,
// the tree plugins are built in and the module cache belong in the
// artifact key, or a cache shared between checkouts hands out artifacts
// that cannot be opened. (GOROOT does not: the compiler records the
// standard library's paths relative to it.) modCache is GOMODCACHE. With
// -trimpath nothing is recorded and the result is "".
func (h HostBuild) sourcePaths(moduleDir, modCache string) string {
	if h.Trimpath() {
		return ""
	}
	return "compiled " + compiledDir() + "\nmodule " + moduleDir + "\nmodcache " + modCache + "\n"
}

// compiledDir is the directory of this file as the binary records it, or
// "" when that is not an absolute path (built with -trimpath).
func compiledDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return ""
	}
	return filepath.Dir(file)
}

// compiledFrom is where to look first for the server's source tree: the
// directory it was compiled from, when that names a tree of its own. It is
// "" under -trimpath (nothing recorded, and paths make no difference) and
// for a binary built from the module cache (`go install module@version`),
// whose plugins hostModule builds against that same module.
func compiledFrom(host HostBuild) string {
	dir := compiledDir()
	if dir == "" || host.Trimpath() || inModuleCache(host.Module, dir) {
		return ""
	}
	return dir
}

// inModuleCache reports whether dir lies in a module cache's copy of mod.
func inModuleCache(mod, dir string) bool {
	esc, err := module.EscapePath(mod)
	return err == nil && strings.Contains(filepath.ToSlash(dir), "/"+esc+"@")
}

// FindModuleDir finds the source tree of module: the first directory
// holding a go.mod that declares it, walking up from each start.
func FindModuleDir(module string, starts ...string) (string, error) {
	if module == "" {
		return "", errors.New("the server's module path is unknown")
	}
	for _, dir := range starts {
		if dir == "" {
			continue
		}
		dir, err := filepath.Abs(dir)
		if err != nil {
			continue
		}
		for {
			if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modfile.ModulePath(data) == module {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("no source tree of module %s above %s: run plugind from it or set plugins.moduledir", module, strings.Join(starts, " or "))
}

// hashOf is s's SHA-256 in hex.
func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
