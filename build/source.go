package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/plugind/plugind/plugerr"
)

// Kind says how a plugin's source is laid out.
type Kind string

const (
	KindFile   Kind = "file"   // SRC/NAME.go
	KindFolder Kind = "folder" // SRC/NAME/*.go
	// KindPrebuilt is prestd's SRC/../NAME.so with no source: loaded as
	// it is, after the compatibility check, never rebuilt.
	KindPrebuilt Kind = "prebuilt"
)

// Source is one plugin's source on disk.
type Source struct {
	Name  string
	Kind  Kind
	Files []string // absolute paths, sorted by name
	// Copy is which copy of the plugin this is: 0, the plugin itself, or
	// 1 to MaxCopies-1, one of the copies [plugin.NAME] copies asks for
	// (see CopyKey). A copy is built with a package path, and globals, of
	// its own; its key derives from the plugin's.
	Copy int
}

// MaxCopies bounds [plugin.NAME] copies.
const MaxCopies = 64

// CopyKey is the content address of copy n of the plugin whose artifact's
// key is k: k itself for copy 0, so that a plugin without copies keeps
// the artifact it always had, and a hash of k and n for the others. It
// derives from k alone, so prebuilt mode finds the copies of what
// `plugind build` recorded.
func CopyKey(k string, n int) string {
	if n == 0 {
		return k
	}
	return hashOf(fmt.Sprintf("plugind copy v1\n%s\n%d\n", k, n))
}

// sourceFinder locates and reads plugin sources in one directory.
type sourceFinder struct {
	dir  string        // absolute source directory
	ctxt build.Context // selects a folder's files as the go command would
}

func newSourceFinder(dir string, h HostBuild) (sourceFinder, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return sourceFinder{}, fmt.Errorf("plugin source directory: %w", err)
	}
	ctxt := build.Default
	for _, f := range h.Flags {
		if tags, ok := strings.CutPrefix(f, "-tags="); ok {
			ctxt.BuildTags = strings.Split(tags, ",")
		}
	}
	return sourceFinder{dir: abs, ctxt: ctxt}, nil
}

// find returns the source of the plugin name, which must be valid or
// name a middleware (MiddlewareName). It is where Ignored names are
// refused: every way to a plugin passes here. The folder SRC/middlewares
// is never an endpoint plugin.
func (f sourceFinder) find(name string) (Source, error) {
	base, isMiddleware := MiddlewareFile(name)
	if !isMiddleware {
		base = name
	}
	if !ValidName(base) || Ignored(base) {
		return Source{}, plugerr.New(plugerr.ErrNotFound, name, nil, "plugin %q not found", name)
	}
	file := filepath.Join(f.dir, name+".go")
	folder := filepath.Join(f.dir, name)
	fi, ferr := os.Stat(file)
	di, derr := os.Stat(folder)
	isFile := ferr == nil && fi.Mode().IsRegular()
	isFolder := derr == nil && di.IsDir() && name != MiddlewareDir
	switch {
	case isFile && isFolder:
		return Source{}, plugerr.New(plugerr.ErrBuild, name, nil, "plugin %q is ambiguous: both %s.go and folder %s/ exist; remove one", name, name, name)
	case isFile:
		return Source{Name: name, Kind: KindFile, Files: []string{file}}, nil
	case isFolder:
		files, err := f.folderFiles(folder)
		if err != nil {
			return Source{}, plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: cannot read its folder", name)
		}
		if len(files) == 0 {
			return Source{}, plugerr.New(plugerr.ErrNotFound, name, nil, "plugin %q not found: its folder has no Go files", name)
		}
		return Source{Name: name, Kind: KindFolder, Files: files}, nil
	}
	for _, err := range []error{ferr, derr} {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Source{}, plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: cannot read its source", name)
		}
	}
	so := filepath.Join(filepath.Dir(f.dir), name+".so")
	if fi, err := os.Stat(so); err == nil && fi.Mode().IsRegular() {
		return Source{Name: name, Kind: KindPrebuilt, Files: []string{so}}, nil
	}
	return Source{}, plugerr.New(plugerr.ErrNotFound, name, nil, "plugin %q not found", name)
}

// folderFiles lists the files the go command would compile in dir:
// no tests, build constraints applied. Explicit file builds ignore
// constraints, so the filtering happens here.
func (f sourceFinder) folderFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		ok, err := f.ctxt.MatchFile(dir, n)
		if err != nil {
			return nil, err
		}
		if ok {
			files = append(files, filepath.Join(dir, n))
		}
	}
	return files, nil // ReadDir sorts by name
}

// discover lists the plugins in the source directory, and the entries
// whose names cannot be plugin names. With sub (MiddlewareDir) it lists
// those in SRC/sub instead, named sub/NAME, and prebuilt libraries in
// SRC/../sub; a missing SRC/sub holds none.
func (f sourceFinder) discover(sub string) (found []Source, skipped []string, err error) {
	prefix := ""
	if sub != "" {
		prefix = sub + "/"
	}
	entries, err := os.ReadDir(filepath.Join(f.dir, sub))
	if sub != "" && errors.Is(err, fs.ErrNotExist) {
		entries, err = nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") {
			continue
		}
		name, isGo := strings.CutSuffix(n, ".go")
		// A folder, or a link to one: the go command builds through it.
		dir := e.IsDir()
		if e.Type()&fs.ModeSymlink != 0 {
			fi, err := os.Stat(filepath.Join(f.dir, sub, n))
			dir = err == nil && fi.IsDir()
		}
		if !dir && (!isGo || strings.HasSuffix(n, "_test.go")) {
			continue // not a plugin source: go.mod, README, a test
		}
		if dir {
			name = n
		}
		if !ValidName(name) {
			skipped = append(skipped, prefix+n)
			continue
		}
		name = prefix + name
		if slices.ContainsFunc(found, func(s Source) bool { return s.Name == name }) {
			continue
		}
		s, err := f.find(name)
		if err != nil {
			if errors.Is(err, plugerr.ErrNotFound) {
				continue // a folder without Go files, an Ignored name, SRC/middlewares
			}
			return found, skipped, err
		}
		found = append(found, s)
	}
	// prestd's prebuilt libraries, where no source has the name.
	sos, _ := filepath.Glob(filepath.Join(filepath.Dir(f.dir), sub, "*.so"))
	for _, so := range sos {
		name := strings.TrimSuffix(filepath.Base(so), ".so")
		if !ValidName(name) {
			continue
		}
		name = prefix + name
		if slices.ContainsFunc(found, func(s Source) bool { return s.Name == name }) {
			continue
		}
		if s, err := f.find(name); err == nil && s.Kind == KindPrebuilt {
			found = append(found, s)
		}
	}
	return found, skipped, nil
}

// keyFor is the content address of src's artifact: the plugin's name,
// its files' contents, the build module's go.mod and go.sum (base) and
// the host's build identity. The name is in it because every build
// stamps it into the package path (see builder.build): equal sources
// under two names are two artifacts, two package paths, two instances
// with globals of their own. File names are not: the go command derives
// a file build's package path from the content it compiles.
func keyFor(src Source, base *buildModule, hostID string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "plugind artifact v2\nplugin %s\nhost %s\n", src.Name, hostID)
	fmt.Fprintf(h, "go.mod %d\n", len(base.mod))
	h.Write(base.mod)
	fmt.Fprintf(h, "go.sum %d\n", len(base.sum))
	h.Write(base.sum)
	for _, file := range src.Files {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "source %d\n", len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
