package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"

	"github.com/plugind/plugind/plugerr"
)

// plan is the module a plugin that declares requirements is built in:
// the build module's go.mod (the server's versions) with the plugin's
// requirements, replacements and exclusions merged in, every module the
// server links held at the server's version and every module another
// plugin loaded held at the loaded version. It is computed without the go
// command; resolve writes it to the cache and lets the go command
// complete it (downloads, indirect requirements).
type plan struct {
	declared *declared
	process  bool // for a program of its own (see planFor)
	gomod    []byte
	gosum    []byte
	copies   []vendorCopy
	key      string // names the resolved module in the cache
}

// vendorCopy is a vendored module copied into the cache as a module of
// its own (a go.mod naming it, its vendored packages), so that a
// replacement can point at it: the build module is not the plugin's, so
// -mod=vendor cannot read the plugin's vendor directory.
type vendorCopy struct {
	mod      module.Version
	vendor   string   // the plugin's vendor directory
	packages []string // import paths
	dir      string   // the copy
}

// planFor plans src's build module from d, the module that declares its
// requirements (see module), and the build module (the server's, see
// buildModule); p.host says what the server links; reg, if not nil, what
// other plugins loaded. With process, the plan is for a program of its
// own (an isolated plugin): nothing it links is shared, so neither the
// server's versions nor the loaded ones hold it; the go command's
// selection stands.
func (p *Pipeline) planFor(src Source, d *declared, reg *Registry, process bool) (*plan, error) {
	name, host := src.Name, p.host
	base, err := p.buildModule()
	if err == nil {
		err = base.modErr
	}
	if err != nil {
		return nil, plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: the build module's go.mod cannot be read", name)
	}
	// Parsed anew: the plan is made by editing it.
	f, err := modfile.Parse("go.mod", base.mod, nil)
	if err != nil {
		return nil, plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: the build module's go.mod cannot be parsed", name)
	}
	if f.Module == nil {
		return nil, plugerr.New(plugerr.ErrBuild, name, nil, "plugin %q: the build module's go.mod has no module line", name)
	}
	baseSum := base.sum
	mainPath := f.Module.Mod.Path
	linked := func(path string) (string, bool) {
		if process {
			return "", false
		}
		if v, ok := host.Deps[path]; ok {
			return versionOf(v), true
		}
		if path == host.Module && path != mainPath {
			return host.ModuleVersion, true
		}
		return "", false
	}
	pl := &plan{declared: d, process: process}
	var pinSums []string

	// hold returns want, a module's version in the plan, raised to the
	// version loaded in the process where that is higher (a requirement
	// is a minimum); a conflict where the loaded one is lower, or is
	// another build (a vendored copy).
	hold := func(path, want string) (string, error) {
		if reg == nil || process {
			return want, nil
		}
		l, ok := reg.Lookup(path)
		if !ok {
			return want, nil
		}
		lv := versionOf(l.Version)
		switch {
		case l.Version != lv || want != versionOf(want): // a vendored copy: only that copy will do
			if sameBuild(l.Version, want) {
				return want, nil
			}
			return "", conflictError(name, path, want, l)
		case newer(lv, want):
			pinSums = append(pinSums, l.sums...)
			return lv, nil
		case newer(want, lv):
			return "", conflictError(name, path, want, l)
		}
		return want, nil
	}

	if missing := d.missingSums(); len(missing) > 0 {
		return nil, plugerr.New(plugerr.ErrDependency, name, nil,
			"plugin %q: %s/go.sum has no checksum for %s; run %q (plugind never edits go.mod or go.sum)",
			name, d.shown, strings.Join(missing, ", "), d.fix("go mod download "+strings.Join(missing, " ")))
	}

	for _, r := range d.file.Require {
		path, v := r.Mod.Path, r.Mod.Version
		if path == mainPath {
			continue // the server's source tree: plugins get it as it is
		}
		if hv, ok := linked(path); ok {
			if newer(v, hv) {
				return nil, plugerr.New(plugerr.ErrDependency, name, nil,
					"plugin %q requires %s %s, but the server links %s; modules the server links stay at its versions: require %s (%s), or rebuild the server with %s",
					name, path, v, hv, hv, d.fix("go get "+path+"@"+hv), v)
			}
			continue // the build module holds the server's version
		}
		if d.isVendored(path) {
			continue // below
		}
		for _, have := range f.Require {
			if have.Mod.Path == path && newer(have.Mod.Version, v) {
				v = have.Mod.Version
			}
		}
		if v, err = hold(path, v); err != nil {
			return nil, err
		}
		if err := f.AddRequire(path, v); err != nil {
			return nil, plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: %s/go.mod: bad requirement %s", name, d.shown, path)
		}
	}
	for _, r := range d.file.Replace {
		if _, ok := linked(r.Old.Path); ok {
			return nil, plugerr.New(plugerr.ErrDependency, name, nil,
				"plugin %q: %s/go.mod replaces %s, which the server links; modules the server links stay at its versions: remove the replace directive",
				name, d.shown, r.Old.Path)
		}
		to := r.New.Path
		if r.New.Version == "" && !filepath.IsAbs(to) {
			to = filepath.Join(d.dir, filepath.FromSlash(to))
		}
		if err := f.AddReplace(r.Old.Path, r.Old.Version, to, r.New.Version); err != nil {
			return nil, plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: %s/go.mod: bad replacement of %s", name, d.shown, r.Old.Path)
		}
	}
	for _, x := range d.file.Exclude {
		if _, ok := linked(x.Mod.Path); !ok {
			_ = f.AddExclude(x.Mod.Path, x.Mod.Version)
		}
	}
	for _, v := range d.vendor {
		path := v.mod.Path
		if hv, ok := linked(path); ok {
			if newer(v.mod.Version, hv) {
				return nil, plugerr.New(plugerr.ErrDependency, name, nil,
					"plugin %q vendors %s %s, but the server links %s; modules the server links stay at its versions: require %s and vendor again (%s)",
					name, path, v.mod.Version, hv, hv, d.fix("go get "+path+"@"+hv+" && go mod vendor"))
			}
			continue
		}
		if d.replaced(path) {
			continue
		}
		sum, err := p.vendorHash(filepath.Join(d.dir, "vendor"), v.mod.Path, v.packages)
		if err != nil {
			return nil, plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: its vendor directory cannot be read", name)
		}
		esc, err := module.EscapePath(path)
		if err != nil {
			return nil, plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: vendor/modules.txt: bad module path %s", name, path)
		}
		c := vendorCopy{mod: v.mod, vendor: filepath.Join(d.dir, "vendor"), packages: v.packages,
			dir: filepath.Join(p.cacheDir, "vendor", filepath.FromSlash(esc)+"@"+v.mod.Version+"-"+sum[:12])}
		if _, err := hold(path, v.mod.Version+" => "+c.dir+" "); err != nil {
			return nil, err
		}
		pl.copies = append(pl.copies, c)
		err = f.AddRequire(path, v.mod.Version)
		if err == nil {
			err = f.AddReplace(path, "", c.dir, "")
		}
		if err != nil {
			return nil, plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: vendor/modules.txt: bad module %s", name, path)
		}
	}

	imps, _ := imports(src)
	modules := []string{mainPath}
	if own := d.file.Module; own != nil && own.Mod.Path != mainPath {
		// The folder's own packages: its module, replaced by its
		// directory, once.
		modules = append(modules, own.Mod.Path)
		imported := slices.ContainsFunc(imps, func(imp string) bool { return within(imp, own.Mod.Path) })
		if imported && !slices.ContainsFunc(f.Replace, func(r *modfile.Replace) bool { return r.Old.Path == own.Mod.Path }) {
			err := f.AddRequire(own.Mod.Path, "v0.0.0")
			if err == nil {
				err = f.AddReplace(own.Mod.Path, "", d.dir, "")
			}
			if err != nil {
				return nil, plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: its module path %s cannot be used", name, own.Mod.Path)
			}
		}
	}
	for _, r := range f.Require {
		modules = append(modules, r.Mod.Path)
	}
	if imp := unprovided(imps, modules); imp != "" {
		return nil, plugerr.New(plugerr.ErrDependency, name, nil,
			"plugin %q imports %s, which neither the server nor %s/go.mod provides: run %q",
			name, imp, d.shown, d.fix("go get "+imp))
	}

	f.Cleanup()
	if pl.gomod, err = f.Format(); err != nil {
		return nil, plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: cannot write its build module", name)
	}
	pl.gosum = mergeSums(baseSum, d.sum, []byte(strings.Join(pinSums, "\n")))
	h := sha256.New()
	fmt.Fprintf(h, "plugind build module v1\nprocess %v\n%d\n%s%d\n%s", process, len(pl.gomod), pl.gomod, len(pl.gosum), pl.gosum)
	for _, imp := range imps {
		fmt.Fprintf(h, "import %s\n", imp)
	}
	pl.key = hex.EncodeToString(h.Sum(nil))
	return pl, nil
}

