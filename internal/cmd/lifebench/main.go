// Command lifebench is the plugin-lifecycle half of `make bench`. It runs a
// plugind binary through a plugin's life and prints what each step costs:
//
//   - cold build: `plugind build` with an empty GOCACHE, which compiles the
//     standard library in plugin mode (15-60 s; -cold=false skips it);
//   - warm build: `plugind build` of a source nothing has cached (a unique
//     comment), the median of three, as plugind reports it;
//   - builds with a dependency: a plugin whose lib/go.mod requires a
//     module the server lacks (testdata/deps/lib-greet, from the test
//     module proxy, nothing from the network): its first build with an
//     empty module cache, a second plugin's with the module cached, and
//     the median of three edits (target: under 2 s);
//   - first call after restart: a server started on an artifact cache that
//     `plugind build` filled, three times: the time from process start to
//     /readyz 200, and the time of the first request;
//   - edit -> new code: with plugins.reload=on-change, from rewriting a
//     plugin's source to the new answer being served, -edits times, while 4
//     clients request the plugin and count failed requests;
//   - memory per reload: in a fresh server, free of the load's garbage,
//     the growth of VmRSS over -reloads reloads after 5 warm-up ones
//     (Linux only), and the artifact bytes per loaded version that
//     /_PLUGINS reports;
//   - isolated: the same plugin configured isolation = "process", in a
//     server of its own: the VmRSS of the server and its children across
//     -reloads reloads after 5 warm-up ones (target: within 10%, where
//     in-process memory grows with each reload), and each of its
//     processes' exec -> healthy time (target: under 100 ms), from the
//     server's log.
//
// Every step has its own temporary plugin and cache directories, removed at
// the end. -src is served as the plugin hello and must have
// GETHelloHandler. A missed target is marked "target missed"; the exit
// status is non-zero only when a step fails. All traffic goes to 127.0.0.1:
//
//	go run ./internal/cmd/lifebench -bin bin/plugind [-cold=false] [-edits 5] [-reloads 50]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/plugind/plugind/internal/benchproc"
	"github.com/plugind/plugind/internal/modproxy"
	"github.com/plugind/plugind/internal/stats"
)

const (
	coldTimeout    = 6 * time.Minute // plugind's own bound on a build is 5m
	warmTimeout    = 2 * time.Minute
	readyTimeout   = 30 * time.Second
	firstTimeout   = 3 * time.Minute // the first build of a server may be cold
	editTimeout    = 30 * time.Second
	requestTimeout = 10 * time.Second
	pollEvery      = 5 * time.Millisecond

	warmBuilds   = 3
	restarts     = 3
	loadClients  = 4
	firstTarget  = 50 * time.Millisecond
	firstLabel   = "< 50 ms"
	reloadTarget = 2 * time.Second
	reloadLabel  = "< 2 s"
	helloPath    = "/_PLUGIN/hello/Hello?abc=123"
	versionPath  = "/_PLUGIN/v/V"

	isolatedGrowth = 0.10 // RSS of the server and its children across the reloads, at most
	// warmupReloads come before the memory is read and the counted reloads
	// start: the first reloads grow the server's RSS once (+2-5 MiB here,
	// mostly outside the Go heap: likely its code for watching, building
	// and starting, paged in), and no later reload adds to it. Both
	// figures are printed.
	warmupReloads   = 5
	isolatedHealthy = 100 * time.Millisecond
	retireTimeout   = 30 * time.Second // a retired child's exit after a reload: isolate's grace is 10 s
)

type options struct {
	bin, src, testdata string
	reloads, edits     int
	cold               bool
}

// row is one line of the final table.
type row struct {
	measure, value, target string
	below                  bool // the value misses the target
}

// step is one measurement; a failed step is reported by name.
type step struct {
	name string
	run  func(ctx context.Context, o options) ([]row, error)
	// skip, if set, returns the row of a step the options leave out.
	skip func(o options) (row, bool)
}

// coldMeasure names the cold build's row.
const coldMeasure = "cold build (empty GOCACHE), wall time"

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/plugind", "path to the plugind binary")
	flag.StringVar(&o.src, "src", "lib/src/hello.go", "plugin source, served as the plugin hello")
	flag.IntVar(&o.reloads, "reloads", 50, "reloads measured for memory, in-process and isolated: 1 to 100")
	flag.IntVar(&o.edits, "edits", 5, "edits timed until their new code is served: 1 to 100")
	flag.BoolVar(&o.cold, "cold", true, "measure a build with an empty GOCACHE (15-60 s)")
	flag.StringVar(&o.testdata, "testdata", "testdata", "the repository's testdata: the module proxy's fixtures and a plugin that uses one")
	flag.Parse()
	benchproc.Main("lifebench", o.check(), func(ctx context.Context) error { return run(ctx, o) })
}

