package isolate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/sdk"
)

// Prebuilt mode (Options.Prebuilt, plugins.build = "off") serves only
// the programs Manager.Build put in the cache, and never runs the go
// command or a C compiler, nor writes to the cache. Build records each
// program in a build.Manifest beside the programs, under the identity of
// the protocol it speaks to the server (see protocol); a prebuilt-mode
// Manager hashes the sources it finds and runs the program the record
// names, refusing a record of another protocol.

// manifestDir is where the records live, in <cachedir>/isolate.
const manifestDir = "prebuilt"

// sourceHash digests what src's program is built from, for its key and
// for the manifest: Options.SourceHash's digest, or, without one, src's
// files alone (names and contents, nothing of where they are, so that
// sources copied elsewhere, a build stage's tree into an image, hash
// alike).
func (b *builder) sourceHash(src loader.Source) (string, error) {
	if b.srcHash != nil {
		return b.srcHash(src)
	}
	h := sha256.New()
	fmt.Fprintf(h, "plugind isolate source v1\n%s\n", src.Kind)
	for _, f := range src.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// protocol digests what of a program's key a server knows without the
// toolchain: the generator's and the child's protocol, the sdk, the Go
// version and the build tags.
func (b *builder) protocol() string {
	h := sha256.New()
	fmt.Fprintf(h, "plugind isolate protocol\n%s\n%s\n%s\n%s\n%s\n", protocolVersion, runtime.Version(), b.tags, sdk.Fingerprint(), childFingerprint())
	return hex.EncodeToString(h.Sum(nil))
}

// manifest is the builder's record of its programs.
func (b *builder) manifest() build.Manifest {
	return build.Manifest{Dir: filepath.Join(b.dir, manifestDir), Identity: b.protocol(), What: "executable"}
}

// lookup is prebuilt mode's build: the program the manifest names for
// src's current files, whose model is m. A plugin without one is
// loader.ErrNotBuilt.
func (b *builder) lookup(src loader.Source, m *model) (*program, error) {
	sh, err := b.sourceHash(src)
	if err != nil {
		return nil, &loader.Error{Kind: loader.ErrOpen, Plugin: src.Name, Err: err, Msg: fmt.Sprintf("plugin %q: cannot read its source", src.Name)}
	}
	key, err := b.manifest().Lookup(src.Name, sh)
	if re, ok := errors.AsType[*build.RecordError](err); ok {
		return nil, notBuilt(src.Name, re.Err, re.Why)
	} else if err != nil {
		return nil, err
	}
	p := &program{key: key, exe: b.exePath(key, src.Name), model: m, kind: src.Kind, source: sh}
	if !fileExists(p.exe) {
		return nil, notBuilt(src.Name, nil, "its executable is missing from the cache")
	}
	return p, nil
}

// record writes the manifest entry of p, just built from src, so that a
// prebuilt-mode Manager finds it. Sources that changed since are not
// recorded: the entry would map new sources to an old program.
func (b *builder) record(src loader.Source, p *program) error {
	after, err := b.sourceHash(src)
	if err != nil {
		return &loader.Error{Kind: loader.ErrBuild, Plugin: src.Name, Err: err, Msg: fmt.Sprintf("plugin %q: cannot read its source", src.Name)}
	}
	if after != p.source {
		return &loader.Error{Kind: loader.ErrBuild, Plugin: src.Name, Msg: fmt.Sprintf("plugin %q: its source changed during the build; build it again", src.Name)}
	}
	if err := b.manifest().Record(src.Name, after, p.key); err != nil {
		return &loader.Error{Kind: loader.ErrBuild, Plugin: src.Name, Err: err, Msg: fmt.Sprintf("plugin %q: cannot record its build", src.Name)}
	}
	return nil
}

// notBuilt is the error of a plugin prebuilt mode cannot run in a
// process.
func notBuilt(name string, cause error, why string) *loader.Error {
	return &loader.Error{Kind: loader.ErrNotBuilt, Plugin: name, Err: cause, Msg: fmt.Sprintf(
		"plugin %q is not built to run in a process: %s, and this server does not build plugins (plugins.build = \"off\"); run `plugind build %s` with this server's binary and configuration",
		name, why, name)}
}
