#!/bin/sh
# build.sh OUT: the build steps of the container image, as one script that
# the Dockerfile runs and a test runs (deploy/image_test.go), so the two
# cannot drift apart. It lays out under OUT the runtime image's files:
#
#   OUT/usr/local/bin/plugind   the server, built with -trimpath
#   OUT/app/lib/src/            the plugin sources (plugind hashes them to
#                               find their artifacts)
#   OUT/app/cache/              artifacts and their build records, made by
#                               `plugind build` with that very binary
#   OUT/var/lib/plugind/        the writable state (tasks), a volume
#
# A server started from OUT with plugins.build = "off" serves every plugin
# without the go command or a C compiler, from a read-only file system.
#
# -trimpath: the binary then records no source paths, so plugins built in
# this tree load in a server that runs elsewhere, and the artifact key
# does not depend on where the tree or the module cache were. Plugins are
# built with the binary's own flags, -trimpath included, in this source
# tree, so plugins importing github.com/plugind/plugind/sdk get the very
# sdk the server has.
#
# Environment: PLUGIND_SRC the plugind source tree (default: this script's
# parent directory), PLUGIND_LIB the plugin directory to ship (default
# PLUGIND_SRC/lib), GO the go command (default go).
set -eu

out=${1:?usage: build.sh OUT}
src=${PLUGIND_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
lib=${PLUGIND_LIB:-$src/lib}
go=${GO:-go}

mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=$out/usr/local/bin/plugind
mkdir -p "$out/usr/local/bin" "$out/app/lib" "$out/app/cache" "$out/var/lib/plugind"

# Plugins need cgo, so the server does too (a CGO_ENABLED=0 server
# cannot open plugins).
(cd "$src" && CGO_ENABLED=1 GOWORK=off "$go" build -trimpath -o "$bin" .)

# Sources only: no caches, tests or editor files of the source tree.
(cd "$lib" && find src go.mod -type f 2>/dev/null | grep -v -e '/\.' -e '_test\.go$' |
	while read -r f; do
		mkdir -p "$out/app/lib/$(dirname "$f")"
		cp "$f" "$out/app/lib/$f"
	done)

# Build every plugin into the cache, from the source tree (the build
# module), with the server binary itself: the artifacts' key and build
# records are this binary's. A failing plugin fails the image build.
(cd "$src" && env PATH="$(dirname "$(command -v "$go")"):$PATH" \
	PREST_CONF= PREST_PLUGINS_BUILD=auto \
	PREST_PLUGINPATH="$out/app/lib" PREST_PLUGINS_CACHEDIR="$out/app/cache" \
	PREST_PLUGINS_MODULEDIR="$src" \
	"$bin" build)

# Read-only at run time: nothing in the image is writable but the state.
chmod -R a-w "$out/usr/local/bin" "$out/app"
