// Command loadrun is the load-run half of `make bench`. It starts three
// plugind instances of a binary, each on its own port and temporary plugin
// directory:
//
//   - plugin: the default configuration, with the whole default chain in
//     front of plugins (security headers, gzip, metrics, request ids and
//     the access log);
//   - bare: security headers, gzip and metrics turned off;
//   - auth: the default configuration with an API key (-H X-API-Key);
//
// waits until each is ready and done warming its build cache, and measures
// them with wrk in four phases, each printed as a table of runs and
// medians with its ratios, each the median of the rounds' own (one
// target's run over another's in the same round: a round in which the
// shared machine was slow for both does not skew it):
//
//  1. one plugin path (-path, -connections) on plugin and on bare, against
//     a plain net/http handler in this process that answers the same bytes
//     (the ceiling), and, when -path is prestd's hello, a plain handler that
//     does hello's work (parses the query, marshals the answer, one call at
//     a time): the ceiling for any server running that plugin, and that
//     handler behind the default chain's features written inline
//     (plain+features, floor.go): the ceiling for any server keeping them.
//     All of them in each round;
//  2. -path in-process on plugin against the same source in a process of
//     its own on the same server: -src is also served there as
//     NAME-isolated, configured isolation = "process" (an executable
//     behind a reverse proxy on a Unix socket). Each round runs the two
//     back to back, and the ratios of throughput and of p99 are the median
//     of the rounds' own (targets: at least 0.45x the throughput, at most
//     2x the p99);
//  3. the standard ABI against prestd's legacy ABI on plugin, both handlers
//     of -slow sleeping 1 ms, at 64 connections, with a plain handler that
//     sleeps 1 ms too as the ceiling. Legacy calls into one plugin run one
//     at a time, so they queue: 64 of them take ~80 ms, within wrk's 2 s
//     timeout;
//  4. a short one: -path on auth with the key, against plugin, one round.
//
// Each run also reads the CPU time of the process serving its target
// (the plugind instance, or this one for a plain handler), printed per
// request. After phase 1, a profile run takes a CPU profile of plugin
// (its /_ADMIN/pprof/profile, which the instance serves) under wrk and
// prints where its CPU goes by layer (profile.go).
//
// The plugin sources are copied to <tmp>/<instance>/src under their own
// base names, so -path must name -src's file, and -slow's must be another
// name. A run that reports errors fails the program once all phases are
// printed. Every instance is stopped (SIGTERM, then killed after 30 s) and
// the temporary directories are removed however the program ends, short of
// being killed itself. All traffic goes to 127.0.0.1, and wrk must be on
// PATH:
//
//	apt-get install -y wrk
//	go run ./internal/cmd/loadrun -bin bin/plugind [-duration 10s] [-rounds 3]
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/plugind/plugind/internal/benchproc"
	"github.com/plugind/plugind/internal/stats"
)

const (
	readyTimeout  = 30 * time.Second
	warmupTimeout = 3 * time.Minute // the first plugin build can take ~40 s
	targetRatio   = 0.80            // plugin path with the default chain / plain handler

	// Against a plain handler doing the plugin's own work (plain+work):
	// the default chain's throughput, the bare chain's, and the default
	// chain's p99 (at most).
	workTargetRatio     = 0.90
	bareWorkTargetRatio = 0.95
	workTargetP99       = 1.15

	// The isolated row: -src again as <name>isolatedSuffix, in a process.
	isolatedSuffix      = "-isolated"
	isolatedTargetRatio = 0.45 // isolated / in-process throughput, at least
	isolatedTargetP99   = 2    // isolated / in-process p99, at most

	// The ABI phase: -slow's handlers and the plain one sleep abiSleep.
	abiConns       = 64
	abiSleep       = time.Millisecond
	abiTargetRatio = 30 // standard / legacy
	// standard / plain with both sleeping abiSleep, at least.
	abiPlainTargetRatio = 0.95

	apiKey = "bench-key" // the auth instance's, sent by wrk in X-API-Key
)

// The instances: each is a plugind server of its own. PREST_* variables
// are PREST_ and the configuration key with dots as underscores.
var (
	// The plugin instance serves its runtime profiles: the profile run
	// after phase 1 reads where its CPU goes (profile.go). The route is
	// one of the server's own, outside the plugin path.
	pluginInstance = instance{name: "plugin", env: []string{"PREST_ADMIN_PPROF=true"}}
	bareInstance   = instance{name: "bare", env: []string{
		"PREST_HTTP_SECURITYHEADERS=false", "PREST_HTTP_GZIP=false", "PREST_METRICS_ENABLED=false",
	}}
	authInstance = instance{name: "auth", env: []string{"PREST_AUTH_APIKEYS=" + apiKey}, header: "X-API-Key: " + apiKey}
)

