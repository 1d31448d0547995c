// Package build turns plugin sources into checked artifacts: what
// `plugind build` runs, and what the loader (package loader) asks for
// before it opens a plugin.
//
// A Pipeline, made by New from Options, finds a plugin's source (Find,
// Discover: SRC/NAME.go, the folder SRC/NAME/, or prestd's prebuilt
// SRC/../NAME.so; middleware, named MiddlewareName(NAME), is
// SRC/middlewares/NAME.go, its folder or SRC/../middlewares/NAME.so, see
// DiscoverMiddleware), checks it before the compiler runs (Check: a folder
// plugin's go.mod, its imports), computes its artifact's content address
// (Key) and makes sure the artifact exists, is compatible with the
// server's build and opens cleanly in a child process (Artifact). Build
// does all of that for one plugin by name, and records in prebuilt mode's
// manifest what a server that never runs the toolchain needs to find the
// artifact. WarmUp, Prune and CheckCache look after the cache.
//
// # How plugins are built
//
// A plugin opens only if it was built with the same Go toolchain, the
// same build flags (-race, -trimpath, tags, gcflags) and the same
// versions of every package it shares with the server. So plugins are
// built in the server's module (Options.ModuleDir; without one, a module
// pinned to the server's dependency versions, see hostModule) with the
// server's own build settings (see HostBuild), with GOWORK=off and
// -mod=readonly, so a build never edits go.mod.
//
// Artifacts are named by a hash of their sources, the build module's
// go.mod and go.sum and the host's build identity. Every build stamps the
// plugin's name into the first file's content (an overlay), so that equal
// sources under two names are two plugins with package paths, and
// globals, of their own. Builds run one at a time (Building, Estimate):
// on a small machine concurrent plugin builds are slower than serial
// ones.
//
// # Prebuilt mode
//
// With Options.Prebuilt (plugins.build = "off") the pipeline serves only
// what `plugind build` put in the cache: it never runs the go command or
// a C compiler, nor writes to the cache. A plugin without an artifact is
// plugerr.ErrNotBuilt.
//
// Errors are *plugerr.Error, classified by its kinds (errors.Is); package
// loader re-exports them.
package build
