# One set of flags for the server and for every plugin it builds: the
# server reads its own build settings and builds plugins with them, so
# changing GOFLAGS_BUILD here changes both.
GO            ?= go
GOFLAGS_BUILD ?=
BIN           := bin/plugind

.PHONY: build run test vet bench fuzz clean

build:
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN) .

run: build
	@echo "plugind: serving lib/src on :3000; try:"
	@echo "  curl 'http://localhost:3000/_PLUGIN/hello/Hello?abc=123'"
	@echo "(the first request builds the plugin: up to a minute on a fresh machine, about a second after)"
	./$(BIN)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^lib/src/'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '^lib/src/'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build ./...
	GOOS=windows $(GO) build ./...
	GOOS=darwin GOARCH=arm64 $(GO) build ./...

# The race detector runs over everything; plugins in those tests are built
# with -race too, because the test binary's build settings say so.
test: vet
	$(GO) test -race -count=1 -timeout 30m ./...
	$(GO) test -count=1 -timeout 10m -run 'TestBus|TestDelivery|TestEventStream' ./server/
	# A count, not a duration: a duration -fuzztime can fail with "context
	# deadline exceeded" and no crasher (go.dev/issue/75804, unfixed in 1.26).
	# 150000 runs take about 10 s here.
	$(GO) test -run '^$$' -fuzz FuzzValidName -fuzztime 150000x ./loader/
	# deploy/ is a module of its own (the Kubernetes API types stay out of
	# the server's, which plugins are built against): manifests checked
	# against the config, the image build script run and served.
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 -timeout 20m ./...

# Go benchmarks of the request path, layer by layer with each layer's
# share of a CPU profile (internal/cmd/benchtable), a wrk load run against a plain
# net/http handler (the ceiling), and the plugin lifecycle: cold and warm
# builds, first call after restart, edit -> new code, memory per reload.
bench: build
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(GO) run ./internal/cmd/benchtable
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./server/ ./bus/
	$(GO) run ./internal/cmd/loadrun -bin $(BIN)
	$(GO) run ./internal/cmd/lifebench -bin $(BIN)

clean:
	rm -rf bin lib/.plugind
