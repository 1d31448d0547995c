package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/plugind/plugind/plugerr"
)

// warmupSource imports what plugins commonly use, so that building it
// compiles those packages in plugin mode into Go's build cache.
const warmupSource = `package main

import (
	_ "context"
	_ "encoding/json"
	_ "fmt"
	_ "io"
	_ "net/http"
	_ "net/url"
	_ "strconv"
	_ "strings"
	_ "time"
)

func GETWarmupHandler() string { return "" }
`

// WarmUp fills Go's build cache with the standard library compiled in
// plugin mode: on a fresh machine the first plugin build does that work,
// 15-40 s; after WarmUp a build takes about a second. It builds a
// throw-away plugin and is cheap when the cache is warm already.
// Cancelling ctx stops it.
func (p *Pipeline) WarmUp(ctx context.Context) error {
	if p.prebuilt {
		return nil // nothing is built here
	}
	// A directory of its own: servers sharing the cache warm up at once,
	// and one must not rewrite the source another is compiling.
	if err := os.MkdirAll(p.cacheDir, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(p.cacheDir, "warmup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "warmup.go")
	if err := os.WriteFile(file, []byte(warmupSource), 0o644); err != nil {
		return err
	}
	start := time.Now()
	p.log.Info().Msg("build cache warm-up started")
	_, err = p.builder.build(ctx, Source{Name: WarmupHolder, Kind: KindFile, Files: []string{file}}, filepath.Join(dir, "warmup.so"), nil, p.log, nil)
	if err != nil {
		p.log.Warn().Err(err).Dur("duration", time.Since(start)).Msg("build cache warm-up failed")
		return err
	}
	p.log.Info().Dur("duration", time.Since(start)).Msg("build cache warm-up finished")
	return nil
}

// BuildResult is the outcome of Build for one plugin.
type BuildResult struct {
	Name     string
	Key      string        // content address
	Duration time.Duration // 0: the artifact was cached
}

// Build makes sure plugin name (or middleware, MiddlewareName) has a
// checked artifact in the cache, without opening it in this process:
// plugind build, for images and CI. The plugins one pipeline builds are
// checked against each other as a server loading them would (see
// Registry): the second of two needing two versions of a module is
// refused, naming both.
func (p *Pipeline) Build(ctx context.Context, name string) (BuildResult, error) {
	if file, ok := MiddlewareFile(name); !ValidName(name) && (!ok || !ValidName(file)) {
		return BuildResult{Name: name}, plugerr.New(plugerr.ErrBadName, "", nil, "invalid plugin name %q", name)
	}
	src, err := p.src.find(name)
	if err != nil {
		return BuildResult{Name: name}, err
	}
	if err := p.Check(src); err != nil {
		return BuildResult{Name: name}, err
	}
	if p.prebuilt {
		return BuildResult{Name: name}, plugerr.New(plugerr.ErrBuild, name, nil, "plugin %q: plugins.build is off: this process does not build plugins", name)
	}
	srcHash, err := p.SourceHash(src)
	if err != nil {
		return BuildResult{Name: name}, plugerr.New(plugerr.ErrBuild, name, err, "plugin %q: cannot read its source", name)
	}
	k, err := p.Key(src)
	if err != nil {
		return BuildResult{Name: name}, err
	}
	path, dur, err := p.Artifact(ctx, src, k, nil)
	if err == nil {
		// The plugins of one run load into one server: the second of two
		// with two versions of a module is refused there, so it is here.
		var mods map[string]string
		if mods, err = p.Modules(path); err != nil {
			err = plugerr.New(plugerr.ErrOpen, name, err, "plugin %q: its artifact is unreadable", name)
		} else if conflicts := p.reg.Check(mods); len(conflicts) > 0 {
			err = ConflictError(name, conflicts)
		} else {
			p.reg.Add(name, mods, p.Sums(src))
		}
	}
	if err == nil && src.Kind != KindPrebuilt {
		err = p.record(src, srcHash, k) // what a prebuilt-mode server needs to find it
	}
	return BuildResult{Name: name, Key: k, Duration: dur}, err
}

// Prune deletes the least recently used artifacts until the cache holds
// at most maxBytes, never one inUse reports (nil: none is). It returns
// how many it removed and the bytes freed.
func (p *Pipeline) Prune(maxBytes int64, inUse func(path string) bool) (removed int, freed int64, err error) {
	if p.prebuilt {
		return 0, 0, nil // the cache is plugind build's, maybe read-only
	}
	entries, err := os.ReadDir(p.cacheDir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	} else if err != nil {
		return 0, 0, err
	}
	type art struct {
		path string
		size int64
		used time.Time
	}
	var arts []art
	var total int64
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".so") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		arts = append(arts, art{filepath.Join(p.cacheDir, e.Name()), fi.Size(), fi.ModTime()})
		total += fi.Size()
	}
	slices.SortFunc(arts, func(a, b art) int { return a.used.Compare(b.used) }) // oldest first
	for _, a := range arts {
		if total <= maxBytes {
			break
		}
		if inUse != nil && inUse(a.path) {
			continue
		}
		if err := os.Remove(a.path); err != nil {
			continue
		}
		os.Remove(a.path + ".ok")
		total -= a.size
		freed += a.size
		removed++
	}
	return removed, freed, nil
}

// Cached reports the content address of name's current source and
// whether its artifact exists where Artifact takes it from (Path): in
// the cache, or, for prestd's prebuilt NAME.so, where it lies.
func (p *Pipeline) Cached(name string) (key string, cached bool, err error) {
	src, err := p.src.find(name)
	if err != nil {
		return "", false, err
	}
	if key, err = p.Key(src); err != nil {
		return "", false, err
	}
	return key, fileExists(p.Path(src, key)), nil
}

// ArtifactReport is the compatibility of one cached artifact.
type ArtifactReport struct {
	Path string
	Err  error // nil: compatible
}

// CheckCache compares every cached artifact with the server's build.
func (p *Pipeline) CheckCache() ([]ArtifactReport, error) {
	paths, err := filepath.Glob(filepath.Join(p.cacheDir, "*.so"))
	if err != nil {
		return nil, err
	}
	reports := make([]ArtifactReport, 0, len(paths))
	for _, path := range paths {
		r := ArtifactReport{Path: path}
		diffs, err := Compatible(path, p.host)
		switch {
		case err != nil:
			r.Err = err
		case len(diffs) > 0:
			r.Err = incompatible(strings.TrimSuffix(filepath.Base(path), ".so"), diffs)
		}
		reports = append(reports, r)
	}
	return reports, nil
}