func (o options) check() error {
	switch {
	case o.reloads < 1 || o.reloads > 100:
		return fmt.Errorf("-reloads %d: want 1 to 100", o.reloads)
	case o.edits < 1 || o.edits > 100:
		return fmt.Errorf("-edits %d: want 1 to 100", o.edits)
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("-bin: %w (go build -o bin/plugind .)", err)
	}
	if _, err := os.Stat(o.src); err != nil {
		return fmt.Errorf("-src: %w", err)
	}
	return nil
}

// run runs every step, even after one fails, and prints the table.
func run(ctx context.Context, o options) error {
	steps := []step{
		{name: "cold build", run: coldBuild, skip: func(o options) (row, bool) {
			return row{measure: coldMeasure, value: "skipped (-cold=false)", target: "-"}, !o.cold
		}},
		{name: "warm build", run: warmBuild},
		{name: "builds with a dependency", run: dependencyBuilds},
		{name: "first call after restart", run: firstCall},
		{name: "edit -> new code and memory per reload", run: reloads},
		{name: "isolated: memory across reloads and exec -> healthy", run: isolatedReloads},
	}
	var rows []row
	var errs []error
	for _, s := range steps {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.name, ctx.Err()))
			break
		}
		if s.skip != nil {
			if r, skipped := s.skip(o); skipped {
				fmt.Printf("%s: %s\n", s.name, r.value)
				rows = append(rows, r)
				continue
			}
		}
		fmt.Printf("%s...\n", s.name)
		start := time.Now()
		r, err := s.run(ctx, o)
		rows = append(rows, r...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "lifebench: %s: %v\n", s.name, err)
			rows = append(rows, row{measure: s.name, value: "FAILED", target: "-"})
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
			continue
		}
		fmt.Printf("%s: done in %s\n", s.name, fmtDur(time.Since(start)))
	}
	if err := report(os.Stdout, rows); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// coldBuild times `plugind build hello` with an empty GOCACHE.
func coldBuild(ctx context.Context, o options) ([]row, error) {
	dir, _, err := helloDir(o)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	gocache := filepath.Join(dir, "gocache")
	if err := os.Mkdir(gocache, 0o755); err != nil {
		return nil, fmt.Errorf("GOCACHE: %w", err)
	}
	b, err := build(ctx, o.bin, dir, "hello", coldTimeout, "GOCACHE="+gocache)
	if err != nil {
		return nil, err
	}
	return []row{{measure: coldMeasure, value: fmt.Sprintf("%s (go build %s)", fmtDur(b.wall), fmtDur(b.reported)), target: "-"}}, nil
}

// warmBuild reports the median of plugind's build durations for sources
// that differ by a comment, after one untimed build warms GOCACHE.
func warmBuild(ctx context.Context, o options) ([]row, error) {
	dir, src, err := helloDir(o)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if _, err := build(ctx, o.bin, dir, "hello", firstTimeout); err != nil {
		return nil, fmt.Errorf("untimed first build: %w", err)
	}
	file := filepath.Join(dir, "src", "hello.go")
	nonce := newNonce()
	var durs []time.Duration
	for i := range warmBuilds {
		edited := fmt.Appendf(slices.Clip(src), "\n// lifebench %s %d\n", nonce, i)
		if err := os.WriteFile(file, edited, 0o644); err != nil {
			return nil, fmt.Errorf("plugin source: %w", err)
		}
		b, err := build(ctx, o.bin, dir, "hello", warmTimeout)
		if err != nil {
			return nil, fmt.Errorf("build %d: %w", i+1, err)
		}
		if b.cached {
			return nil, fmt.Errorf("build %d: plugind says cached, for a source it has not seen", i+1)
		}
		durs = append(durs, b.reported)
	}
	return []row{{
		measure: fmt.Sprintf("warm build, median of %d", warmBuilds),
		value:   fmt.Sprintf("%s (%s)", fmtDur(stats.Median(durs)), fmtDurs(durs)),
		target:  "-",
	}}, nil
}