// conflictError is the error for plugin name needing module path at
// version want while l is loaded.
func conflictError(name, path, want string, l Loaded) *plugerr.Error {
	return ConflictError(name, []Conflict{{Module: path, Want: want, Loaded: l}})
}

// ConflictError is the error for plugin name, whose artifact carries
// modules at versions other than those loaded (Registry.Check).
func ConflictError(name string, conflicts []Conflict) *plugerr.Error {
	parts := make([]string, len(conflicts))
	others := false // a conflict with another plugin, not only its own running version
	for i, c := range conflicts {
		who := fmt.Sprintf("plugin %q", c.Loaded.Plugin)
		if c.Loaded.Plugin == name {
			who = "its running version"
		} else {
			others = true
		}
		parts[i] = fmt.Sprintf("%s %s, but %s loaded %s", c.Module, ShownVersion(c.Want), who, ShownVersion(c.Loaded.Version))
	}
	if !others {
		// Its own go.mod changed under the running server: there is no
		// second go.mod to align.
		return plugerr.New(plugerr.ErrDependency, name, nil,
			"plugin %q needs %s; Go allows one version of a package per process: restart the server to load the new version, or run the plugin in its own process (isolation = \"process\")",
			name, strings.Join(parts, "; "))
	}
	return plugerr.New(plugerr.ErrDependency, name, nil,
		"plugin %q needs %s; Go allows one version of a package per process: require the same version in both go.mod files, restart the server, or run one of them in its own process (isolation = \"process\")",
		name, strings.Join(parts, "; "))
}

