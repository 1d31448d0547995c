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
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
)

// declared is the module a plugin declares its requirements in: lib/go.mod
// (the plugin path's) for single files and folders without one, a
// folder's own go.mod otherwise. plugind reads it and its go.sum, and never
// writes either. One is shared by every load that asks for it while its
// files are unchanged (see Pipeline.declared): nothing writes to it after
// parseDeclared.
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

// declaredDir is the directory of the go.mod that declares src's
// requirements, if there is one: a folder plugin's own directory when it
// holds a go.mod, else the plugin path (the parent of srcDir).
func declaredDir(src Source, srcDir string) string {
	if src.Kind == KindFolder {
		if folder := filepath.Dir(src.Files[0]); fileExists(filepath.Join(folder, "go.mod")) {
			return folder
		}
	}
	return filepath.Dir(srcDir)
}

// declaredFiles are the files of the module in dir that plugind reads:
// go.mod, go.sum and vendor/modules.txt.
func declaredFiles(dir string) [3]string {
	return [3]string{filepath.Join(dir, "go.mod"), filepath.Join(dir, "go.sum"), filepath.Join(dir, "vendor", "modules.txt")}
}

// declaredRead is what Pipeline.declared read from a directory: the
// stamps of its declaredFiles, taken at at, before they were read, and
// the module they declare (nil for none) or why go.mod does not parse.
type declaredRead struct {
	at     time.Time
	stamps [3]fileStamp
	d      *declared
	err    error
}

// current reports whether r still stands for files with these stamps:
// they are the ones r was read with, and were written long enough before
// that a write since would have changed them (see racyWindow).
func (r *declaredRead) current(stamps [3]fileStamp) bool {
	return unchanged(r.stamps[:], stamps[:], r.at)
}

// declared is the module that declares src's requirements (see
// parseDeclared; nil when there is none). Check, Key and Sums each ask
// for it on every load, and for a plugin that failed on every request:
// it is read once and remembered by directory with its files' stamps
// (see fileStamp), and read again when one of them changes. A go.mod
// that does not parse is remembered as such; a file that cannot be read
// is not remembered.
func (p *Pipeline) declared(src Source) (*declared, error) {
	dir := declaredDir(src, p.src.dir)
	paths := declaredFiles(dir)
	at := time.Now()
	var stamps [3]fileStamp
	for i, path := range paths {
		s, err := stampFile(path)
		if err != nil {
			return nil, err
		}
		stamps[i] = s
	}
	if !stamps[0].exists() { // no go.mod
		p.kmu.Lock()
		delete(p.decls, dir)
		p.kmu.Unlock()
		return nil, nil
	}
	p.kmu.Lock()
	r, ok := p.decls[dir]
	p.kmu.Unlock()
	if ok && r.current(stamps) {
		return r.d, r.err
	}
	if p.onDeclared != nil {
		p.onDeclared(dir)
	}
	var files [3][]byte
	for i, path := range paths {
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) && i == 0 {
			return nil, nil // removed since it was stamped
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		files[i] = data
	}
	r = &declaredRead{at: at, stamps: stamps}
	r.d, r.err = parseDeclared(dir, filepath.Dir(p.src.dir), files[0], files[1], files[2])
	p.kmu.Lock()
	p.decls[dir] = r
	p.kmu.Unlock()
	return r.d, r.err
}

// parseDeclared parses the module in dir, under the plugin path
// pluginPath, from its go.mod, go.sum and vendor/modules.txt (nil: none).
// A module that requires nothing is a module all the same: its own
// packages are the plugin's to import (see Pipeline.module).
func parseDeclared(dir, pluginPath string, mod, sum, vendor []byte) (*declared, error) {
	shown := filepath.Base(pluginPath)
	if rel, err := filepath.Rel(pluginPath, dir); err == nil && rel != "." {
		shown = filepath.ToSlash(filepath.Join(shown, rel))
	}
	f, err := modfile.Parse(filepath.Join(shown, "go.mod"), mod, nil)
	if err != nil {
		return nil, err
	}
	d := &declared{dir: dir, mod: mod, shown: shown, file: f, sum: sum, hashes: make(map[string]bool), vendor: parseVendor(vendor)}
	for line := range strings.Lines(string(d.sum)) {
		if f := strings.Fields(line); len(f) == 3 {
			d.hashes[f[0]+" "+f[1]] = true
		}
	}
	return d, nil
}

// parseVendor parses a vendor/modules.txt; nil for none.
func parseVendor(data []byte) []vendored {
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
	return mods
}

// empty reports whether d requires, replaces and vendors nothing: a
// plugin that imports none of d's own packages builds in the server's
// module as it is (see Pipeline.module).
func (d *declared) empty() bool {
	return len(d.file.Require) == 0 && len(d.file.Replace) == 0 && d.vendor == nil
}

// ownImported reports whether imps, a plugin's imports, has a package of
// d's own module, which only d's directory holds. A module named as the
// build module (mainPath) is that module, whose packages the build has.
func (d *declared) ownImported(imps []string, mainPath string) bool {
	own := d.file.Module
	if own == nil || own.Mod.Path == mainPath {
		return false
	}
	return slices.ContainsFunc(imps, func(imp string) bool { return within(imp, own.Mod.Path) })
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

// imports lists the packages src imports, sorted and without repeats,
// and reports whether every file parsed: the compiler says better what
// is wrong with one that does not.
func imports(src Source) (paths []string, parsed bool) {
	fset := token.NewFileSet()
	parsed = true
	for _, file := range src.Files {
		af, err := parser.ParseFile(fset, file, nil, parser.ImportsOnly)
		if err != nil {
			parsed = false
			continue
		}
		for _, imp := range af.Imports {
			if path := strings.Trim(imp.Path.Value, `"`); path != "C" {
				paths = append(paths, path)
			}
		}
	}
	slices.Sort(paths)
	return slices.Compact(paths), parsed
}

// within reports whether package path is in module mod.
func within(path, mod string) bool { return path == mod || strings.HasPrefix(path, mod+"/") }

// unprovided is the first package of imps, import paths, that is outside
// the standard library and in none of modules; "" if there is none.
func unprovided(imps, modules []string) string {
	for _, imp := range imps {
		if first, _, _ := strings.Cut(imp, "/"); !strings.Contains(first, ".") {
			continue // the standard library
		}
		if !slices.ContainsFunc(modules, func(m string) bool { return within(imp, m) }) {
			return imp
		}
	}
	return ""
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
