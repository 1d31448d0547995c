package build

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/modfile"
)

// buildModule is the build module's (Pipeline.ModuleDir's) go.mod and
// go.sum as Pipeline.buildModule read them. Nothing writes to one after
// it is read: it is shared by every caller while the files are unchanged.
type buildModule struct {
	at     time.Time   // when the files were stamped, before they were read
	stamps []fileStamp // go.mod's, go.sum's
	mod    []byte      // go.mod; nil when modErr is set
	modErr error       // go.mod does not exist
	sum    []byte      // go.sum; nil without one
	// path and modules are the module's path and those of the module
	// and its requirements, as far as go.mod parses (leniently);
	// parseErr is why it does not.
	path     string
	modules  []string
	parseErr error
}

// buildModule is the build module's go.mod and go.sum. keyFor, planFor
// and checkImports need them on every load and, for a plugin that
// fails, on every request: they are read once and read again when a
// stamp of theirs changes (see fileStamp, racyWindow), as the declared
// module is (see declared). A file that cannot be read is not
// remembered; a missing go.mod is, as such.
func (p *Pipeline) buildModule() (*buildModule, error) {
	paths := []string{filepath.Join(p.moduleDir, "go.mod"), filepath.Join(p.moduleDir, "go.sum")}
	at := time.Now()
	stamps, err := stampAll(paths)
	if err != nil {
		return nil, err
	}
	p.kmu.Lock()
	m := p.base
	p.kmu.Unlock()
	if m != nil && unchanged(m.stamps, stamps, m.at) {
		return m, nil
	}
	if p.onBuildModule != nil {
		p.onBuildModule()
	}
	m = &buildModule{at: at, stamps: stamps}
	if m.mod, err = os.ReadFile(paths[0]); errors.Is(err, fs.ErrNotExist) {
		m.mod, m.modErr = nil, err
	} else if err != nil {
		return nil, err
	}
	if m.sum, err = os.ReadFile(paths[1]); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if m.modErr == nil {
		if f, err := modfile.ParseLax("go.mod", m.mod, nil); err != nil {
			m.parseErr = err
		} else if f.Module != nil {
			m.path = f.Module.Mod.Path
			m.modules = append(m.modules, m.path)
			for _, r := range f.Require {
				m.modules = append(m.modules, r.Mod.Path)
			}
		}
	}
	p.kmu.Lock()
	p.base = m
	p.kmu.Unlock()
	return m, nil
}