type options struct {
	bin, src, slow, path   string
	duration               time.Duration
	rounds, conns, threads int
	baseline               string
	writeBaseline          bool
	// ratios collects every ratio report prints, by label, for the gate.
	ratios map[string]float64
}

// result is one wrk run.
type result struct {
	target   string
	round    int
	rps      float64
	p50, p99 time.Duration
	errs     string // wrk's error lines, "" if none
	// cpu is the CPU time the target's server process used per request
	// answered during the run, 0 where it is not read (see target.pid).
	cpu time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/plugind", "path to the plugind binary")
	flag.StringVar(&o.src, "src", "lib/src/hello.go", "plugin source to serve")
	flag.StringVar(&o.slow, "slow", "testdata/plugins/slow.go", "plugin source with GETLegacyHandler and GETStandardHandler, for the ABI phase")
	flag.StringVar(&o.path, "path", "/_PLUGIN/hello/Hello?abc=123", "request path and query to measure")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each wrk run: whole seconds, 1s to 5m")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of phases 1 and 2, each measuring every target of the phase: 1 to 20")
	flag.IntVar(&o.conns, "connections", 50, "wrk connections: 1 to 1000")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads: 1 to 64, at most -connections")
	flag.StringVar(&o.baseline, "baseline", "internal/cmd/loadrun/baseline.json", "ratios to compare with: a warning for each that drops more than 5% below it")
	flag.BoolVar(&o.writeBaseline, "write-baseline", false, "write this run's ratios to -baseline instead of comparing")
	flag.Parse()
	o.ratios = map[string]float64{}
	benchproc.Main("loadrun", o.check(), func(ctx context.Context) error { return run(ctx, o) })
}

// isolatedName is the plugin name -src is served under in a process.
func (o options) isolatedName() string {
	return strings.TrimSuffix(filepath.Base(o.src), ".go") + isolatedSuffix
}

// isolatedPath is -path on the isolated copy of -src, or "" if -path is
// not one of -src's.
func (o options) isolatedPath() string {
	prefix := "/_PLUGIN/" + strings.TrimSuffix(filepath.Base(o.src), ".go") + "/"
	rest, ok := strings.CutPrefix(o.path, prefix)
	if !ok {
		return ""
	}
	return "/_PLUGIN/" + o.isolatedName() + "/" + rest
}

func (o options) check() error {
	switch {
	case o.duration < time.Second || o.duration > 5*time.Minute || o.duration%time.Second != 0:
		return fmt.Errorf("-duration %s: want whole seconds from 1s to 5m", o.duration)
	case o.rounds < 1 || o.rounds > 20:
		return fmt.Errorf("-rounds %d: want 1 to 20", o.rounds)
	case o.conns < 1 || o.conns > 1000:
		return fmt.Errorf("-connections %d: want 1 to 1000", o.conns)
	case o.threads < 1 || o.threads > 64 || o.threads > o.conns:
		return fmt.Errorf("-threads %d: want 1 to 64, at most -connections", o.threads)
	case !strings.HasPrefix(o.path, "/"):
		return fmt.Errorf("-path %q: must start with /", o.path)
	case filepath.Ext(o.slow) != ".go":
		return fmt.Errorf("-slow %q: want a .go file", o.slow)
	case filepath.Base(o.slow) == filepath.Base(o.src):
		return fmt.Errorf("-slow %q and -src %q: want different base names", o.slow, o.src)
	}
	return nil
}