// dependencyBuilds times plugind build for a plugin that imports a module
// the server lacks (testdata/deps/lib-greet: lib/go.mod requires
// example.com/greet, served by the test module proxy, so nothing reaches
// the network): first with a module cache of its own, empty (the
// server's dependencies then come from the machine's module cache, as
// the proxy's second entry); then a second plugin with the same
// dependency, the module cached; then edits of the first, as warmBuild
// times them without a dependency.
func dependencyBuilds(ctx context.Context, o options) ([]row, error) {
	dir, err := os.MkdirTemp("", "lifebench-deps-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	fixtures := o.testdata
	proxy, err := modproxy.Build(filepath.Join(fixtures, "modules"), filepath.Join(dir, "proxy"))
	if err != nil {
		return nil, err
	}
	lib := filepath.Join(fixtures, "deps", "lib-greet")
	files := map[string][]byte{}
	for _, f := range []string{"go.mod", "go.sum", "src/greet.go"} {
		data, err := os.ReadFile(filepath.Join(lib, filepath.FromSlash(f)))
		if err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
		files[f] = data
	}
	if err := benchproc.PluginDir(dir, map[string][]byte{"greet.go": files["src/greet.go"], "greet2.go": files["src/greet.go"]}); err != nil {
		return nil, err
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if err := os.WriteFile(filepath.Join(dir, f), files[f], 0o644); err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
	}
	env := proxy.Env(filepath.Join(dir, "modcache"))
	first, err := build(ctx, o.bin, dir, "greet", firstTimeout, env...)
	if err != nil {
		return nil, fmt.Errorf("first build: %w", err)
	}
	second, err := build(ctx, o.bin, dir, "greet2", warmTimeout, env...)
	if err != nil {
		return nil, fmt.Errorf("second plugin: %w", err)
	}
	nonce := newNonce()
	var durs []time.Duration
	for i := range warmBuilds {
		edited := fmt.Appendf(slices.Clip(files["src/greet.go"]), "\n// lifebench %s %d\n", nonce, i)
		if err := os.WriteFile(filepath.Join(dir, "src", "greet.go"), edited, 0o644); err != nil {
			return nil, fmt.Errorf("plugin source: %w", err)
		}
		b, err := build(ctx, o.bin, dir, "greet", warmTimeout, env...)
		if err != nil {
			return nil, fmt.Errorf("edit %d: %w", i+1, err)
		}
		durs = append(durs, b.reported)
	}
	return []row{
		{measure: "first build with a dependency, empty module cache", value: fmt.Sprintf("%s (go build %s)", fmtDur(first.wall), fmtDur(first.reported)), target: "-"},
		{measure: "first build with a dependency, module cached", value: fmt.Sprintf("%s (go build %s)", fmtDur(second.wall), fmtDur(second.reported)), target: "-"},
		{measure: fmt.Sprintf("edit with a dependency, build median of %d", warmBuilds), value: fmt.Sprintf("%s (%s)", fmtDur(stats.Median(durs)), fmtDurs(durs)),
			target: "< 2 s", below: stats.Median(durs) >= 2*time.Second},
	}, nil
}

// firstCall builds hello with `plugind build`, then restarts a server on
// that cache and times readiness and the first request, each time.
func firstCall(ctx context.Context, o options) ([]row, error) {
	dir, _, err := helloDir(o)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if _, err := build(ctx, o.bin, dir, "hello", firstTimeout); err != nil {
		return nil, err
	}
	var ready, first []time.Duration
	var rebuilt int
	for i := range restarts {
		err := withServer(ctx, o.bin, dir, fmt.Sprintf("server-%d.log", i+1),
			[]string{"PREST_PLUGINS_WARMUP=false", "PREST_PLUGINS_RELOAD=off"},
			func(s *server) error {
				r, err := s.waitReady(ctx)
				if err != nil {
					return err
				}
				start := time.Now()
				code, body, err := s.get(ctx, helloPath)
				d := time.Since(start)
				if err != nil {
					return fmt.Errorf("first call: %w", err)
				}
				if code != http.StatusOK {
					return fmt.Errorf("first call: status %d: %s", code, bytes.TrimSpace(body))
				}
				p, err := s.plugin(ctx, "hello")
				if err != nil {
					return err
				}
				if len(p.Versions) != 1 {
					return fmt.Errorf("/_PLUGINS lists %d versions of hello, want 1", len(p.Versions))
				}
				if p.Versions[0].BuildDuration != 0 {
					rebuilt++ // the server did not use what plugind build left
				}
				ready, first = append(ready, r), append(first, d)
				return nil
			})
		if err != nil {
			return nil, fmt.Errorf("restart %d: %w", i+1, err)
		}
	}
	if rebuilt > 0 {
		fmt.Fprintf(os.Stderr, "lifebench: the server rebuilt hello on %d of %d first calls instead of loading the artifact plugind build made\n", rebuilt, restarts)
	}
	return []row{
		{measure: fmt.Sprintf("process start -> /readyz 200, median of %d", restarts), value: fmtDur(stats.Median(ready)), target: "-"},
		{measure: fmt.Sprintf("first call after restart, median of %d", restarts), value: fmtDur(stats.Median(first)), target: firstLabel, below: stats.Median(first) >= firstTarget},
		{measure: fmt.Sprintf("first call after restart, max of %d", restarts), value: fmtDur(slices.Max(first)), target: firstLabel, below: slices.Max(first) >= firstTarget},
	}, nil
}

// reloads times edits to a plugin under load in a server that reloads on
// change, then measures the memory further reloads cost in a fresh server
// on the same directories, so that the load's garbage does not blur it.
func reloads(ctx context.Context, o options) ([]row, error) {
	nonce := newNonce()
	dir, err := pluginDir("v", versionSource(0, nonce))
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	env := []string{"PREST_PLUGINS_WARMUP=false", "PREST_PLUGINS_RELOAD=on-change"}
	var rows []row
	err = withServer(ctx, o.bin, dir, "server-edits.log", env, func(s *server) error {
		if err := s.serving(ctx, versionAnswer(0, nonce)); err != nil {
			return err
		}
		r, err := editUnderLoad(ctx, s, dir, o.edits, nonce)
		rows = append(rows, r...)
		return err
	})
	if err != nil {
		return rows, err
	}
	err = withServer(ctx, o.bin, dir, "server-memory.log", env, func(s *server) error {
		if err := s.serving(ctx, versionAnswer(o.edits, nonce)); err != nil { // from the cache
			return err
		}
		r, err := memoryPerReload(ctx, s, dir, o.edits, o.reloads, nonce)
		rows = append(rows, r...)
		return err
	})
	return rows, err
}

// serving waits for the server to be ready and plugin v to answer want.
func (s *server) serving(ctx context.Context, want string) error {
	if _, err := s.waitReady(ctx); err != nil {
		return err
	}
	if _, err := s.waitAnswer(ctx, want, firstTimeout, nil); err != nil {
		return fmt.Errorf("first request to v: %w", err)
	}
	return nil
}

// editUnderLoad rewrites v.go edits times, timing each until its answer is
// served, while loadClients goroutines request v and count failures.
func editUnderLoad(ctx context.Context, s *server, dir string, edits int, nonce string) ([]row, error) {
	var c counts
	stopLoad := s.load(ctx, versionPath, loadClients, nonce, &c)
	var durs []time.Duration
	var err error
	for i := 1; i <= edits && err == nil; i++ {
		var d time.Duration
		if d, err = edit(ctx, s, dir, i, nonce, &c); err == nil {
			durs = append(durs, d)
		}
	}
	stopLoad()
	if err != nil {
		return nil, err
	}
	failed := c.non200.Load() + c.transport.Load() + c.wrong.Load()
	return []row{
		{measure: fmt.Sprintf("edit -> new code, median of %d", edits), value: fmtDur(stats.Median(durs)), target: reloadLabel, below: stats.Median(durs) >= reloadTarget},
		{measure: fmt.Sprintf("edit -> new code, max of %d", edits), value: fmtDur(slices.Max(durs)), target: reloadLabel, below: slices.Max(durs) >= reloadTarget},
		{
			measure: "failed requests during reloads",
			value: fmt.Sprintf("%d of %d (%d non-200, %d transport errors, %d wrong or older answers)",
				failed, c.total.Load(), c.non200.Load(), c.transport.Load(), c.wrong.Load()),
			target: "0",
			below:  failed > 0,
		},
	}, nil
}

// memoryPerReload reloads v reloads more times, from version edits, and
// reports the growth of the server's resident memory and the bytes
// /_PLUGINS counts per version.
func memoryPerReload(ctx context.Context, s *server, dir string, edits, reloads int, nonce string) ([]row, error) {
	var rows []row
	mem, err := s.memoryAcross(ctx, dir, edits, reloads, nonce, 0)
	switch {
	case errors.Is(err, stats.ErrNoProc):
		rows = append(rows, row{measure: fmt.Sprintf("in-process: RSS across %d reloads", reloads), value: "skipped: VmRSS is read from /proc (Linux only)", target: "-"})
	case err != nil:
		return nil, err
	default:
		rows = append(rows,
			row{measure: fmt.Sprintf("in-process: RSS of the server after %d warm-up reloads, across %d more", warmupReloads, reloads), value: mem.String(), target: "-"},
			row{measure: fmt.Sprintf("in-process: RSS growth per reload, over %d", reloads), value: fmtPerReload(mem.perReload()), target: "-"})
	}
	p, err := s.plugin(ctx, "v")
	if err != nil {
		return rows, err
	}
	if want := 1 + warmupReloads + reloads; len(p.Versions) != want {
		return rows, fmt.Errorf("/_PLUGINS lists %d versions of v, want %d", len(p.Versions), want)
	}
	return append(rows, row{
		measure: "artifact bytes per loaded version (/_PLUGINS)",
		value:   fmt.Sprintf("%s (%s in %d versions)", fmtMiB(float64(p.Bytes)/float64(len(p.Versions))), fmtMiB(float64(p.Bytes)), len(p.Versions)),
		target:  "-",
	}), nil
}

// isolatedReloads runs plugin v in a process of its own, in a fresh
// server that reloads on change, reloads it -reloads times and reports
// the memory the server and its children keep, and how long each of the
// plugin's processes took from exec to its first answer.
func isolatedReloads(ctx context.Context, o options) ([]row, error) {
	nonce := newNonce()
	dir, err := pluginDir("v", versionSource(0, nonce))
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := benchproc.WriteConfig(dir, "[plugin.v]\nisolation = \"process\"\n"); err != nil {
		return nil, err
	}
	var rows []row
	const logName = "server-isolated.log"
	err = withServer(ctx, o.bin, dir, logName, []string{"PREST_PLUGINS_WARMUP=false", "PREST_PLUGINS_RELOAD=on-change"}, func(s *server) error {
		if err := s.serving(ctx, versionAnswer(0, nonce)); err != nil { // builds the program
			return err
		}
		mem, err := s.memoryAcross(ctx, dir, 0, o.reloads, nonce, 1)
		switch {
		case errors.Is(err, stats.ErrNoProc):
			rows = append(rows, row{measure: fmt.Sprintf("isolated: RSS across %d reloads", o.reloads), value: "skipped: VmRSS is read from /proc (Linux only)", target: "-"})
		case err != nil:
			return err
		default:
			growth := mem.growth()
			rows = append(rows,
				row{measure: fmt.Sprintf("isolated: RSS of the server and its child after %d warm-up reloads, across %d more", warmupReloads, o.reloads), value: mem.String(),
					target: fmt.Sprintf("within %.0f%%", isolatedGrowth*100), below: growth > isolatedGrowth || growth < -isolatedGrowth},
				row{measure: fmt.Sprintf("isolated: RSS growth per reload, over %d", o.reloads), value: fmtPerReload(mem.perReload()), target: "about 0"},
				row{measure: fmt.Sprintf("isolated: edit -> new code, median of %d", o.reloads), value: fmtDur(stats.Median(mem.edits)), target: "-"})
		}
		return nil
	})
	if err != nil {
		return rows, err
	}
	starts, err := execToHealthy(filepath.Join(dir, logName), "v")
	if err != nil {
		return rows, err
	}
	if want := 1 + warmupReloads + o.reloads; len(starts) != want { // no crash, no restart
		return rows, fmt.Errorf("%s: %d processes of v started, want %d (one, then one per reload)", logName, len(starts), want)
	}
	return append(rows,
		row{measure: fmt.Sprintf("isolated: exec -> healthy, median of %d starts", len(starts)), value: fmtDur(stats.Median(starts)), target: "< 100 ms", below: stats.Median(starts) >= isolatedHealthy},
		row{measure: fmt.Sprintf("isolated: exec -> healthy, max of %d starts", len(starts)), value: fmtDur(slices.Max(starts)), target: "< 100 ms", below: slices.Max(starts) >= isolatedHealthy},
	), nil
}

// memory is the RSS of a server and its children at the first call, after
// the warm-up reloads (before) and after the counted ones, and the largest
// seen after any counted one.
type memory struct {
	warmup, reloads           int
	first, before, after, max int64
	edits                     []time.Duration // each counted reload's edit -> new code
}

func (m memory) growth() float64    { return float64(m.after-m.before) / float64(m.before) }
func (m memory) perReload() float64 { return float64(m.after-m.before) / float64(m.reloads) }

func (m memory) String() string {
	return fmt.Sprintf("%s, %d more: %s (%+.1f%%), max %s; first call %s (%+.1f%% to the end)",
		fmtMiB(float64(m.before)), m.reloads, fmtMiB(float64(m.after)), 100*m.growth(), fmtMiB(float64(m.max)),
		fmtMiB(float64(m.first)), 100*float64(m.after-m.first)/float64(m.first))
}

// memoryAcross reloads v warmupReloads times, then reloads times more,
// from version from, and reads the RSS of the server and its children at
// the start, after the warm-up and after each counted reload, once exactly
// children processes are left (a reload's build has ended and, isolated,
// the retired process has exited).
func (s *server) memoryAcross(ctx context.Context, dir string, from, reloads int, nonce string, children int) (memory, error) {
	if runtime.GOOS != "linux" {
		return memory{}, stats.ErrNoProc
	}
	m := memory{warmup: warmupReloads, reloads: reloads}
	var err error
	if m.first, err = s.settledRSS(ctx, children); err != nil {
		return m, fmt.Errorf("before the reloads: %w", err)
	}
	for i := from + 1; i <= from+warmupReloads+reloads; i++ {
		d, err := edit(ctx, s, dir, i, nonce, nil)
		if err != nil {
			return m, err
		}
		rss, err := s.settledRSS(ctx, children)
		if err != nil {
			return m, fmt.Errorf("after reload %d: %w", i-from, err)
		}
		if i-from == warmupReloads {
			m.before = rss
			continue
		} else if i-from < warmupReloads {
			continue
		}
		m.edits = append(m.edits, d)
		m.after, m.max = rss, max(m.max, rss)
	}
	return m, nil
}

// settledRSS waits, up to retireTimeout, until the server has exactly
// children processes below it, and returns the RSS of all of them.
func (s *server) settledRSS(ctx context.Context, children int) (int64, error) {
	var total int64
	err := s.Poll(ctx, retireTimeout, 10*time.Millisecond, func(context.Context) (bool, error) {
		pids, err := descendants(s.Cmd.Process.Pid)
		if err != nil {
			return true, err
		}
		if len(pids) != children {
			return false, fmt.Errorf("%d processes below the server, want %d", len(pids), children)
		}
		total = 0
		for _, pid := range append(pids, s.Cmd.Process.Pid) {
			n, err := stats.RSS(pid)
			if err != nil {
				return false, err // it may just have exited
			}
			total += n
		}
		return true, nil
	})
	return total, err
}

// descendants lists the processes below pid, from /proc/*/stat (Linux).
func descendants(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("processes: %w", err)
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	return out, nil
}

// execToHealthy reads the exec -> healthy times of plugin's processes
// from the server's JSON log: isolate logs each start as "plugin process
// started" with exec_to_healthy in milliseconds (zerolog's Dur).
func execToHealthy(logPath, plugin string) ([]time.Duration, error) {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	var out []time.Duration
	for _, line := range bytes.Split(data, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"plugin process started"`)) {
			continue
		}
		var e struct {
			Plugin  string   `json:"plugin"`
			Message string   `json:"message"`
			MS      *float64 `json:"exec_to_healthy"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("server log: %q: %w", line, err)
		}
		if e.Plugin != plugin || e.Message != "plugin process started" {
			continue
		}
		if e.MS == nil {
			return nil, fmt.Errorf("server log: no exec_to_healthy in %q", line)
		}
		out = append(out, time.Duration(*e.MS*float64(time.Millisecond)))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("server log %s: no start of plugin %s", logPath, plugin)
	}
	return out, nil
}