// sameBuild reports whether two build-information versions name the
// same build of a module: build information writes a directory
// replacement's version as "(devel)", a plan as nothing.
func sameBuild(a, b string) bool {
	norm := func(v string) string { return strings.TrimSpace(strings.TrimSuffix(v, "(devel)")) }
	return norm(a) == norm(b)
}

// ShownVersion is a build-information version for a client or a
// listing: a replacement's path is the server's business.
func ShownVersion(v string) string {
	if version, _, replaced := strings.Cut(v, " => "); replaced {
		return version + " (replaced, or vendored)"
	}
	return v
}

// mergeSums joins go.sum files: every line once, sorted.
func mergeSums(files ...[]byte) []byte {
	var lines []string
	for _, f := range files {
		for line := range strings.Lines(string(f)) {
			if line = strings.TrimSpace(line); line != "" {
				lines = append(lines, line)
			}
		}
	}
	slices.Sort(lines)
	lines = slices.Compact(lines)
	if len(lines) == 0 {
		return nil
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// vendorRead is what vendorHash digested of one module's packages in a
// vendor directory.
type vendorRead struct {
	packages []string
	*treeRead
}

// vendorHash digests the vendored files of packages, module mod's in the
// vendor directory vendor. A plugin that vendors asks for it on every
// Key: the digest is remembered with the stamps of the packages'
// directories (a file added, removed or renamed changes its directory's)
// and files, and made again when one of them changes (see fileStamp,
// racyWindow).
func (p *Pipeline) vendorHash(vendor, mod string, packages []string) (string, error) {
	id := vendor + "\n" + mod
	p.kmu.Lock()
	r := p.vendors[id]
	p.kmu.Unlock()
	if r != nil && slices.Equal(r.packages, packages) && r.current() {
		return r.sum, nil
	}
	if p.onVendor != nil {
		p.onVendor(vendor)
	}
	r = &vendorRead{packages: packages, treeRead: newTreeRead()}
	h := sha256.New()
	for _, pkg := range packages {
		if err := r.hashDir(h, filepath.Join(vendor, filepath.FromSlash(pkg)), pkg, nil); err != nil {
			return "", err
		}
	}
	r.sum = hex.EncodeToString(h.Sum(nil))
	p.kmu.Lock()
	p.vendors[id] = r
	p.kmu.Unlock()
	return r.sum, nil
}

// copyVendored makes c's copy unless it exists: the vendored packages of
// c.mod under one directory with a go.mod naming the module.
func copyVendored(c vendorCopy) error {
	if fileExists(filepath.Join(c.dir, "go.mod")) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(c.dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(c.dir), ".vendor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, pkg := range c.packages {
		rel, ok := strings.CutPrefix(pkg, c.mod.Path)
		if !ok {
			continue
		}
		from := filepath.Join(c.vendor, filepath.FromSlash(pkg))
		to := filepath.Join(tmp, filepath.FromSlash(strings.TrimPrefix(rel, "/")))
		if err := os.MkdirAll(to, 0o755); err != nil {
			return err
		}
		entries, err := os.ReadDir(from)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.Type().IsRegular() {
				continue
			}
			data, err := os.ReadFile(filepath.Join(from, e.Name()))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o644); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte("module "+modfile.AutoQuote(c.mod.Path)+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, c.dir); err != nil && !fileExists(filepath.Join(c.dir, "go.mod")) {
		return err
	}
	return nil
}

// resolve writes p's module into the cache unless it is there, and lets
// the go command complete it for files: indirect requirements, go.sum
// lines, downloads (logged, through the go command's own machinery, so
// GOPROXY, GOPRIVATE, GONOSUMDB and checksum verification apply). It
// refuses a module whose resolution raised a module the server links.
// It returns the go.mod to build with (-modfile).
func (b *builder) resolve(ctx context.Context, name string, p *plan, files []string, log zerolog.Logger) (string, error) {
	dir := filepath.Join(b.cacheDir, "modules", p.key[:24])
	if fileExists(filepath.Join(dir, "resolved")) {
		return filepath.Join(dir, "go.mod"), nil
	}
	for _, c := range p.copies {
		if err := copyVendored(c); err != nil {
			return "", plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: cannot copy its vendored module %s", name, c.mod.Path)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: cannot prepare its build module", name)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".resolve-")
	if err != nil {
		return "", plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: cannot prepare its build module", name)
	}
	defer os.RemoveAll(tmp)
	modPath := filepath.Join(tmp, "go.mod")
	err = os.WriteFile(modPath, p.gomod, 0o644)
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, "go.sum"), p.gosum, 0o644)
	}
	if err != nil {
		return "", plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: cannot prepare its build module", name)
	}
	if n := b.toDownload(p.declared); n > 0 {
		unit := "modules"
		if n == 1 {
			unit = "module"
		}
		log.Info().Int("modules", n).Msgf("%s: downloading %d %s", name, n, unit)
	}
	args := append([]string{"list", "-modfile=" + modPath, "-mod=mod", "-deps", "-f", "{{if .Error}}{{.Error}}{{end}}"}, b.host.Flags...)
	out, n, err := runGo(ctx, b.goCmd, b.moduleDir, b.env(), log, append(args, files...)...)
	if n > 0 {
		log.Info().Int("modules", n).Msg("modules downloaded")
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("resolving modules exceeded %s: %w", b.timeout, ctx.Err())
		}
		e := plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: its modules cannot be resolved", name)
		e.Output = b.relative(out)
		return "", e
	}
	if !p.process {
		if err := b.checkRaised(ctx, name, p, modPath); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "resolved"), nil, 0o644); err != nil {
		return "", plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: cannot prepare its build module", name)
	}
	if err := os.Rename(tmp, dir); err != nil && !fileExists(filepath.Join(dir, "resolved")) {
		return "", plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: cannot store its build module", name)
	}
	return filepath.Join(dir, "go.mod"), nil
}