func run(ctx context.Context, o options) (err error) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return fmt.Errorf("wrk is required (apt-get install -y wrk): %w", err)
	}
	dir, err := os.MkdirTemp("", "loadrun-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	var servers []*server
	defer func() { // runs before RemoveAll: the servers write in dir
		err = errors.Join(err, stopAll(servers))
		if err != nil {
			for _, s := range servers {
				benchproc.PrintTail("loadrun", "the "+s.name+" server's log", s.logPath, 20)
			}
		}
	}()

	instances := []instance{pluginInstance, bareInstance, authInstance}
	ports, err := benchproc.FreePorts(len(instances))
	if err != nil {
		return err
	}
	for i, in := range instances {
		srcs := []source{{path: o.src}}
		var config string
		if in.name == pluginInstance.name {
			srcs = append(srcs, source{path: o.slow}, source{path: o.src, name: o.isolatedName()})
			config = fmt.Sprintf("[plugin.%s]\nisolation = \"process\"\n", o.isolatedName())
		}
		s, err := startServer(o.bin, filepath.Join(dir, in.name), ports[i], in, srcs, config)
		if err != nil {
			return err
		}
		servers = append(servers, s)
	}
	for _, s := range servers {
		if err := s.ready(ctx); err != nil {
			return err
		}
	}
	plugin, bare, authed := servers[0], servers[1], servers[2]

	var runErrs error // errRunErrors: the other phases still run
	for _, phase := range []func() error{
		func() error { return pathPhase(ctx, wrk, dir, o, plugin, bare) },
		func() error { return isolatedPhase(ctx, wrk, o, plugin) },
		func() error { return abiPhase(ctx, plugin, wrk, o) },
		func() error { return authPhase(ctx, wrk, o, plugin, authed) },
	} {
		err := phase()
		if err != nil && !errors.Is(err, errRunErrors) {
			return errors.Join(runErrs, err)
		}
		runErrs = errors.Join(runErrs, err)
	}
	if runErrs == nil {
		if _, err := gate(os.Stdout, o.baseline, o.ratios, o.writeBaseline); err != nil {
			return err
		}
	}
	return runErrs
}

// pathPhase measures -path on the default chain (plugin) and on the bare
// one against a plain handler answering its bytes.
func pathPhase(ctx context.Context, wrk, dir string, o options, plugin, bare *server) error {
	fmt.Printf("\nphase 1: %s with the default chain (%s), without security headers, gzip and metrics (%s), and a plain handler, %d connections\n",
		o.path, plugin.name, bare.name, o.conns)
	body, header, err := plugin.warm(ctx, o.path)
	if err != nil {
		return err
	}
	bareBody, bareHeader, err := bare.warm(ctx, o.path)
	if err != nil {
		return err
	}
	if !bytes.Equal(body, bareBody) {
		return fmt.Errorf("%s answers %q but %s answers %q: want the same bytes", plugin.name, body, bare.name, bareBody)
	}
	// A misspelt variable would measure the wrong chain.
	if err := errors.Join(checkChain(ctx, plugin, header, true), checkChain(ctx, bare, bareHeader, false)); err != nil {
		return err
	}
	plain, closePlain, err := startPlain(fixed(header.Get("Content-Type"), body))
	if err != nil {
		return err
	}
	defer closePlain()
	targets := []target{plugin.target("plugin", o.path), bare.target("bare", o.path), {name: "plain", url: plain + o.path, pid: os.Getpid()}}
	ratios := []ratio{
		{label: "plugin (default chain) / plain", num: "plugin", den: "plain", paired: true, digits: 2, target: targetRatio},
		{label: "bare plugin path / plain", num: "bare", den: "plain", paired: true, digits: 2},
		{label: "cost of the default chain", num: "plugin", den: "bare", paired: true, of: "the bare plugin path's throughput"},
	}
	// The second ceiling: a plain handler doing the plugin's own work.
	worked, closeWorked, err := startPlain(helloWork(o.path))
	if err != nil {
		return err
	}
	defer closeWorked()
	if got, _, err := get(ctx, worked+o.path, ""); err == nil && bytes.Equal(got, body) {
		// The third: that work behind the default chain's features,
		// written inline (floor.go).
		featured, closeFeatured, err := startFeatures(ctx, filepath.Join(dir, "plain+features.log"), o.path, header)
		if err != nil {
			return err
		}
		defer closeFeatured()
		targets = append(targets, target{name: "plain+work", url: worked + o.path, pid: os.Getpid()},
			target{name: "plain+features", url: featured + o.path, pid: os.Getpid()})
		// The targets of "within 10% of native": plugind against a plain
		// handler doing the same work.
		ratios = append(ratios,
			ratio{label: "plain+work / plain (the plugin's own work)", num: "plain+work", den: "plain", paired: true, digits: 2, reference: true},
			ratio{label: "plugin (default chain) / plain+work", num: "plugin", den: "plain+work", paired: true, digits: 2, target: workTargetRatio},
			ratio{label: "bare plugin path / plain+work", num: "bare", den: "plain+work", paired: true, digits: 2, target: bareWorkTargetRatio},
			ratio{label: "plugin p99 / plain+work p99", num: "plugin", den: "plain+work", paired: true, digits: 2, target: workTargetP99, p99: true},
			ratio{label: "plain+features / plain+work (the default chain's features, inline)", num: "plain+features", den: "plain+work", paired: true, digits: 2, reference: true},
			ratio{label: "plugin (default chain) / plain+features", num: "plugin", den: "plain+features", paired: true, digits: 2})
	} else {
		fmt.Printf("plain+work: left out, %s is not prestd's hello plugin (%q, %v)\n", o.path, got, err)
	}
	results, err := measure(ctx, wrk, o, o.rounds, o.conns, targets)
	if err != nil {
		return err
	}
	if err := report(os.Stdout, o.ratios, targets, results, ratios); err != nil {
		return err
	}
	return profileRun(ctx, wrk, o, plugin, o.path, medianCPU(results, "plugin"), medianCPU(results, "plain+work"))
}

