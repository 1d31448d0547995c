# One set of flags for the server and for every plugin it builds: the
# server reads its own build settings and builds plugins with them, so
# changing GOFLAGS_BUILD here changes both.
GO            ?= go
GOFLAGS_BUILD ?=
BIN           := bin/plugind
# Plugins that tests build are cached here, shared by every test binary
# and run (content-addressed, so sharing is safe): internal/plugintest
# reads PLUGIND_TEST_CACHE, which make test sets to this.
TESTCACHE     ?= $(or $(PLUGIND_TEST_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/plugind-test/artifacts)

.PHONY: build run test test-intro vet bench fuzz clean

build:
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN) .

# plugind dev: hot reload, debug, console logs and a banner of curl lines.
# The first request to a plugin builds it: up to a minute on a fresh
# machine, about a second after.
run: build
	./$(BIN) dev

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^lib/src/'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '^lib/src/'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build ./...
	GOOS=windows $(GO) build ./...
	GOOS=darwin GOARCH=arm64 $(GO) build ./...

# The race detector runs over everything; plugins in those tests are built
# with -race too, because the test binary's build settings say so.
test-intro:
	@echo "make test: plugins built by the tests are cached in $(TESTCACHE)"
	@echo "make test: the first run fills it (minutes); remove it with make clean or rm -rf $(TESTCACHE)"

# go test prints one line per package as it finishes (in package order).
test: test-intro vet
	@echo "make test: 1/6 every package under the race detector"
	PLUGIND_TEST_CACHE=$(TESTCACHE) $(GO) test -race -count=1 -timeout 30m ./...
	@echo "make test: 2/6 the bus without the race detector"
	PLUGIND_TEST_CACHE=$(TESTCACHE) $(GO) test -count=1 -timeout 10m -run 'TestBus|TestDelivery|TestEventStream' ./server/
	@echo "make test: 3/6 fuzzing plugin names"
	# A count, not a duration: a duration -fuzztime can fail with "context
	# deadline exceeded" and no crasher (go.dev/issue/75804, unfixed in 1.26).
	# 150000 runs take about 10 s here.
	$(GO) test -run '^$$' -fuzz FuzzValidName -fuzztime 150000x ./loader/
	@echo "make test: 4/6 the deploy module: manifests, the image build, the systemd unit"
	# deploy/ is a module of its own (the Kubernetes API types stay out of
	# the server's, which plugins are built against): manifests checked
	# against the config, the image build script run and served.
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 -timeout 20m ./...
	@echo "make test: 5/6 the admin page in a real browser"
	# The admin page in a real browser (Debian's chromium), its own module.
	cd test/browser && $(GO) test -count=1 ./...
	@echo "make test: 6/6 the fleet: PostgreSQL, three replicas, HAProxy"
	# The fleet test (build tag fleet, so on its own and last: it measures):
	# PostgreSQL, three prebuilt replicas and HAProxy on loopback, rolling
	# restarts under 30 s of load. -v prints its figures.
	$(GO) vet -tags fleet ./internal/fleettest/
	$(GO) test -tags fleet -race -count=1 -timeout 10m -v ./internal/fleettest/

# Go benchmarks of the request path, layer by layer with each layer's
# share of a CPU profile (internal/cmd/benchtable), a wrk load run against a plain
# net/http handler (the ceiling) and of hello isolated against in-process,
# the plugin lifecycle: cold and warm builds, first call after restart,
# edit -> new code, memory across 50 reloads in-process and isolated, an
# isolated child's exec -> healthy; and isolate/'s transport against
# hashicorp/go-plugin's (test/goplugin, a module of its own).
# BenchmarkReloadMemory is left to lifebench, which reloads 50 times: at
# -benchtime 1s it would reload once.
bench: build
	@command -v wrk >/dev/null || { echo "make bench: installing wrk, the HTTP load generator (apt-get install wrk)"; apt-get update -qq && apt-get install -y -qq wrk; }
	$(GO) run ./internal/cmd/benchtable
	$(GO) test -run '^$$' -bench . -skip BenchmarkReloadMemory -benchmem -count 3 ./server/ ./bus/ ./isolate/
	$(GO) run ./internal/cmd/loadrun -bin $(BIN)
	$(GO) run ./internal/cmd/lifebench -bin $(BIN)
	cd test/goplugin && $(GO) run .

clean:
	rm -rf bin lib/.plugind "$(TESTCACHE)"