// edit writes version i of v.go and returns how long its answer took to be
// served, polling every pollEvery.
func edit(ctx context.Context, s *server, dir string, i int, nonce string, c *counts) (time.Duration, error) {
	file := filepath.Join(dir, "src", "v.go")
	start := time.Now()
	if err := os.WriteFile(file, versionSource(i, nonce), 0o644); err != nil {
		return 0, fmt.Errorf("edit %d: %w", i, err)
	}
	if _, err := s.waitAnswer(ctx, versionAnswer(i, nonce), editTimeout, c); err != nil {
		return 0, fmt.Errorf("edit %d: %w", i, err)
	}
	return time.Since(start), nil
}

// versionSource is plugin v at version i: prestd's ABI, one answer.
func versionSource(i int, nonce string) []byte {
	return fmt.Appendf(nil, "// Package main is lifebench's plugin v, version %d.\npackage main\n\n"+
		"// GETVHandler answers the version.\nfunc GETVHandler() string { return %q }\n", i, versionAnswer(i, nonce))
}

func versionAnswer(i int, nonce string) string { return fmt.Sprintf("v%d-%s", i, nonce) }

// versionOf parses an answer of plugin v; ok is false for anything else.
func versionOf(body []byte, nonce string) (int, bool) {
	rest, ok := strings.CutPrefix(string(body), "v")
	if !ok {
		return 0, false
	}
	n, got, ok := strings.Cut(rest, "-")
	if !ok || got != nonce {
		return 0, false
	}
	i, err := strconv.Atoi(n)
	return i, err == nil
}

