package build

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/plugind/plugind/plugerr"
)

// Prebuilt mode (Options.Prebuilt, plugins.build = "off") serves only
// what `plugind build` put in the cache, and never runs the go command or
// a C compiler, nor writes to the cache, which may be read-only (an
// image's layer, a volume mounted read-only).
//
// An artifact's key covers the build module's go.mod and go.sum and, for
// a server built without -trimpath, the go command's GOMODCACHE: things
// only a machine with the toolchain and the source tree can read. So
// `plugind build` records, for each plugin it builds, a manifest entry
// beside the artifacts: the plugin's name and a hash of its sources (file
// names and contents, nothing else) map to the key, with the identity of
// the binary that built it. A prebuilt-mode server hashes the sources it
// finds, looks up the entry and serves the artifact it names, refusing an
// entry written by a different binary.

// manifestDir is where the entries live, in the cache directory.
const manifestDir = "prebuilt"

// manifestEntry is one file in manifestDir.
type manifestEntry struct {
	Plugin string    `json:"plugin"`
	Source string    `json:"source"` // sourceHash of the plugin's files
	Key    string    `json:"key"`    // the artifact's content address
	Binary string    `json:"binary"` // binaryID of the plugind that built it
	Built  time.Time `json:"built"`
}

// binaryID digests what makes this server's artifacts this server's: its
// build identity (Go version, flags, environment, sdk), its own version
// and every linked module's version.
func binaryID(h HostBuild) string {
	var b strings.Builder
	fmt.Fprintf(&b, "plugind binary v1\n%s\n%s\n", h.Identity(), h.ModuleVersion)
	for _, p := range slices.Sorted(maps.Keys(h.Deps)) {
		fmt.Fprintf(&b, "%s %s\n", p, h.Deps[p])
	}
	return hashOf(b.String())
}

// sourceHash digests src's files: names relative to the plugin and
// contents, so that sources copied elsewhere (a build stage's tree into
// an image) hash alike.
func sourceHash(src Source) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "plugind source v1\n%s\n", src.Kind)
	for _, file := range src.Files {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(file), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (p *Pipeline) manifestPath(name, srcHash string) string {
	return filepath.Join(p.cacheDir, manifestDir, name+"."+srcHash[:32]+".json")
}

// Key is the content address of src's artifact. In prebuilt mode it
// comes from the manifest; a plugin without an entry is
// plugerr.ErrNotBuilt. A copy's (src.Copy > 0) is CopyKey of the
// plugin's.
func (p *Pipeline) Key(src Source) (string, error) {
	if src.Copy > 0 {
		plain := src
		plain.Copy = 0
		k, err := p.Key(plain)
		if err != nil {
			return "", err
		}
		return CopyKey(k, src.Copy), nil
	}
	if src.Kind == KindPrebuilt {
		return p.libraryKey(src) // prestd's NAME.so is its own artifact: no build, no entry
	}
	if !p.prebuilt {
		k, err := p.hashKey(src)
		if err != nil {
			return "", plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: cannot read its source", src.Name)
		}
		return k, nil
	}
	sh, err := p.sourceHash(src)
	if err != nil {
		return "", plugerr.New(plugerr.ErrOpen, src.Name, err, "plugin %q: cannot read its source", src.Name)
	}
	data, err := os.ReadFile(p.manifestPath(src.Name, sh))
	if errors.Is(err, fs.ErrNotExist) {
		return "", p.notBuilt(src.Name, nil, "no artifact was built for its current source")
	} else if err != nil {
		return "", p.notBuilt(src.Name, err, "its build record cannot be read")
	}
	var m manifestEntry
	switch err := json.Unmarshal(data, &m); {
	case err != nil, len(m.Key) < 32:
		return "", p.notBuilt(src.Name, err, "its build record is damaged")
	case m.Binary != binaryID(p.host):
		return "", p.notBuilt(src.Name, nil, "its artifact was built by a different plugind binary")
	}
	return m.Key, nil
}

// notBuilt is the error of a plugin prebuilt mode cannot serve.
func (p *Pipeline) notBuilt(name string, cause error, why string) *plugerr.Error {
	return plugerr.New(plugerr.ErrNotBuilt, name, cause,
		"plugin %q is not built: %s, and this server does not build plugins (plugins.build = \"off\"); run `plugind build %s` with this server's binary and configuration", name, why, name)
}

// record writes src's manifest entry after `plugind build` made the
// artifact k from the sources that hashed to before. Sources that
// changed meanwhile are not recorded: the entry would map new sources to
// an old artifact.
func (p *Pipeline) record(src Source, before, k string) error {
	after, err := p.sourceHash(src)
	if err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: cannot read its source", src.Name)
	}
	if after != before {
		return plugerr.New(plugerr.ErrBuild, src.Name, nil, "plugin %q: its source changed during the build; build it again", src.Name)
	}
	data, err := json.MarshalIndent(manifestEntry{Plugin: src.Name, Source: after, Key: k, Binary: binaryID(p.host), Built: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	path := p.manifestPath(src.Name, after)
	if err := writeFileAtomic(path, append(data, '\n')); err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: cannot record its build", src.Name)
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file in the
// same directory and a rename, so a reader in another process sees the
// old file or the new one, never part of one.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
