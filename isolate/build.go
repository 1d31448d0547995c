package isolate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/sdk"
)

// childSources are package child's files: part of every program's key,
// so that a server with a changed child protocol rebuilds its programs.
//
//go:embed child/*.go
var childSources embed.FS

// protocolVersion is part of every program's key; bump it when the
// generator changes what it writes (the generated main is in the key too).
const protocolVersion = "3"

// childFingerprint hashes childSources.
var childFingerprint = sync.OnceValue(func() string {
	h := sha256.New()
	names, _ := fs.Glob(childSources, "child/*.go")
	for _, n := range names { // sorted by Glob
		data, _ := childSources.ReadFile(n)
		fmt.Fprintf(h, "%s %d\n", n, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
})

// program is a plugin built as an executable.
type program struct {
	key    string // content address: sources, generated main, build settings
	exe    string
	model  *model
	kind   loader.Kind
	source string // the sourceHash of what it was built from
}

// builder turns sources into programs, one build at a time, cached by
// content in dir.
type builder struct {
	goCmd     string
	moduleDir string
	dir       string                                               // <cachedir>/isolate
	tags      string                                               // the server's -tags, which select a folder's files
	modules   func(context.Context, loader.Source) (string, error) // see Options.Modules
	srcHash   func(loader.Source) (string, error)                  // see Options.SourceHash
	env       []string                                             // see Options.Env
	prebuilt  bool                                                 // see Options.Prebuilt
	timeout   time.Duration
	flight    singleflight.Group
	slot      chan struct{}
}

// build returns src's program, building it if the cache lacks it;
// compiled reports whether it did. In prebuilt mode it looks the program
// up in the manifest (see lookup) and never builds.
func (b *builder) build(ctx context.Context, src loader.Source) (p *program, compiled bool, err error) {
	if src.Kind == loader.KindPrebuilt {
		return nil, false, &loader.Error{Kind: loader.ErrUnsupported, Plugin: src.Name,
			Msg: fmt.Sprintf("plugin %q is a prebuilt .so without source: it cannot run in a process", src.Name)}
	}
	m, err := parse(src)
	if err != nil {
		return nil, false, err
	}
	if b.prebuilt {
		p, err := b.lookup(src, m)
		return p, false, err
	}
	main, err := generate(m)
	if err != nil {
		return nil, false, fmt.Errorf("plugin %q: generating its main: %w", src.Name, err)
	}
	// The module the plugin declares requirements in, completed by the
	// go command; its go.mod and go.sum are in the key.
	var modfile string
	if b.modules != nil {
		if modfile, err = b.modules(ctx, src); err != nil {
			return nil, false, err
		}
	}
	// The source hash covers what the program compiles from the
	// plugin's directory besides its files: the packages of its own
	// module it imports (see Options.SourceHash). Taken before the files
	// are read: an edit in between makes record refuse the build.
	srcHash, err := b.sourceHash(src)
	if err != nil {
		return nil, false, &loader.Error{Kind: loader.ErrBuild, Plugin: src.Name, Err: err, Msg: fmt.Sprintf("plugin %q: cannot read its source", src.Name)}
	}
	files := make(map[string][]byte, len(src.Files))
	h := sha256.New()
	fmt.Fprintf(h, "plugind isolate %s\n%s\n%s\n%s\n%s\n%s\nsource %s\n", protocolVersion, runtime.Version(), b.moduleDir, b.tags, sdk.Fingerprint(), childFingerprint(), srcHash)
	for _, f := range src.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, false, &loader.Error{Kind: loader.ErrBuild, Plugin: src.Name, Err: err, Msg: fmt.Sprintf("plugin %q: cannot read its source", src.Name)}
		}
		files[filepath.Base(f)] = data
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(data))
		h.Write(data)
	}
	h.Write(main)
	for _, sum := range []string{"go.mod", "go.sum"} {
		data, _ := os.ReadFile(filepath.Join(b.moduleDir, sum))
		h.Write(data)
	}
	if modfile != "" {
		for _, f := range []string{modfile, strings.TrimSuffix(modfile, ".mod") + ".sum"} {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, false, &loader.Error{Kind: loader.ErrBuild, Plugin: src.Name, Err: err, Msg: fmt.Sprintf("plugin %q: its build module cannot be read", src.Name)}
			}
			fmt.Fprintf(h, "modfile %d\n", len(data))
			h.Write(data)
		}
	}
	key := hex.EncodeToString(h.Sum(nil))
	p = &program{key: key, exe: b.exePath(key, src.Name), model: m, kind: src.Kind, source: srcHash}
	if fileExists(p.exe) {
		return p, false, nil
	}
	v, err, _ := b.flight.Do(key, func() (any, error) {
		if fileExists(p.exe) {
			return false, nil
		}
		return true, b.compile(ctx, src.Name, files, main, p.exe, modfile)
	})
	if err != nil {
		return nil, false, err
	}
	return p, v.(bool), nil
}

