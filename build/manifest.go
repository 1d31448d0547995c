package build

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// A Manifest is a directory of build records for prebuilt mode: each maps
// a plugin's name and the hash of its sources (Pipeline.SourceHash) to
// the content address of what was built from them, with the identity of
// the builder, which a reader must share. A key covers what only a
// machine with the toolchain and the source tree reads alike (the build
// module's go.mod and go.sum, where things are), so a server without
// them finds its builds through the records instead. The pipeline keeps
// one for .so artifacts, isolate one for programs.
type Manifest struct {
	Dir      string
	Identity string // of the builder: a binary's, a protocol's
	What     string // what a record names, for messages: "artifact"
}

// manifestEntry is one record, a file in the manifest's directory.
type manifestEntry struct {
	Plugin   string    `json:"plugin"`
	Source   string    `json:"source"`   // the plugin's SourceHash
	Key      string    `json:"key"`      // the content address built
	Identity string    `json:"identity"` // Manifest.Identity of the builder
	Built    time.Time `json:"built"`
}

// RecordError is a plugin Lookup found no usable record for: Why says
// why, for the caller's not-built error; Err is the cause, if any.
type RecordError struct {
	Why string
	Err error
}

func (e *RecordError) Error() string {
	if e.Err != nil {
		return e.Why + ": " + e.Err.Error()
	}
	return e.Why
}

func (e *RecordError) Unwrap() error { return e.Err }

func (m Manifest) path(name, source string) string {
	return filepath.Join(m.Dir, name+"."+source[:32]+".json")
}

// Lookup returns the key recorded for plugin name built from sources
// that hash to source, by a builder of m's identity. Anything else (no
// record, an unreadable or damaged one, another builder's) is a
// *RecordError.
func (m Manifest) Lookup(name, source string) (string, error) {
	data, err := os.ReadFile(m.path(name, source))
	if errors.Is(err, fs.ErrNotExist) {
		return "", &RecordError{Why: fmt.Sprintf("no %s was built for its current source", m.What)}
	} else if err != nil {
		return "", &RecordError{Why: "its build record cannot be read", Err: err}
	}
	var e manifestEntry
	switch err := json.Unmarshal(data, &e); {
	case err != nil, len(e.Key) < 32:
		return "", &RecordError{Why: "its build record is damaged", Err: err}
	case e.Identity != m.Identity:
		return "", &RecordError{Why: fmt.Sprintf("its %s was built by a different plugind binary", m.What)}
	}
	return e.Key, nil
}

// Record writes the record of plugin name built into key from sources
// that hash to source, atomically: a reader in another process sees the
// old record or the new one, never part of one.
func (m Manifest) Record(name, source, key string) error {
	data, err := json.MarshalIndent(manifestEntry{Plugin: name, Source: source, Key: key, Identity: m.Identity, Built: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(m.path(name, source), append(data, '\n'))
}

// writeFileAtomic writes data to path through a temporary file in the
// same directory and a rename.
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