// newNonce is unique per run, so neither cache has seen the sources.
func newNonce() string { return strconv.FormatInt(time.Now().UnixNano(), 36) }

// pluginDir makes a temporary plugin directory holding src/NAME.go and an
// empty config file. The caller removes it.
// helloDir makes a plugin dir holding -src as hello.go, and returns the
// source too.
func helloDir(o options) (dir string, src []byte, err error) {
	src, err = os.ReadFile(o.src)
	if err != nil {
		return "", nil, fmt.Errorf("plugin source: %w", err)
	}
	dir, err = pluginDir("hello", src)
	return dir, src, err
}

func pluginDir(name string, src []byte) (string, error) {
	dir, err := os.MkdirTemp("", "lifebench-")
	if err != nil {
		return "", fmt.Errorf("temp dir: %w", err)
	}
	if err := benchproc.PluginDir(dir, map[string][]byte{name + ".go": src}); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// cacheEnv puts plugind's artifact cache in dir/cache, for builds and
// servers on dir alike.
func cacheEnv(dir string) string { return "PREST_PLUGINS_CACHEDIR=" + filepath.Join(dir, "cache") }

// built is the outcome of one `plugind build`.
type built struct {
	cached   bool
	reported time.Duration // what plugind printed; 0 when cached
	wall     time.Duration
}

// build runs `plugind build name` on dir and parses its line for name.
// On failure it prints the end of the command's output.
func build(ctx context.Context, bin, dir, name string, limit time.Duration, extra ...string) (b built, err error) {
	logPath := filepath.Join(dir, "build.log")
	defer func() {
		if err != nil {
			benchproc.PrintTail("lifebench", "build.log", logPath, 20)
		}
	}()
	logFile, err := os.Create(logPath)
	if err != nil {
		return b, fmt.Errorf("build log: %w", err)
	}
	defer logFile.Close()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "build", name)
	cmd.Env = benchproc.Env(dir, append([]string{cacheEnv(dir)}, extra...)...)
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, logFile), logFile
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) } // plugind stops its go build
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err = cmd.Run()
	b.wall = time.Since(start)
	if ctx.Err() != nil {
		return b, fmt.Errorf("plugind build %s: stopped after %s: %w", name, fmtDur(b.wall), ctx.Err())
	}
	if err != nil {
		return b, fmt.Errorf("plugind build %s: %w", name, err)
	}
	return parseBuild(out.String(), name, b)
}