// exePath is where the program of plugin name with key is.
func (b *builder) exePath(key, name string) string {
	return filepath.Join(b.dir, key[:32], name)
}

// compile copies the sources and the generated main into a private build
// directory and builds them, in the server's module, into exe.
func (b *builder) compile(ctx context.Context, name string, files map[string][]byte, main []byte, exe, modfile string) error {
	select {
	case b.slot <- struct{}{}:
		defer func() { <-b.slot }()
	case <-ctx.Done():
		return &loader.Error{Kind: loader.ErrBuild, Plugin: name, Err: ctx.Err(), Msg: fmt.Sprintf("plugin %q: gave up waiting to build", name)}
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	buildErr := func(err error, format string) error {
		return &loader.Error{Kind: loader.ErrBuild, Plugin: name, Err: err, Msg: fmt.Sprintf(format, name)}
	}
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		return buildErr(err, "plugin %q: cannot create the program directory")
	}
	dir, err := os.MkdirTemp(b.dir, "build-")
	if err != nil {
		return buildErr(err, "plugin %q: cannot create a build directory")
	}
	defer os.RemoveAll(dir)
	// -s -w: no symbol table or DWARF, a third less link time and size;
	// stack traces (the runtime's pclntab) are unaffected.
	// -mod=readonly: never edit a go.mod. On the command line, as the
	// pipeline's builds pass it, so that the user's GOFLAGS in env apply.
	// A temporary name of this build's own beside exe (renamed over it at
	// the end, on one file system): servers sharing a cache may build the
	// same program at once.
	tmp := fmt.Sprintf("%s.%d-%d.tmp", exe, os.Getpid(), time.Now().UnixNano())
	defer os.Remove(tmp) // a failed build's; gone after the rename
	args := []string{"build", "-mod=readonly", "-trimpath", "-ldflags=-s -w", "-o", tmp}
	if b.tags != "" {
		args = append(args, "-tags="+b.tags)
	}
	if modfile != "" {
		args = append(args, "-modfile="+modfile)
	}
	files[mainFile] = main
	for base, data := range files {
		if err := os.WriteFile(filepath.Join(dir, base), data, 0o644); err != nil {
			return buildErr(err, "plugin %q: cannot copy its source")
		}
		args = append(args, filepath.Join(dir, base))
	}
	cmd := exec.CommandContext(ctx, b.goCmd, args...)
	cmd.Dir = b.moduleDir
	env := b.env
	if env == nil {
		// The process's, less its GOFLAGS: which of them builds may take
		// is the pipeline's to say (build.Pipeline.GoEnv).
		env = append(os.Environ(), "GOFLAGS=")
	}
	cmd.Env = append(slices.Clip(env),
		"GOWORK=off",        // a go.work above the module silently changes versions
		"GOTOOLCHAIN=local", // never a download
		"CGO_ENABLED=0",     // a separate process: no C compiler needed, a static binary
	)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		var execErr *exec.Error
		if errors.As(err, &execErr) {
			return buildErr(err, "plugin %q cannot be built: the go command was not found; install Go or set plugins.go")
		}
		e := buildErr(err, "plugin %q failed to build")
		e.(*loader.Error).Output = relativeOutput(out.String(), dir+string(filepath.Separator), b.moduleDir+string(filepath.Separator))
		return e
	}
	if err := os.Rename(tmp, exe); err != nil {
		return buildErr(err, "plugin %q: cannot store its program")
	}
	return nil
}

// relativeOutput strips directories from compiler output, so diagnostics
// read "hello.go:12:3: ..." and never show where the server keeps files.
func relativeOutput(out string, prefixes ...string) string {
	var lines []string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if strings.HasPrefix(line, "# ") {
			continue
		}
		for _, p := range prefixes {
			line = strings.ReplaceAll(line, p, "")
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
