// Package modproxy turns plain module source directories into a file-based
// Go module proxy, so that tests which build plugins importing third-party
// modules never reach the network.
//
// The sources live one directory per module version, named
// <module path>@<version>, for example
//
//	testdata/modules/example.com/greet@v1.0.0/{go.mod,greet.go}
//
// Build writes, for each of them, the files the GOPROXY protocol serves
// (<escaped path>/@v/{list,<v>.info,<v>.mod,<v>.zip}) under a destination
// directory, and computes the go.sum lines the go command records for them.
// Env gives the environment a test passes to the go command, or to a server
// that runs it, to resolve modules from that directory and, for everything
// else, from the machine's module cache only.
package modproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// infoTime is the time every .info file gives: fixtures have no commit
// time, and a fixed one keeps the proxy's files reproducible.
const infoTime = "2024-01-01T00:00:00Z"

// Proxy is a proxy directory written by Build.
type Proxy struct {
	dir       string           // the proxy directory, absolute
	hostCache string           // the machine's GOMODCACHE
	sums      []string         // go.sum lines, sorted
	versions  []module.Version // what the proxy serves, sorted
}

// Build walks srcDir for module version directories (<path>@<version>) and
// writes a proxy serving them into dstDir, which it creates if needed. It
// asks the go command for the machine's GOMODCACHE, which Env puts behind
// the proxy.
func Build(srcDir, dstDir string) (*Proxy, error) {
	dst, err := filepath.Abs(dstDir)
	if err != nil {
		return nil, fmt.Errorf("modproxy: %w", err)
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return nil, fmt.Errorf("modproxy: go env GOMODCACHE: %w", err)
	}
	p := &Proxy{dir: dst, hostCache: strings.TrimSpace(string(out))}
	if p.hostCache == "" {
		return nil, errors.New("modproxy: go env GOMODCACHE is empty")
	}

	dirs := map[module.Version]string{}
	err = filepath.WalkDir(srcDir, func(file string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(srcDir, file)
		if err != nil {
			return err
		}
		modPath, version, ok := strings.Cut(filepath.ToSlash(rel), "@")
		if !ok {
			return nil
		}
		mv := module.Version{Path: modPath, Version: version}
		if err := module.Check(mv.Path, mv.Version); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		dirs[mv] = file
		return filepath.SkipDir
	})
	if err != nil {
		return nil, fmt.Errorf("modproxy: %w", err)
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("modproxy: no <module>@<version> directories under %s", srcDir)
	}

	byPath := map[string][]string{}
	for mv, dir := range dirs {
		sums, err := p.write(mv, dir)
		if err != nil {
			return nil, fmt.Errorf("modproxy: %s: %w", mv, err)
		}
		p.sums = append(p.sums, sums...)
		p.versions = append(p.versions, mv)
		byPath[mv.Path] = append(byPath[mv.Path], mv.Version)
	}
	for modPath, versions := range byPath {
		semver.Sort(versions)
		if err := p.writeFile(modPath, "list", []byte(strings.Join(versions, "\n")+"\n")); err != nil {
			return nil, fmt.Errorf("modproxy: %s: %w", modPath, err)
		}
	}
	slices.Sort(p.sums)
	slices.SortFunc(p.versions, func(a, b module.Version) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return semver.Compare(a.Version, b.Version)
	})
	return p, nil
}

// write writes the .info, .mod and .zip of one module version and returns
// its two go.sum lines.
func (p *Proxy) write(mv module.Version, dir string) ([]string, error) {
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return nil, err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    string
	}{mv.Version, infoTime})
	if err != nil {
		return nil, err
	}
	var zip bytes.Buffer
	if err := modzip.CreateFromDir(&zip, mv, dir); err != nil {
		return nil, err
	}
	for ext, data := range map[string][]byte{".info": info, ".mod": gomod, ".zip": zip.Bytes()} {
		if err := p.writeFile(mv.Path, mv.Version+ext, data); err != nil {
			return nil, err
		}
	}

	zipFile, err := p.file(mv.Path, mv.Version+".zip")
	if err != nil {
		return nil, err
	}
	zipSum, err := dirhash.HashZip(zipFile, dirhash.Hash1)
	if err != nil {
		return nil, err
	}
	modSum, err := GoModSum(gomod)
	if err != nil {
		return nil, err
	}
	return []string{
		fmt.Sprintf("%s %s %s", mv.Path, mv.Version, zipSum),
		fmt.Sprintf("%s %s/go.mod %s", mv.Path, mv.Version, modSum),
	}, nil
}

// file is the path of one proxy file of module modPath.
func (p *Proxy) file(modPath, name string) (string, error) {
	escaped, err := module.EscapePath(modPath)
	if err != nil {
		return "", err
	}
	return filepath.Join(p.dir, filepath.FromSlash(escaped), "@v", name), nil
}

func (p *Proxy) writeFile(modPath, name string, data []byte) error {
	file, err := p.file(modPath, name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return os.WriteFile(file, data, 0o644)
}

// GoModSum is the hash go.sum records for a go.mod file (the "/go.mod"
// line), computed as the go command does: dirhash.Hash1 over a single file
// named go.mod.
func GoModSum(gomod []byte) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gomod)), nil
	})
}

// Dir is the proxy directory.
func (p *Proxy) Dir() string { return p.dir }

// URL is the proxy's file:// URL, as GOPROXY takes it.
func (p *Proxy) URL() string {
	return fileURL(p.dir)
}

// Versions lists the module versions the proxy serves, by path then version.
func (p *Proxy) Versions() []module.Version { return slices.Clone(p.versions) }

// Sums returns the go.sum lines of every module version the proxy serves
// ("<path> <version> h1:..." and "<path> <version>/go.mod h1:..."), sorted
// as go.sum sorts them.
func (p *Proxy) Sums() []string { return slices.Clone(p.sums) }

// Env returns the environment for a go command (or a server running one)
// that must resolve modules from this proxy and otherwise stay offline.
// Appended to os.Environ(), its entries win over the caller's.
//
//   - GOPROXY tries this proxy, then the machine's module cache download
//     directory (which holds the server's own dependencies once `go mod
//     download` has run), then stops: "off" means nothing else is fetched.
//   - GOSUMDB=off: nothing is looked up in a checksum database; go.sum is
//     still written and verified.
//   - GOPRIVATE, GONOPROXY and GONOSUMDB are emptied so no pattern in the
//     caller's environment sends a module "direct" to its VCS host.
//   - GOMODCACHE=modCache: a private module cache, so the fixture xid
//     v1.7.0 and the fixture negroni never enter the machine's cache, where
//     they would clash with the published modules of the same versions.
//   - GOFLAGS=-modcacherw, so t.TempDir's cleanup can delete that cache.
//     This replaces the caller's GOFLAGS (including the go env file's).
//   - GOTOOLCHAIN=local, so a go line in a go.mod never downloads a
//     toolchain.
func (p *Proxy) Env(modCache string) []string {
	return []string{
		"GOPROXY=" + p.URL() + "," + fileURL(filepath.Join(p.hostCache, "cache", "download")) + ",off",
		"GOSUMDB=off",
		"GOPRIVATE=",
		"GONOPROXY=",
		"GONOSUMDB=",
		"GOMODCACHE=" + modCache,
		"GOFLAGS=-modcacherw",
		"GOTOOLCHAIN=local",
	}
}

// fileURL is the file:// URL of an absolute directory.
func fileURL(dir string) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(dir)}
	if !strings.HasPrefix(u.Path, "/") { // a Windows drive letter
		u.Path = "/" + u.Path
	}
	return u.String()
}
