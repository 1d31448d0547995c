// This go.mod keeps the plugin sources out of `go build ./...` and
// `go vet ./...` at the repository root: every file in lib/src is its own
// package main, and they all declare HTTPVars. plugind does not build
// plugins with it; it builds them in the server's module so that they
// share the server's dependency versions.
module plugind.local/lib

go 1.26
