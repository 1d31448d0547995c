//go:build cgo && (linux || darwin || freebsd)

package loader

import "plugin"

// Supported reports whether this build of the server can open plugins.
const Supported = true

// unsupportedReason is empty where plugins work.
const unsupportedReason = ""

// symbolTable is the part of *plugin.Plugin the loader uses.
type symbolTable interface {
	Lookup(name string) (plugin.Symbol, error)
}

func openPlugin(path string) (symbolTable, error) {
	return plugin.Open(path)
}
