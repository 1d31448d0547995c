// This go.mod declares what the single-file plugins in lib/src require
// beyond the server's own modules (`cd lib && go get MODULE@VERSION`):
// plugind builds each plugin in a module derived from the server's, with
// these requirements added, and never edits this file. It also keeps the
// plugin sources out of `go build ./...` and `go vet ./...` at the
// repository root: every file in lib/src is its own package main.
module plugind.local/lib

go 1.26
