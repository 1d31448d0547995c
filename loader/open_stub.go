//go:build !(cgo && (linux || darwin || freebsd))

package loader

import (
	"errors"
	"plugin"
	"runtime"
)

// Supported reports whether this build of the server can open plugins.
const Supported = false

// unsupportedReason says why, for the 501 body and the start-up log.
const unsupportedReason = "Go plugins need cgo on linux, darwin or freebsd; this server was built for " +
	runtime.GOOS + "/" + runtime.GOARCH + " without that support (rebuild it with CGO_ENABLED=1 on a supported platform)"

type symbolTable interface {
	Lookup(name string) (plugin.Symbol, error)
}

func openPlugin(string) (symbolTable, error) {
	return nil, errors.New(unsupportedReason)
}