// checkRaised refuses a resolved module (go.mod at modPath) in which a
// module the server links is at another version than the server's: a
// requirement of the plugin's raised it.
func (b *builder) checkRaised(ctx context.Context, name string, p *plan, modPath string) error {
	data, err := os.ReadFile(modPath)
	if err != nil {
		return plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: its build module cannot be read", name)
	}
	f, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil {
		return plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: its build module cannot be parsed", name)
	}
	for _, r := range f.Require {
		hv, ok := b.host.Deps[r.Mod.Path]
		if !ok || versionOf(hv) == r.Mod.Version {
			continue
		}
		by := b.raisedBy(ctx, modPath, r.Mod)
		if by != "" {
			by = " (through " + by + ")"
		}
		return plugerr.New(plugerr.ErrDependency, name, nil,
			"plugin %q: its requirements raise %s from the server's %s to %s%s; modules the server links stay at its versions: require versions of its dependencies that need at most %s, or rebuild the server with %s",
			name, r.Mod.Path, versionOf(hv), r.Mod.Version, by, versionOf(hv), r.Mod.Version)
	}
	return nil
}

// raisedBy names the module whose requirement selected m, from the
// module graph; "" if it cannot tell.
func (b *builder) raisedBy(ctx context.Context, modPath string, m module.Version) string {
	out, _, err := runGo(ctx, b.goCmd, b.moduleDir, b.env(), zerolog.Nop(), "mod", "graph", "-modfile="+modPath)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(out) {
		// The main module's own requirement (no @version) follows
		// from the others once the go command settled it.
		if from, to, ok := strings.Cut(strings.TrimSpace(line), " "); ok && to == m.Path+"@"+m.Version && strings.Contains(from, "@") {
			return from
		}
	}
	return ""
}

// toDownload counts the modules d requires whose content the module
// cache lacks: what the go command is about to download for the plugin
// (the server's own modules are in it already, but for their go.mod
// files in a fresh cache).
func (b *builder) toDownload(d *declared) int {
	if b.modCache == "" {
		return 0
	}
	n := 0
	for _, r := range d.file.Require {
		esc, err := module.EscapePath(r.Mod.Path)
		if err != nil || d.replaced(r.Mod.Path) || d.isVendored(r.Mod.Path) {
			continue
		}
		if !fileExists(filepath.Join(b.modCache, "cache", "download", filepath.FromSlash(esc), "@v", r.Mod.Version+".zip")) {
			n++
		}
	}
	return n
}