// isolatedPhase measures -path in-process against the same source in a
// process of its own (isolation = "process"), on the same server with the
// default chain. Each round runs the two back to back, the other one
// first in the next round, and the ratios are the median of each round's:
// a machine whose load changes between rounds moves both alike.
func isolatedPhase(ctx context.Context, wrk string, o options, plugin *server) error {
	ipath := o.isolatedPath()
	if ipath == "" {
		fmt.Printf("\nphase 2: left out, %s is not a path of %s\n", o.path, o.src)
		return nil
	}
	fmt.Printf("\nphase 2: %s in-process against in a process of its own (%s), same server, %d connections\n", o.path, ipath, o.conns)
	if _, _, err := plugin.warm(ctx, o.path); err != nil {
		return err
	}
	if _, _, err := plugin.warm(ctx, ipath); err != nil { // builds and starts its process
		return err
	}
	targets := []target{plugin.target("in-process", o.path), plugin.target("isolated", ipath)}
	results, err := measure(ctx, wrk, o, o.rounds, o.conns, targets)
	if err != nil {
		return err
	}
	return report(os.Stdout, o.ratios, targets, results, []ratio{
		{label: "isolated plugin / in-process plugin", num: "isolated", den: "in-process", digits: 2, target: isolatedTargetRatio, paired: true},
		{label: "isolated plugin p99 / in-process plugin p99", num: "isolated", den: "in-process", digits: 2, target: isolatedTargetP99, paired: true, p99: true},
	})
}

// helloWork answers as lib/src/hello.go does by doing its work in a plain
// handler: the query parsed, the response marshalled with encoding/json,
// one call at a time (prestd's globals serialise a legacy plugin's calls).
// It is the ceiling for any server that runs that plugin's code: the gap
// between it and plugind is plugind's own.
func helloWork(path string) http.Handler {
	type response struct {
		HTTPVars map[string]string   `json:"http_vars"`
		URLQuery map[string][]string `json:"url_query"`
		MSG      string              `json:"msg"`
	}
	file, fn := pluginRoute(path)
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vars, query := map[string]string{"file": file, "func": fn}, r.URL.Query()
		mu.Lock()
		body, err := json.Marshal(response{HTTPVars: vars, URLQuery: query, MSG: "Hello plugin caller!"})
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
}

// pluginRoute is the plugin and function that path, /_PLUGIN/FILE/FUNC
// with or without a query, names.
func pluginRoute(path string) (file, fn string) {
	route, _, _ := strings.Cut(strings.TrimPrefix(path, "/_PLUGIN/"), "?")
	file, fn, _ = strings.Cut(route, "/")
	return file, fn
}

// checkChain fails unless s has the default chain's security headers (h
// is its answer to a plugin path) and serves metrics, or, for !want, has
// neither.
func checkChain(ctx context.Context, s *server, h http.Header, want bool) error {
	headers := h.Get("X-Content-Type-Options") != ""
	_, _, err := get(ctx, s.URL("/metrics"), "")
	if metrics := err == nil; headers != want || metrics != want {
		return fmt.Errorf("%s: security headers %t, metrics %t (%v): want %t for both", s.name, headers, metrics, err, want)
	}
	return nil
}