// parseBuild reads "NAME built HASH DURATION" or "NAME cached HASH".
func parseBuild(out, name string, b built) (built, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) < 3 || f[0] != name:
			continue
		case f[1] == "cached":
			b.cached = true
			return b, nil
		case f[1] == "built" && len(f) == 4:
			d, err := time.ParseDuration(f[3])
			if err != nil {
				return b, fmt.Errorf("plugind build: duration in %q: %w", line, err)
			}
			b.reported = d
			return b, nil
		}
	}
	return b, fmt.Errorf("plugind build: no built or cached line for %s in %q", name, out)
}

// server is a running plugind child process with its own client.
type server struct {
	*benchproc.Server
	client *http.Client
}

// withServer starts plugind on dir with extra environment, with its output
// in dir/logName, runs f and stops the server. On failure it prints the
// end of the server's log, after the server has flushed it.
func withServer(ctx context.Context, bin, dir, logName string, extra []string, f func(*server) error) (err error) {
	logPath := filepath.Join(dir, logName)
	defer func() {
		if err != nil {
			benchproc.PrintTail("lifebench", logName, logPath, 20)
		}
	}()
	ports, err := benchproc.FreePorts(1)
	if err != nil {
		return err
	}
	p, err := benchproc.Start(bin, dir, ports[0], logPath, append([]string{cacheEnv(dir)}, extra...)...)
	if err != nil {
		return err
	}
	s := &server{Server: p, client: &http.Client{
		Timeout:   requestTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 2 * loadClients, DisableCompression: true},
	}}
	defer func() { // runs before printTail
		s.client.CloseIdleConnections()
		err = errors.Join(err, s.Stop())
	}()
	return f(s)
}

