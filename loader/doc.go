// Package loader owns the plugin runtime: it asks its build pipeline
// (package build, Options.Pipeline) for a plugin's checked artifact, opens
// it, turns its exported symbols into callable handlers, and keeps each
// plugin's versions: reloads and reverts, Init and Close hooks, bus
// registrations staged per version, the memory budget, backoff after a
// failure. It does not build anything itself.
//
// # What a plugin is
//
// A plugin named NAME is the file SRC/NAME.go or the folder SRC/NAME/ (its
// non-test .go files, filtered by build constraints), package main. Names
// beginning with '_' are ignored (see Ignored), as the go command ignores
// such files. It
// exports handlers named {METHOD}{Func}Handler with one of these
// signatures:
//
//	func() string                                 // prestd: body, status 200
//	func() (string, int)                          // prestd: body and status
//	func(http.ResponseWriter, *http.Request)      // standard
//
// prestd's handlers receive the request through two optional package
// globals, HTTPVars map[string]string (route variables) and URLQuery
// map[string][]string (the parsed query). Because the globals are shared,
// calls through that ABI into one loaded plugin are serialised, unless
// Options.Copies loads several copies of it, each with globals of its own
// (see copies.go). Standard handlers get the request itself and run
// concurrently.
//
// # Warnings
//
// These follow from Go's plugin package, and are why plugind builds
// plugins itself rather than accepting any .so:
//
//   - A plugin opens only if it was built with the same Go toolchain, the
//     same build flags (-race, -trimpath, tags, gcflags) and the same
//     versions of every package it shares with the server. The pipeline
//     builds in the server's module with the server's own build settings
//     (see build.HostBuild) and with GOWORK=off and -mod=readonly, so it
//     never edits go.mod.
//   - A plugin cannot be unloaded, and one package path cannot be loaded
//     twice. Artifacts are named by a hash of their sources and the host's
//     build identity; a single-file or file-list build gets a package path
//     derived from its content, so a changed source loads beside the old
//     one, and an unchanged one reuses what is already open. Every build
//     stamps the plugin's name into that content (an overlay), so equal
//     sources under two names are two plugins with globals of their own.
//     Loaded code stays in memory until the process exits.
//   - plugin.Open state is process-wide: use one Loader per process.
//   - A panic in a handler is recovered and reported as ErrPanic. A panic
//     in a goroutine the plugin starts, or os.Exit, ends the process; it
//     cannot be caught.
//   - Plugins need cgo and Linux, macOS or FreeBSD. Elsewhere every
//     request fails with ErrUnsupported.
package loader