// authPhase measures -path with API key auth on against the default chain
// without it, for one round.
func authPhase(ctx context.Context, wrk string, o options, plugin, authed *server) error {
	fmt.Printf("\nphase 4: %s with API key auth on (%s) and off (%s), %d connections, 1 round\n", o.path, authed.name, plugin.name, o.conns)
	if _, _, err := authed.warm(ctx, o.path); err != nil {
		return err
	}
	_, _, err := get(ctx, authed.URL(o.path), "")
	var se *statusError
	if !errors.As(err, &se) || se.code != http.StatusUnauthorized {
		got := "status 200"
		if err != nil {
			got = err.Error()
		}
		return fmt.Errorf("%s: GET %s without a key: %s, want status 401", authed.name, o.path, got)
	}
	targets := []target{plugin.target("plugin", o.path), authed.target("plugin + API key auth", o.path)}
	results, err := measure(ctx, wrk, o, 1, o.conns, targets)
	if err != nil {
		return err
	}
	return report(os.Stdout, o.ratios, targets, results, []ratio{
		{label: "plugin + API key auth / plugin", num: "plugin + API key auth", den: "plugin", digits: 2},
	})
}

// abiPhase measures -slow's standard handler against its legacy one, with
// a plain handler sleeping as long as theirs as the ceiling.
func abiPhase(ctx context.Context, srv *server, wrk string, o options) error {
	fmt.Printf("\nphase 3: standard ABI against legacy ABI, %s handlers, %d connections\n", abiSleep, abiConns)
	name := strings.TrimSuffix(filepath.Base(o.slow), ".go")
	legacyPath, standardPath := "/_PLUGIN/"+name+"/Legacy", "/_PLUGIN/"+name+"/Standard"
	legacyBody, _, err := srv.warm(ctx, legacyPath) // builds the plugin
	if err != nil {
		return err
	}
	body, header, err := srv.warm(ctx, standardPath)
	if err != nil {
		return err
	}
	if !bytes.Equal(body, legacyBody) {
		return fmt.Errorf("%s answers %q but %s answers %q: want the same bytes", legacyPath, legacyBody, standardPath, body)
	}
	plain, closePlain, err := startPlain(after(abiSleep, fixed(header.Get("Content-Type"), body)))
	if err != nil {
		return err
	}
	defer closePlain()
	targets := []target{srv.target("legacy", legacyPath), srv.target("standard", standardPath), {name: "plain", url: plain + standardPath, pid: os.Getpid()}}
	results, err := measure(ctx, wrk, o, o.rounds, abiConns, targets)
	if err != nil {
		return err
	}
	return report(os.Stdout, o.ratios, targets, results, []ratio{
		{label: "standard / legacy", num: "standard", den: "legacy", paired: true, digits: 1, target: abiTargetRatio},
		{label: fmt.Sprintf("standard / plain (%d ms handlers)", abiSleep.Milliseconds()), num: "standard", den: "plain", paired: true, digits: 2, target: abiPlainTargetRatio},
	})
}

// instance is a plugind configuration: the defaults, env over them.
type instance struct {
	name   string
	env    []string // PREST_* variables
	header string   // "Name: value" sent with every request, "" for none
}

// server is a plugind instance's running server.
type server struct {
	*benchproc.Server
	name, header string // the instance's
	logPath      string
}

// source is a plugin source file served as name ("": its base name).
type source struct{ path, name string }

// startServer copies the plugin sources srcs into dir/src, writes config
// as its prest.toml, and starts bin as in on port with its output in
// dir/plugind.log.
func startServer(bin, dir string, port int, in instance, srcs []source, config string) (*server, error) {
	files := map[string][]byte{}
	for _, src := range srcs {
		data, err := os.ReadFile(src.path)
		if err != nil {
			return nil, fmt.Errorf("plugin source: %w", err)
		}
		name := filepath.Base(src.path)
		if src.name != "" {
			name = src.name + ".go"
		}
		files[name] = data
	}
	if err := benchproc.PluginDir(dir, files); err != nil {
		return nil, fmt.Errorf("%s: %w", in.name, err)
	}
	if err := benchproc.WriteConfig(dir, config); err != nil {
		return nil, fmt.Errorf("%s: %w", in.name, err)
	}
	logPath := filepath.Join(dir, "plugind.log")
	p, err := benchproc.Start(bin, dir, port, logPath, in.env...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.name, err)
	}
	return &server{Server: p, name: in.name, header: in.header, logPath: logPath}, nil
}

