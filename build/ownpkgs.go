package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
)

// ownPackages digests the packages of d's own module that src imports,
// and those they import in turn: every regular file of their
// directories. A plugin built from d compiles them from d's directory
// (planFor replaces the module by it), so an edit of one must be a new
// artifact, as an edit of the plugin's own files is. "" when src imports
// none. The digest is remembered with the stamps of what it read (a
// file added or removed changes its directory's) and made again when
// one of them changes (see fileStamp, racyWindow).
func (p *Pipeline) ownPackages(src Source, d *declared) (string, error) {
	own := d.file.Module
	if own == nil {
		return "", nil
	}
	imps, _ := imports(src)
	var start []string
	for _, imp := range imps {
		if within(imp, own.Mod.Path) {
			start = append(start, imp)
		}
	}
	if len(start) == 0 {
		return "", nil
	}
	id := d.dir + "\n" + strings.Join(start, "\n")
	p.kmu.Lock()
	r := p.owns[id]
	p.kmu.Unlock()
	if r != nil && r.current() {
		return r.sum, nil
	}
	if p.onOwn != nil {
		p.onOwn(d.dir)
	}
	r = newTreeRead()
	h := sha256.New()
	fset := token.NewFileSet()
	seen := make(map[string]bool)
	for queue := start; len(queue) > 0; {
		pkg := queue[0]
		queue = queue[1:]
		if seen[pkg] {
			continue
		}
		seen[pkg] = true
		rel := strings.TrimPrefix(strings.TrimPrefix(pkg, own.Mod.Path), "/")
		dir := filepath.Join(d.dir, filepath.FromSlash(rel))
		var goFiles []string
		err := r.hashDir(h, dir, pkg, func(file string, data []byte) {
			if !strings.HasSuffix(file, ".go") || strings.HasSuffix(file, "_test.go") {
				return
			}
			goFiles = append(goFiles, file)
			af, err := parser.ParseFile(fset, file, data, parser.ImportsOnly)
			if err != nil {
				return // the compiler will say
			}
			for _, imp := range af.Imports {
				if path := strings.Trim(imp.Path.Value, `"`); within(path, own.Mod.Path) && !seen[path] {
					queue = append(queue, path)
				}
			}
		})
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(h, "%s missing\n", pkg) // the compiler will say
		} else if err != nil {
			return "", err
		}
		// What the package embeds from directories under its own
		// (static/): the directories between are stamped too, so that
		// a file added there is seen.
		emb, err := embedDigest(goFiles, dir, func(file string) error {
			for at := file; at != dir && strings.HasPrefix(at, dir); at = filepath.Dir(at) {
				if err := r.stamp(at); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		if emb != "" {
			fmt.Fprintf(h, "%s embeds %s\n", pkg, emb)
		}
	}
	r.sum = hex.EncodeToString(h.Sum(nil))
	p.kmu.Lock()
	p.owns[id] = r
	p.kmu.Unlock()
	return r.sum, nil
}

// SourceHash is sourceHash of src's files and, for a plugin that imports
// packages of the module it declares its requirements in, of those
// packages (see ownPackages): what a prebuilt-mode Manifest maps to a
// build. It needs no toolchain.
func (p *Pipeline) SourceHash(src Source) (string, error) {
	sh, err := sourceHash(src)
	if err != nil || src.Kind == KindPrebuilt {
		return sh, err
	}
	if emb, err := embedDigest(src.Files, filepath.Dir(src.Files[0]), nil); err != nil {
		return "", err
	} else if emb != "" {
		sh = hashOf("plugind source v1\n" + sh + "\nembedded " + emb)
	}
	own, err := p.ownDigest(src)
	if err != nil || own == "" {
		return sh, err
	}
	return hashOf("plugind source v1\n" + sh + "\nown packages " + own), nil
}

// ownDigest is ownPackages for the module src declares its
// requirements in; "" when there is none, or its go.mod cannot be read
// (the build says why).
func (p *Pipeline) ownDigest(src Source) (string, error) {
	d, err := p.declared(src)
	if err != nil || d == nil {
		return "", nil
	}
	return p.ownPackages(src, d)
}
