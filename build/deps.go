package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
)

// declared is the module a plugin declares its requirements in: lib/go.mod
// (the plugin path's) for single files and folders without one, a
// folder's own go.mod otherwise. plugind reads it and its go.sum, and never
// writes either.
type declared struct {
	dir    string // the directory holding go.mod
	mod    []byte // go.mod as read
	shown  string // dir as the user knows it, for messages: "lib", "lib/src/shop"
	file   *modfile.File
	sum    []byte
	hashes map[string]bool // "path version" and "path version/go.mod" with a go.sum line
	vendor []vendored      // a folder's vendor/modules.txt; nil without one
}

// vendored is one module of a vendor directory.
type vendored struct {
	mod      module.Version
	packages []string // import paths
}

// readDeclared reads the module that declares src's requirements. It
// returns nil when there is none, or when it requires nothing: such a
// plugin builds in the server's module as it is.
func readDeclared(src Source, srcDir string) (*declared, error) {
	pluginPath := filepath.Dir(srcDir)
	dir := pluginPath
	if src.Kind == KindFolder {
		if folder := filepath.Dir(src.Files[0]); fileExists(filepath.Join(folder, "go.mod")) {
			dir = folder
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	shown := filepath.Base(pluginPath)
	if rel, err := filepath.Rel(pluginPath, dir); err == nil && rel != "." {
		shown = filepath.ToSlash(filepath.Join(shown, rel))
	}
	f, err := modfile.Parse(filepath.Join(shown, "go.mod"), data, nil)
	if err != nil {
		return nil, err
	}
	d := &declared{dir: dir, mod: data, shown: shown, file: f, hashes: make(map[string]bool)}
	if d.vendor, err = readVendor(filepath.Join(dir, "vendor", "modules.txt")); err != nil {
		return nil, err
	}
	if len(f.Require) == 0 && len(f.Replace) == 0 && d.vendor == nil {
		return nil, nil
	}
	d.sum, err = os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for line := range strings.Lines(string(d.sum)) {
		if f := strings.Fields(line); len(f) == 3 {
			d.hashes[f[0]+" "+f[1]] = true
		}
	}
	return d, nil
}

// readVendor parses a vendor/modules.txt; nil, nil when there is none.
func readVendor(path string) ([]vendored, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var mods []vendored
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "## "), line == "":
		case strings.HasPrefix(line, "# "):
			f := strings.Fields(line[2:])
			if len(f) < 2 || f[1] == "=>" {
				continue // a replacement without a version: not vendorable here
			}
			mods = append(mods, vendored{mod: module.Version{Path: f[0], Version: f[1]}})
		case len(mods) > 0:
			mods[len(mods)-1].packages = append(mods[len(mods)-1].packages, line)
		}
	}
	return mods, nil
}

// fix is the command a user runs in d's directory.
func (d *declared) fix(args string) string {
	return fmt.Sprintf("cd %s && %s", d.shown, args)
}

// replaced reports whether d replaces path with a directory of its own.
func (d *declared) replaced(path string) bool {
	return slices.ContainsFunc(d.file.Replace, func(r *modfile.Replace) bool {
		return r.Old.Path == path && r.New.Version == ""
	})
}

// missingSums lists d's requirements without a go.sum line: the go.mod
// hash of every one, and the content hash of the direct ones.
func (d *declared) missingSums() []string {
	var missing []string
	for _, r := range d.file.Require {
		if d.replaced(r.Mod.Path) || d.isVendored(r.Mod.Path) {
			continue
		}
		if !d.hashes[r.Mod.Path+" "+r.Mod.Version+"/go.mod"] || (!r.Indirect && !d.hashes[r.Mod.Path+" "+r.Mod.Version]) {
			missing = append(missing, r.Mod.Path)
		}
	}
	return missing
}

func (d *declared) isVendored(path string) bool {
	return slices.ContainsFunc(d.vendor, func(v vendored) bool { return v.mod.Path == path })
}

// provides reports whether some module d requires, or d's own, holds
// package path.
func (d *declared) provides(path string) bool {
	within := func(m string) bool { return path == m || strings.HasPrefix(path, m+"/") }
	if d.file.Module != nil && within(d.file.Module.Mod.Path) {
		return true
	}
	return slices.ContainsFunc(d.file.Require, func(r *modfile.Require) bool { return within(r.Mod.Path) })
}

// imports lists the packages src imports, sorted and without repeats.
func imports(src Source) []string {
	fset := token.NewFileSet()
	var out []string
	for _, file := range src.Files {
		af, err := parser.ParseFile(fset, file, nil, parser.ImportsOnly)
		if err != nil {
			continue // the compiler will say it better
		}
		for _, imp := range af.Imports {
			if path := strings.Trim(imp.Path.Value, `"`); path != "C" {
				out = append(out, path)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// downloads logs the go command's "go: downloading M V" lines as they
// come, with the plugin's name; every other line goes to out.
type downloads struct {
	log  zerolog.Logger
	out  *bytes.Buffer
	part []byte
	n    int
}

func (w *downloads) Write(p []byte) (int, error) {
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.line(string(w.part[:i]))
		w.part = w.part[i+1:]
	}
}

func (w *downloads) line(s string) {
	if rest, ok := strings.CutPrefix(s, "go: downloading "); ok {
		w.n++
		path, version, _ := strings.Cut(rest, " ")
		w.log.Info().Str("module", path).Str("module_version", version).Msg("downloading module")
		return
	}
	w.out.WriteString(s)
	w.out.WriteByte('\n')
}

func (w *downloads) flush() {
	if len(w.part) > 0 {
		w.line(string(w.part))
		w.part = nil
	}
}

var _ io.Writer = (*downloads)(nil)

// runGo runs the go command in dir with env, logging downloads.
func runGo(ctx context.Context, goCmd, dir string, env []string, log zerolog.Logger, args ...string) (string, int, error) {
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = dir
	cmd.Env = env
	var out bytes.Buffer
	w := &downloads{log: log, out: &out}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	w.flush()
	return out.String(), w.n, err
}
