package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/plugind/plugind/plugerr"
)

// Prebuilt mode (Options.Prebuilt, plugins.build = "off") serves only
// what `plugind build` put in the cache, and never runs the go command or
// a C compiler, nor writes to the cache, which may be read-only (an
// image's layer, a volume mounted read-only). `plugind build` records
// each artifact in the pipeline's Manifest, under the identity of the
// binary that built it; a prebuilt-mode server hashes the sources it
// finds and serves the artifact the record names, refusing a record
// written by a different binary.

// manifestDir is where the records live, in the cache directory.
const manifestDir = "prebuilt"

// manifest is the pipeline's record of its artifacts.
func (p *Pipeline) manifest() Manifest {
	return Manifest{Dir: filepath.Join(p.cacheDir, manifestDir), Identity: binaryID(p.host), What: "artifact"}
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
	sh, err := p.SourceHash(src)
	if err != nil {
		return "", plugerr.New(plugerr.ErrOpen, src.Name, err, "plugin %q: cannot read its source", src.Name)
	}
	k, err := p.manifest().Lookup(src.Name, sh)
	if re, ok := errors.AsType[*RecordError](err); ok {
		return "", p.notBuilt(src.Name, re.Err, re.Why)
	}
	return k, err
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
	after, err := p.SourceHash(src)
	if err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: cannot read its source", src.Name)
	}
	if after != before {
		return plugerr.New(plugerr.ErrBuild, src.Name, nil, "plugin %q: its source changed during the build; build it again", src.Name)
	}
	if err := p.manifest().Record(src.Name, after, k); err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: cannot record its build", src.Name)
	}
	return nil
}