// target is path on s, named name in the report.
func (s *server) target(name, path string) target {
	return target{name: name, url: s.URL(path), header: s.header, pid: s.Cmd.Process.Pid}
}

// ready waits for /readyz to answer 200, then for the build cache
// warm-up to end: compiling in the background, it would slow the runs.
func (s *server) ready(ctx context.Context) error {
	start := time.Now()
	if _, _, err := s.poll(ctx, "/readyz", readyTimeout, nil); err != nil {
		return fmt.Errorf("%s: server not ready: %w", s.name, err)
	}
	var rd struct {
		WarmUp string `json:"warmup"`
	}
	_, _, err := s.poll(ctx, "/readyz", warmupTimeout, func(body []byte) error {
		if err := json.Unmarshal(body, &rd); err != nil {
			return fmt.Errorf("/readyz body: %w", err)
		} else if rd.WarmUp == "running" {
			return errors.New("build cache warm-up still running")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	fmt.Printf("%s: ready on %s, build cache warm-up %s, after %s\n", s.name, s.Addr, rd.WarmUp, time.Since(start).Round(time.Millisecond))
	return nil
}

// warm polls path until it answers 200, which the first request to a
// plugin does once it is built, and prints how long that took.
func (s *server) warm(ctx context.Context, path string) ([]byte, http.Header, error) {
	start := time.Now()
	body, header, err := s.poll(ctx, path, warmupTimeout, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: plugin not serving: %w", s.name, err)
	}
	fmt.Printf("%s: %s: 200 after %s, %d-byte %s body\n", s.name, s.URL(path), time.Since(start).Round(time.Millisecond), len(body), header.Get("Content-Type"))
	return body, header, nil
}

// stopAll stops servers at once, waiting for every one.
func stopAll(servers []*server) error {
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() {
			if err := s.Stop(); err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// poll GETs path until it answers 200 and done, if not nil, accepts its
// body, and returns that answer's body and header. It gives up on an
// answer that will not change (4xx, 501), when the server exits or when
// limit passes.
func (s *server) poll(ctx context.Context, path string, limit time.Duration, done func(body []byte) error) ([]byte, http.Header, error) {
	url := s.URL(path)
	var body []byte
	var header http.Header
	err := s.Poll(ctx, limit, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		var err error
		body, header, err = get(ctx, url, s.header)
		var se *statusError
		switch {
		case err == nil && done != nil:
			err = done(body)
		case errors.As(err, &se) && (se.code < 500 || se.code == http.StatusNotImplemented):
			return true, fmt.Errorf("GET %s: %w", url, err)
		}
		if err != nil {
			return false, fmt.Errorf("GET %s: %w", url, err)
		}
		return true, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return body, header, nil
}

// get GETs url with header ("Name: value", "" for none) and returns the
// answer's body and header, or a *statusError for any status but 200.
func get(ctx context.Context, url, header string) ([]byte, http.Header, error) {
	resp, body, err := benchproc.Get(ctx, http.DefaultClient, url, header)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, &statusError{resp.StatusCode, string(bytes.TrimSpace(body))}
	}
	return body, resp.Header, nil
}

// statusError is an answer other than 200.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.code, e.body) }

// startPlain serves h from this process on 127.0.0.1 and returns its base
// URL and a function that closes it.
func startPlain(h http.Handler) (string, func(), error) {
	return serve(&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second})
}

// serve serves srv on a loopback port of its own until the returned
// function closes it.
func serve(srv *http.Server) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("plain server: %w", err)
	}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// fixed answers ctype and body to every request.
func fixed(ctype string, body []byte) http.Handler {
	length := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Length", length)
		_, _ = w.Write(body)
	})
}

// after sleeps for d, then lets h answer.
func after(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(d)
		h.ServeHTTP(w, r)
	})
}

// target is a URL wrk measures, named in the report, with the header
// ("Name: value", "" for none) wrk sends, and the process serving it,
// whose CPU time is read around each run (0: not read). A plain handler
// is served by this process, whose other goroutines wait meanwhile.
type target struct {
	name, url, header string
	pid               int
}

// measure runs wrk with conns connections on every target each of rounds,
// starting one target later in each round, so that each leads in turn.
func measure(ctx context.Context, wrk string, o options, rounds, conns int, targets []target) ([]result, error) {
	var results []result
	for round := 1; round <= rounds; round++ {
		for i := range targets {
			t := targets[(i+round-1)%len(targets)]
			fmt.Printf("round %d/%d: %s, %s\n", round, rounds, t.name, o.duration)
			r, err := runWrk(ctx, wrk, o, conns, t)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round, t.name, err)
			}
			r.target, r.round = t.name, round
			results = append(results, r)
		}
	}
	return results, nil
}