// get requests path and returns the status and body.
func (s *server) get(ctx context.Context, path string) (int, []byte, error) {
	resp, body, err := benchproc.Get(ctx, s.client, s.URL(path), "")
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// waitReady polls /readyz until it answers 200 and returns the time since
// the process started.
func (s *server) waitReady(ctx context.Context) (time.Duration, error) {
	return s.poll(ctx, "/readyz", readyTimeout, func(code int, _ []byte) bool { return code == http.StatusOK }, nil)
}

// waitAnswer polls path until it answers 200 with want, counting other
// answers in c if c is not nil.
func (s *server) waitAnswer(ctx context.Context, want string, limit time.Duration, c *counts) (time.Duration, error) {
	return s.poll(ctx, versionPath, limit, func(code int, body []byte) bool {
		return code == http.StatusOK && string(body) == want
	}, c)
}

// poll GETs path every pollEvery until done accepts an answer, the server
// exits or limit passes. It returns the time since the server started.
func (s *server) poll(ctx context.Context, path string, limit time.Duration, done func(int, []byte) bool, c *counts) (time.Duration, error) {
	err := s.Poll(ctx, limit, pollEvery, func(ctx context.Context) (bool, error) {
		code, body, err := s.get(ctx, path)
		if c != nil && ctx.Err() == nil {
			c.count(code, err, true)
		}
		if err == nil && done(code, body) {
			return true, nil
		}
		if err == nil {
			err = fmt.Errorf("status %d: %q", code, bytes.TrimSpace(body))
		}
		return false, fmt.Errorf("GET %s: %w", path, err)
	})
	if err != nil {
		return 0, err
	}
	return time.Since(s.Started), nil
}

// pluginInfo is the part of a /_PLUGINS entry lifebench reads.
type pluginInfo struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Bytes    int64  `json:"bytes"`
	Versions []struct {
		Hash          string `json:"hash"`
		Bytes         int64  `json:"bytes"`
		BuildDuration int64  `json:"build_duration_ns"`
		Current       bool   `json:"current"`
	} `json:"versions"`
}

