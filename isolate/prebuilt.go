package isolate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/sdk"
)

// Prebuilt mode (Options.Prebuilt, plugins.build = "off") serves only the
// programs Manager.Build put in the cache, and never runs the go command
// or a C compiler, nor writes to the cache.
//
// A program's key covers the build module's go.mod and go.sum and where
// it is: things only a machine with the toolchain and the source tree
// reads alike. So Build records, as the build pipeline does for .so
// artifacts, a manifest entry beside the programs: the plugin's name and
// a hash of its sources (file names and contents) map to the key, with
// the protocol the program speaks to the server. A prebuilt-mode
// Manager hashes the sources it finds, looks up the entry and runs the
// program it names; it refuses an entry for another protocol.

// manifestDir is where the entries live, in <cachedir>/isolate.
const manifestDir = "prebuilt"

// manifestEntry is one file in manifestDir.
type manifestEntry struct {
	Plugin   string    `json:"plugin"`
	Source   string    `json:"source"`   // sourceHash of the plugin's files
	Key      string    `json:"key"`      // the program's content address
	Protocol string    `json:"protocol"` // builder.protocol of the server that built it
	Built    time.Time `json:"built"`
}

// sourceHash digests a plugin's files: names and contents, nothing of
// where they are, so that sources copied elsewhere (a build stage's tree
// into an image) hash alike.
type sourceHash struct{ h hash.Hash }

func newSourceHash(src loader.Source) sourceHash {
	h := sha256.New()
	fmt.Fprintf(h, "plugind isolate source v1\n%s\n", src.Kind)
	return sourceHash{h}
}

func (s sourceHash) add(file string, data []byte) {
	fmt.Fprintf(s.h, "%s %d\n", filepath.Base(file), len(data))
	s.h.Write(data)
}

func (s sourceHash) sum() string { return hex.EncodeToString(s.h.Sum(nil)) }

// hashSource reads src's files and hashes them.
func hashSource(src loader.Source) (string, error) {
	h := newSourceHash(src)
	for _, f := range src.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		h.add(f, data)
	}
	return h.sum(), nil
}

// protocol digests what of a program's key a server knows without the
// toolchain: the generator's and the child's protocol, the sdk, the Go
// version and the build tags.
func (b *builder) protocol() string {
	h := sha256.New()
	fmt.Fprintf(h, "plugind isolate protocol\n%s\n%s\n%s\n%s\n%s\n", protocolVersion, runtime.Version(), b.tags, sdk.Fingerprint(), childFingerprint())
	return hex.EncodeToString(h.Sum(nil))
}

func (b *builder) manifestPath(name, srcHash string) string {
	return filepath.Join(b.dir, manifestDir, name+"."+srcHash[:32]+".json")
}

// lookup is prebuilt mode's build: the program the manifest names for
// src's current files, whose model is m. A plugin without one is
// loader.ErrNotBuilt.
func (b *builder) lookup(src loader.Source, m *model) (*program, error) {
	sh, err := hashSource(src)
	if err != nil {
		return nil, &loader.Error{Kind: loader.ErrOpen, Plugin: src.Name, Err: err, Msg: fmt.Sprintf("plugin %q: cannot read its source", src.Name)}
	}
	data, err := os.ReadFile(b.manifestPath(src.Name, sh))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notBuilt(src.Name, nil, "no executable was built for its current source")
	} else if err != nil {
		return nil, notBuilt(src.Name, err, "its build record cannot be read")
	}
	var e manifestEntry
	switch err := json.Unmarshal(data, &e); {
	case err != nil, len(e.Key) < 32:
		return nil, notBuilt(src.Name, err, "its build record is damaged")
	case e.Protocol != b.protocol():
		return nil, notBuilt(src.Name, nil, "its executable was built by a different plugind")
	}
	p := &program{key: e.Key, exe: b.exePath(e.Key, src.Name), model: m, kind: src.Kind, source: sh}
	if !fileExists(p.exe) {
		return nil, notBuilt(src.Name, nil, "its executable is missing from the cache")
	}
	return p, nil
}

// record writes the manifest entry of p, just built from src, so that a
// prebuilt-mode Manager finds it. Sources that changed since are not
// recorded: the entry would map new sources to an old program.
func (b *builder) record(src loader.Source, p *program) error {
	after, err := hashSource(src)
	if err != nil {
		return &loader.Error{Kind: loader.ErrBuild, Plugin: src.Name, Err: err, Msg: fmt.Sprintf("plugin %q: cannot read its source", src.Name)}
	}
	if after != p.source {
		return &loader.Error{Kind: loader.ErrBuild, Plugin: src.Name, Msg: fmt.Sprintf("plugin %q: its source changed during the build; build it again", src.Name)}
	}
	data, err := json.MarshalIndent(manifestEntry{Plugin: src.Name, Source: after, Key: p.key, Protocol: b.protocol(), Built: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(b.manifestPath(src.Name, after), append(data, '\n')); err != nil {
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

// writeFileAtomic writes data to path through a temporary file in the
// same directory and a rename, so that a reader in another process sees
// the old file or the new one, never part of one.
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