func runWrk(ctx context.Context, wrk string, o options, conns int, t target) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.duration+30*time.Second)
	defer cancel()
	args := []string{"-t" + strconv.Itoa(o.threads), "-c" + strconv.Itoa(conns), fmt.Sprintf("-d%ds", o.duration/time.Second), "--latency"}
	if t.header != "" {
		args = append(args, "-H", t.header)
	}
	cpu := cpuReader(t.pid)
	out, err := exec.CommandContext(ctx, wrk, append(args, t.url)...).CombinedOutput()
	used := cpu()
	if ctx.Err() != nil {
		return result{}, fmt.Errorf("wrk stopped: %w", ctx.Err())
	}
	if err != nil {
		return result{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	r, err := parseWrk(string(out))
	if err != nil {
		return result{}, fmt.Errorf("wrk output: %w\n%s", err, out)
	}
	if n := requestsOf(string(out)); used > 0 && n > 0 {
		r.cpu = used / time.Duration(n)
	}
	return r, nil
}

// cpuReader starts reading process pid's CPU time and returns what
// reports the time used since: 0 for pid 0 or where it cannot be read
// (stats.CPUTime reads Linux's /proc).
func cpuReader(pid int) func() time.Duration {
	if pid == 0 {
		return func() time.Duration { return 0 }
	}
	before, err := stats.CPUTime(pid)
	return func() time.Duration {
		after, err2 := stats.CPUTime(pid)
		if err != nil || err2 != nil {
			return 0
		}
		return after - before
	}
}

// requestsOf is wrk's "N requests in" count, 0 if missing.
func requestsOf(out string) int64 {
	m := requestsLine.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

var (
	requestsLine = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	rpsLine      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)\s*$`)
	distLine     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+[a-z]+)\s*$`)
	errLine      = regexp.MustCompile(`(?m)^\s*(Non-2xx or 3xx responses|Socket errors):.*$`)
)

// parseWrk reads Requests/sec, the 50% and 99% lines of the Latency
// Distribution and any error lines from wrk --latency output.
func parseWrk(out string) (result, error) {
	var r result
	m := rpsLine.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("no Requests/sec line")
	}
	var err error
	if r.rps, err = strconv.ParseFloat(m[1], 64); err != nil {
		return r, fmt.Errorf("requests/sec: %w", err)
	}
	_, dist, ok := strings.Cut(out, "Latency Distribution")
	if !ok {
		return r, errors.New("no Latency Distribution (was --latency passed?)")
	}
	for _, m := range distLine.FindAllStringSubmatch(dist, -1) {
		d, err := time.ParseDuration(m[2]) // wrk's us, ms, s, m and h all parse
		if err != nil {
			return r, fmt.Errorf("%s%% latency: %w", m[1], err)
		}
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return r, errors.New("no 50% or 99% latency line")
	}
	var errs []string
	for _, line := range errLine.FindAllString(out, -1) {
		errs = append(errs, strings.TrimSpace(line))
	}
	r.errs = strings.Join(errs, "; ")
	return r, nil
}

// ratio is a summary line: num's median req/s over den's, printed with
// digits decimals (a fractional target too), and marked below target if
// it is one (0: no target).
// With of set, it is instead the cost 1 - num/den, printed as a whole
// percentage "of" that.
// With p99 set, it is num's median p99 over den's, and target is a
// maximum. p99 ratios are printed but not gated: a tail on a shared
// machine moves far more than the gate's 5% from run to run.
// With paired set, it is the median of the rounds' own ratios, each of
// num's run over den's in the same round, and every round's is printed.
type ratio struct {
	label    string
	num, den string
	digits   int
	target   float64
	of       string
	p99      bool
	paired   bool
	// reference: printed, never compared with the baseline: it measures
	// the reference handlers, not plugind.
	reference bool
}