// plugin returns the /_PLUGINS entry of name.
func (s *server) plugin(ctx context.Context, name string) (pluginInfo, error) {
	code, body, err := s.get(ctx, "/_PLUGINS")
	if err != nil {
		return pluginInfo{}, fmt.Errorf("GET /_PLUGINS: %w", err)
	}
	if code != http.StatusOK {
		return pluginInfo{}, fmt.Errorf("GET /_PLUGINS: status %d: %s", code, bytes.TrimSpace(body))
	}
	var list struct {
		Plugins []pluginInfo `json:"plugins"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return pluginInfo{}, fmt.Errorf("GET /_PLUGINS: %w", err)
	}
	for _, p := range list.Plugins {
		if p.Name == name {
			return p, nil
		}
	}
	return pluginInfo{}, fmt.Errorf("GET /_PLUGINS: no plugin %s", name)
}

// counts are the answers of the load during reloads.
type counts struct {
	total, non200, transport, wrong atomic.Int64
}

// count records one answer; ok is false for a 200 with a wrong body.
func (c *counts) count(code int, err error, ok bool) {
	c.total.Add(1)
	switch {
	case err != nil:
		c.transport.Add(1)
	case code != http.StatusOK:
		c.non200.Add(1)
	case !ok:
		c.wrong.Add(1)
	}
}

// load runs n goroutines that GET path back to back until the returned
// function is called. An answer must be a version of plugin v, never older
// than one the same goroutine saw before.
func (s *server) load(ctx context.Context, path string, n int, nonce string, c *counts) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			newest := -1
			for {
				code, body, err := s.get(ctx, path)
				if ctx.Err() != nil {
					return // stopped: this answer is not the server's
				}
				v, ok := versionOf(body, nonce)
				ok = ok && v >= newest
				newest = max(newest, v)
				c.count(code, err, ok)
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}

// report prints the table, marking rows that miss their target.
func report(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "\nmeasure\t| value\t| target")
	for _, r := range rows {
		target := r.target
		if r.below {
			target += ": target missed"
		}
		fmt.Fprintf(tw, "%s\t| %s\t| %s\n", r.measure, r.value, target)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// fmtDur is d in ms below a second, in s above.
func fmtDur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func fmtDurs(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = fmtDur(d)
	}
	return strings.Join(s, ", ")
}

func fmtMiB(b float64) string { return fmt.Sprintf("%.2f MiB", b/(1<<20)) }

// fmtPerReload is b, signed, in MiB from 1 MiB, in KiB below.
func fmtPerReload(b float64) string {
	if math.Abs(b) >= 1<<20 {
		return fmt.Sprintf("%+.2f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%+.0f KiB", b/(1<<10))
}
