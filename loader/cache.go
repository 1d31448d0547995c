package loader

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
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
// Close stops it.
func (l *Loader) WarmUp(ctx context.Context) error {
	if l.prebuilt {
		return nil // nothing is built here
	}
	if !l.begin() {
		return closedError("warmup")
	}
	defer l.end()
	ctx, stop := l.bound(ctx)
	defer stop()
	// A directory of its own: servers sharing the cache warm up at once,
	// and one must not rewrite the source another is compiling.
	if err := os.MkdirAll(l.cacheDir, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(l.cacheDir, "warmup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "warmup.go")
	if err := os.WriteFile(file, []byte(warmupSource), 0o644); err != nil {
		return err
	}
	start := time.Now()
	l.log.Info().Msg("build cache warm-up started")
	_, err = l.builder.build(ctx, Source{Name: warmupName, Kind: KindFile, Files: []string{file}}, filepath.Join(dir, "warmup.so"), nil)
	if err != nil {
		l.log.Warn().Err(err).Dur("duration", time.Since(start)).Msg("build cache warm-up failed")
		return err
	}
	l.log.Info().Dur("duration", time.Since(start)).Msg("build cache warm-up finished")
	return nil
}

// Prebuild loads every discovered plugin, so that first requests find
// them ready. Failures are logged and remembered like any other. Close
// stops it.
func (l *Loader) Prebuild(ctx context.Context) {
	if !l.begin() {
		return
	}
	defer l.end()
	ctx, stop := l.bound(ctx)
	defer stop()
	found, _, _ := l.Discover()
	for _, s := range found {
		if ctx.Err() != nil {
			return
		}
		_, _, _ = l.flight.Do(s.Name, func() (any, error) { return l.update(s.Name) })
	}
}

// bound returns ctx, ended as well when Close begins.
func (l *Loader) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// BuildResult is the outcome of Build for one plugin.
type BuildResult struct {
	Name     string
	Key      string        // content address
	Duration time.Duration // 0: the artifact was cached
}

// Build makes sure plugin name has a checked artifact in the cache,
// without opening it in this process: plugind build, for images and CI.
func (l *Loader) Build(ctx context.Context, name string) (BuildResult, error) {
	if !ValidName(name) {
		return BuildResult{Name: name}, newError(ErrBadName, "", nil, "invalid plugin name %q", name)
	}
	if !l.begin() {
		return BuildResult{Name: name}, closedError(name)
	}
	defer l.end()
	ctx, stop := l.bound(ctx)
	defer stop()
	src, err := l.src.find(name)
	if err != nil {
		return BuildResult{Name: name}, err
	}
	if err := l.checkSource(src); err != nil {
		return BuildResult{Name: name}, err
	}
	if l.prebuilt {
		return BuildResult{Name: name}, newError(ErrBuild, name, nil, "plugin %q: plugins.build is off: this process does not build plugins", name)
	}
	srcHash, err := sourceHash(src)
	if err != nil {
		return BuildResult{Name: name}, newError(ErrBuild, name, err, "plugin %q: cannot read its source", name)
	}
	k, err := l.key(src)
	if err != nil {
		return BuildResult{Name: name}, err
	}
	dur, err := l.artifact(ctx, src, k)
	if err == nil && src.Kind != KindPrebuilt {
		err = l.record(src, srcHash, k) // what a prebuilt-mode server needs to find it
	}
	return BuildResult{Name: name, Key: k, Duration: dur}, err
}

// Prune deletes the least recently used artifacts until the cache holds
// at most maxBytes, never one this process has open. It returns how many
// it removed and the bytes freed.
func (l *Loader) Prune(maxBytes int64) (removed int, freed int64, err error) {
	if l.prebuilt {
		return 0, 0, nil // the cache is plugind build's, maybe read-only
	}
	entries, err := os.ReadDir(l.cacheDir)
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
		arts = append(arts, art{filepath.Join(l.cacheDir, e.Name()), fi.Size(), fi.ModTime()})
		total += fi.Size()
	}
	slices.SortFunc(arts, func(a, b art) int { return a.used.Compare(b.used) }) // oldest first
	for _, a := range arts {
		if total <= maxBytes {
			break
		}
		if l.opened(a.path) != nil {
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
// whether the cache holds a checked artifact for it.
func (l *Loader) Cached(name string) (key string, cached bool, err error) {
	src, err := l.src.find(name)
	if err != nil {
		return "", false, err
	}
	if key, err = l.key(src); err != nil {
		return "", false, err
	}
	return key, fileExists(l.artifactPath(key)), nil
}

// ArtifactReport is the compatibility of one cached artifact.
type ArtifactReport struct {
	Path string
	Err  error // nil: compatible
}

// CheckCache compares every cached artifact with the server's build.
func (l *Loader) CheckCache() ([]ArtifactReport, error) {
	paths, err := filepath.Glob(filepath.Join(l.cacheDir, "*.so"))
	if err != nil {
		return nil, err
	}
	reports := make([]ArtifactReport, 0, len(paths))
	for _, p := range paths {
		r := ArtifactReport{Path: p}
		diffs, err := Compatible(p, l.host)
		switch {
		case err != nil:
			r.Err = err
		case len(diffs) > 0:
			r.Err = incompatible(strings.TrimSuffix(filepath.Base(p), ".so"), diffs)
		}
		reports = append(reports, r)
	}
	return reports, nil
}
