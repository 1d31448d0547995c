# syntax=docker/dockerfile:1
#
# plugind images. The build steps are deploy/build.sh, which a test runs
# too (deploy/image_test.go): change them there.
#
#   docker build -t plugind .               the runtime image: prebuilt
#                                           plugins, no Go toolchain
#   docker build --target dev -t plugind:dev .
#                                           the toolchain too: builds
#                                           plugins on demand
#
# Run the runtime image with a read-only root file system:
#   docker run --read-only -p 3000:3000 plugind
# (/var/lib/plugind, the task store, is a volume).
#
# The runtime base must carry the glibc the build stage links against:
# golang:*-bookworm and distroless base-debian12 are both Debian 12.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN deploy/build.sh /out

# The runtime image: the server, the plugin sources and their artifacts.
# No go command, no C compiler: plugins.build = "off".
FROM gcr.io/distroless/base-debian12:nonroot AS runtime
COPY --from=build /out/usr/local/bin/plugind /usr/local/bin/plugind
COPY --from=build /out/app /app
COPY --from=build --chown=65532:65532 /out/var/lib/plugind /var/lib/plugind
ENV PREST_PLUGINS_BUILD=off \
    PREST_PLUGINPATH=/app/lib \
    PREST_PLUGINS_CACHEDIR=/app/cache \
    PREST_TASKS_DIR=/var/lib/plugind/tasks \
    PREST_HTTP_PORT=3000
USER 65532:65532
WORKDIR /app
VOLUME ["/var/lib/plugind"]
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/plugind"]

# The dev image: the same server with the toolchain and its source tree
# (plugins are built in it, against the server's own dependencies), for
# building plugins on demand. Mount plugins over /app/lib/src.
FROM golang:${GO_VERSION}-bookworm AS dev
COPY --from=build /go/pkg/mod /go/pkg/mod
COPY --from=build /src /src
COPY --from=build /out/usr/local/bin/plugind /usr/local/bin/plugind
COPY --from=build --chown=65532:65532 /out/app /app
COPY --from=build --chown=65532:65532 /out/var/lib/plugind /var/lib/plugind
RUN chmod -R u+w /app
ENV PREST_PLUGINS_BUILD=auto \
    PREST_PLUGINS_MODULEDIR=/src \
    PREST_PLUGINPATH=/app/lib \
    PREST_PLUGINS_CACHEDIR=/app/cache \
    PREST_TASKS_DIR=/var/lib/plugind/tasks \
    PREST_HTTP_PORT=3000 \
    HOME=/tmp \
    GOCACHE=/tmp/go-build \
    GOFLAGS=-mod=readonly
USER 65532:65532
WORKDIR /app
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/plugind"]


# The default target is the runtime image.
FROM runtime