// value is q's ratio of results, with each round's when q is paired;
// NaN if results lack num or den (in the same round, for paired).
func (q ratio) value(results []result) (v float64, rounds []float64) {
	metric := func(r result) float64 {
		if q.p99 {
			return float64(r.p99)
		}
		return r.rps
	}
	num, den := map[int][]float64{}, map[int][]float64{}
	var all struct{ num, den []float64 }
	for _, r := range results {
		switch r.target {
		case q.num:
			num[r.round] = append(num[r.round], metric(r))
			all.num = append(all.num, metric(r))
		case q.den:
			den[r.round] = append(den[r.round], metric(r))
			all.den = append(all.den, metric(r))
		}
	}
	if !q.paired {
		if len(all.num) == 0 || len(all.den) == 0 {
			return math.NaN(), nil
		}
		return stats.Median(all.num) / stats.Median(all.den), nil
	}
	for _, round := range slices.Sorted(maps.Keys(num)) {
		if d, ok := den[round]; ok {
			rounds = append(rounds, stats.Median(num[round])/stats.Median(d))
		}
	}
	if len(rounds) == 0 {
		return math.NaN(), nil
	}
	return stats.Median(rounds), rounds
}

// cpuText is a CPU time per request as the report prints it.
func cpuText(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}

// errRunErrors is report's failure: a run saw errors.
var errRunErrors = errors.New("runs reported errors")

// report prints every run, then each target's medians and the ratios,
// recording the ratios in got for the gate. It
// fails if any run saw errors: its figures would then measure errors.
func report(w io.Writer, got map[string]float64, targets []target, results []result, ratios []ratio) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\ntarget\tround\treq/s\tp50\tp99\tCPU/req\terrors")
	failed := 0
	for _, r := range results {
		if r.errs != "" {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%s\n", r.target, r.round, r.rps, r.p50, r.p99, cpuText(r.cpu), cmp.Or(r.errs, "-"))
	}
	rps, p99 := map[string]float64{}, map[string]time.Duration{}
	for _, t := range targets {
		var rs []float64
		var p50s, p99s, cpus []time.Duration
		for _, r := range results {
			if r.target == t.name {
				rs, p50s, p99s = append(rs, r.rps), append(p50s, r.p50), append(p99s, r.p99)
				if r.cpu > 0 {
					cpus = append(cpus, r.cpu)
				}
			}
		}
		rps[t.name], p99[t.name] = stats.Median(rs), stats.Median(p99s)
		var cpu time.Duration
		if len(cpus) > 0 {
			cpu = stats.Median(cpus)
		}
		fmt.Fprintf(tw, "%s\tmedian\t%.0f\t%s\t%s\t%s\n", t.name, rps[t.name], stats.Median(p50s), p99[t.name], cpuText(cpu))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintln(w)
	for _, q := range ratios {
		v, rounds := q.value(results)
		each := ""
		if rounds != nil {
			s := make([]string, len(rounds))
			for i, r := range rounds {
				s[i] = strconv.FormatFloat(r, 'f', q.digits, 64)
			}
			each = fmt.Sprintf(", median of rounds' %s", strings.Join(s, ", "))
		}
		if q.p99 {
			fmt.Fprintf(w, "%s = %.*fx (medians %s / %s%s)", q.label, q.digits, v, p99[q.num], p99[q.den], each)
			if q.target > 0 {
				fmt.Fprintf(w, " (target <= %sx)", strconv.FormatFloat(q.target, 'f', -1, 64))
				if v > q.target {
					fmt.Fprint(w, ": above target")
				}
			}
			fmt.Fprintln(w)
			continue
		}
		if !q.reference {
			got[q.label] = v
		}
		if q.of != "" {
			c := math.Round((1 - v) * 100)
			if c == 0 {
				c = 0 // not -0
			}
			fmt.Fprintf(w, "%s = %.0f%% of %s\n", q.label, c, q.of)
			continue
		}
		fmt.Fprintf(w, "%s = %.*fx", q.label, q.digits, v)
		if each != "" {
			fmt.Fprintf(w, " (medians %.0f / %.0f req/s%s)", rps[q.num], rps[q.den], each)
		}
		if q.target > 0 {
			t := strconv.FormatFloat(q.target, 'f', -1, 64) // 30, not 30.0
			if q.target != math.Trunc(q.target) {
				t = strconv.FormatFloat(q.target, 'f', q.digits, 64) // 0.80, like the value
			}
			fmt.Fprintf(w, " (target >= %sx)", t)
			if v < q.target {
				fmt.Fprint(w, ": below target")
			}
		}
		fmt.Fprintln(w)
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d (see the errors column)", errRunErrors, failed, len(results))
	}
	return nil
}
