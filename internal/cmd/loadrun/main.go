// Command loadrun is the load-run half of `make bench`. It starts a plugind
// binary on a temporary plugin directory and measures it with wrk in two
// phases, each printed as a table of runs and medians with its ratios:
//
//  1. one plugin path (-path, -connections) against a plain net/http
//     handler in this process that answers the same bytes (the ceiling);
//  2. the standard ABI against prestd's legacy ABI, both handlers of -slow
//     sleeping 1 ms, at 64 connections, with a plain handler that sleeps
//     1 ms too as the ceiling. Legacy calls into one plugin run one at a
//     time, so they queue: 64 of them take ~80 ms, within wrk's 2 s timeout.
//
// The plugin sources are copied to <tmp>/src under their own base names, so
// -path must name -src's file, and -slow's must be another name. A run that
// reports errors fails the program once both phases are printed. All
// traffic goes to 127.0.0.1, and wrk must be on PATH:
//
//	apt-get install -y wrk
//	go run ./internal/cmd/loadrun -bin bin/plugind [-duration 10s] [-rounds 3]
package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

const (
	readyTimeout  = 30 * time.Second
	warmupTimeout = 3 * time.Minute // the first plugin build can take ~40 s
	stopTimeout   = 30 * time.Second
	maxBody       = 1 << 20
	targetRatio   = 0.85 // plugin path / plain handler

	// The ABI phase: -slow's handlers and the plain one sleep abiSleep.
	abiConns       = 64
	abiSleep       = time.Millisecond
	abiTargetRatio = 30 // standard / legacy
)

type options struct {
	bin, src, slow, path   string
	duration               time.Duration
	rounds, conns, threads int
}

// result is one wrk run.
type result struct {
	target   string
	round    int
	rps      float64
	p50, p99 time.Duration
	errs     string // wrk's error lines, "" if none
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/plugind", "path to the plugind binary")
	flag.StringVar(&o.src, "src", "lib/src/hello.go", "plugin source to serve")
	flag.StringVar(&o.slow, "slow", "testdata/plugins/slow.go", "plugin source with GETLegacyHandler and GETStandardHandler, for the ABI phase")
	flag.StringVar(&o.path, "path", "/_PLUGIN/hello/Hello?abc=123", "request path and query to measure")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each wrk run: whole seconds, 1s to 5m")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds, each measuring both targets: 1 to 20")
	flag.IntVar(&o.conns, "connections", 50, "wrk connections: 1 to 1000")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads: 1 to 64, at most -connections")
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "loadrun:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadrun:", err)
		os.Exit(1)
	}
}

func (o options) check() error {
	switch {
	case flag.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", flag.Args())
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
	logPath := filepath.Join(dir, "plugind.log")
	defer func() {
		if err != nil {
			printTail(logPath, 20)
		}
	}()

	srv, err := startServer(o.bin, dir, logPath, o.src, o.slow)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.stop()) }() // runs before printTail

	if _, _, err := srv.poll(ctx, srv.url("/readyz"), readyTimeout); err != nil {
		return fmt.Errorf("server not ready: %w", err)
	}
	err = pathPhase(ctx, srv, wrk, o)
	if err != nil && !errors.Is(err, errRunErrors) {
		return err
	}
	return errors.Join(err, abiPhase(ctx, srv, wrk, o))
}

// pathPhase measures -path against a plain handler answering its bytes.
func pathPhase(ctx context.Context, srv *server, wrk string, o options) error {
	fmt.Printf("phase 1: %s against a plain handler, %d connections\n", o.path, o.conns)
	body, ctype, err := srv.warm(ctx, o.path)
	if err != nil {
		return err
	}
	plain, closePlain, err := startPlain(fixed(ctype, body))
	if err != nil {
		return err
	}
	defer closePlain()
	targets := []target{{"plugin", srv.url(o.path)}, {"plain", plain + o.path}}
	results, err := measure(ctx, wrk, o, o.conns, targets)
	if err != nil {
		return err
	}
	return report(os.Stdout, targets, results, []ratio{
		{label: "plugin path / plain handler", num: "plugin", den: "plain", digits: 2, target: targetRatio},
	})
}

// abiPhase measures -slow's standard handler against its legacy one, with
// a plain handler sleeping as long as theirs as the ceiling.
func abiPhase(ctx context.Context, srv *server, wrk string, o options) error {
	fmt.Printf("\nphase 2: standard ABI against legacy ABI, %s handlers, %d connections\n", abiSleep, abiConns)
	name := strings.TrimSuffix(filepath.Base(o.slow), ".go")
	legacyPath, standardPath := "/_PLUGIN/"+name+"/Legacy", "/_PLUGIN/"+name+"/Standard"
	legacyBody, _, err := srv.warm(ctx, legacyPath) // builds the plugin
	if err != nil {
		return err
	}
	body, ctype, err := srv.warm(ctx, standardPath)
	if err != nil {
		return err
	}
	if !bytes.Equal(body, legacyBody) {
		return fmt.Errorf("%s answers %q but %s answers %q: want the same bytes", legacyPath, legacyBody, standardPath, body)
	}
	plain, closePlain, err := startPlain(after(abiSleep, fixed(ctype, body)))
	if err != nil {
		return err
	}
	defer closePlain()
	targets := []target{{"legacy", srv.url(legacyPath)}, {"standard", srv.url(standardPath)}, {"plain", plain + standardPath}}
	results, err := measure(ctx, wrk, o, abiConns, targets)
	if err != nil {
		return err
	}
	return report(os.Stdout, targets, results, []ratio{
		{label: "standard / legacy", num: "standard", den: "legacy", digits: 1, target: abiTargetRatio},
		{label: fmt.Sprintf("standard / plain (%d ms handlers)", abiSleep.Milliseconds()), num: "standard", den: "plain", digits: 2},
	})
}

// server is a running plugind child process.
type server struct {
	cmd     *exec.Cmd
	addr    string
	exited  chan struct{} // closed once the process has exited
	waitErr error         // cmd.Wait's result, set before exited closes
}

// startServer copies the plugin sources into dir/src and starts bin on a
// free port with its output in logPath. An empty explicit config file
// keeps a stray ./prest.toml and the caller's PREST_* variables out.
func startServer(bin, dir, logPath string, srcs ...string) (*server, error) {
	conf := filepath.Join(dir, "prest.toml")
	if err := errors.Join(os.Mkdir(filepath.Join(dir, "src"), 0o755), os.WriteFile(conf, nil, 0o644)); err != nil {
		return nil, fmt.Errorf("plugin dir: %w", err)
	}
	for _, src := range srcs {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("plugin source: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "src", filepath.Base(src)), data, 0o644); err != nil {
			return nil, fmt.Errorf("plugin dir: %w", err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("free port: %w", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor

	cmd := exec.Command(bin)
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PREST_") || strings.HasPrefix(kv, "PORT=")
	}), "PREST_CONF="+conf, "PREST_PLUGINPATH="+dir,
		"PREST_HTTP_HOST=127.0.0.1", "PREST_HTTP_PORT="+strconv.Itoa(addr.Port))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	s := &server{cmd: cmd, addr: addr.String(), exited: make(chan struct{})}
	go func() { s.waitErr = cmd.Wait(); close(s.exited) }()
	return s, nil
}

// url is the server's URL for path.
func (s *server) url(path string) string { return "http://" + s.addr + path }

// warm polls path until it answers 200, which the first request to a
// plugin does once it is built, and prints how long that took.
func (s *server) warm(ctx context.Context, path string) ([]byte, string, error) {
	start := time.Now()
	body, ctype, err := s.poll(ctx, s.url(path), warmupTimeout)
	if err != nil {
		return nil, "", fmt.Errorf("plugin not serving: %w", err)
	}
	fmt.Printf("%s: 200 after %s, %d-byte %s body\n", s.url(path), time.Since(start).Round(time.Millisecond), len(body), ctype)
	return body, ctype, nil
}

// stop sends SIGTERM and waits for the exit, killing after stopTimeout.
// A server that has already exited is an error: something else stopped it.
func (s *server) stop() error {
	select {
	case <-s.exited:
		return fmt.Errorf("the server exited before the end of the run (%s)", s.cmd.ProcessState)
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop server: %w", err)
	}
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("server still running %s after SIGTERM; killed it", stopTimeout)
	}
	if s.waitErr != nil {
		return fmt.Errorf("server exit: %w", s.waitErr)
	}
	return nil
}

// poll GETs url until it answers 200 and returns that answer's body and
// Content-Type. It gives up on an answer that will not change (4xx, 501),
// when the server exits or when limit passes.
func (s *server) poll(ctx context.Context, url string, limit time.Duration) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		body, ctype, err := get(ctx, url)
		var se *statusError
		switch {
		case err == nil:
			return body, ctype, nil
		case errors.As(err, &se) && (se.code < 500 || se.code == http.StatusNotImplemented):
			return nil, "", fmt.Errorf("GET %s: %w", url, err)
		}
		select {
		case <-s.exited:
			return nil, "", fmt.Errorf("server exited (%v); last GET %s: %w", s.waitErr, url, err)
		case <-ctx.Done():
			return nil, "", fmt.Errorf("no 200 within %s (%v); last GET %s: %w", limit, ctx.Err(), url, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, url string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	switch {
	case err != nil:
		return nil, "", err
	case resp.StatusCode != http.StatusOK:
		return nil, "", &statusError{resp.StatusCode, string(bytes.TrimSpace(body))}
	case len(body) > maxBody:
		return nil, "", fmt.Errorf("body longer than %d bytes", maxBody)
	}
	return body, resp.Header.Get("Content-Type"), nil
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("plain server: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
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

// target is a URL wrk measures, named in the report.
type target struct{ name, url string }

// measure runs wrk with conns connections on every target each round,
// starting one target later in each round, so that each leads in turn.
func measure(ctx context.Context, wrk string, o options, conns int, targets []target) ([]result, error) {
	var results []result
	for round := 1; round <= o.rounds; round++ {
		for i := range targets {
			t := targets[(i+round-1)%len(targets)]
			fmt.Printf("round %d/%d: %s, %s\n", round, o.rounds, t.name, o.duration)
			r, err := runWrk(ctx, wrk, o, conns, t.url)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round, t.name, err)
			}
			r.target, r.round = t.name, round
			results = append(results, r)
		}
	}
	return results, nil
}

func runWrk(ctx context.Context, wrk string, o options, conns int, url string) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.duration+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, wrk, "-t"+strconv.Itoa(o.threads), "-c"+strconv.Itoa(conns),
		fmt.Sprintf("-d%ds", o.duration/time.Second), "--latency", url).CombinedOutput()
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
	return r, nil
}

var (
	rpsLine  = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)\s*$`)
	distLine = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+[a-z]+)\s*$`)
	errLine  = regexp.MustCompile(`(?m)^\s*(Non-2xx or 3xx responses|Socket errors):.*$`)
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
// digits decimals, and marked below target if it is one (0: no target).
type ratio struct {
	label    string
	num, den string
	digits   int
	target   float64
}

// errRunErrors is report's failure: a run saw errors.
var errRunErrors = errors.New("runs reported errors")

// report prints every run, then each target's medians and the ratios. It
// fails if any run saw errors: its figures would then measure errors.
func report(w io.Writer, targets []target, results []result, ratios []ratio) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\ntarget\tround\treq/s\tp50\tp99\terrors")
	failed := 0
	for _, r := range results {
		if r.errs != "" {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\n", r.target, r.round, r.rps, r.p50, r.p99, cmp.Or(r.errs, "-"))
	}
	rps := map[string]float64{}
	for _, t := range targets {
		var rs []float64
		var p50s, p99s []time.Duration
		for _, r := range results {
			if r.target == t.name {
				rs, p50s, p99s = append(rs, r.rps), append(p50s, r.p50), append(p99s, r.p99)
			}
		}
		rps[t.name] = median(rs)
		fmt.Fprintf(tw, "%s\tmedian\t%.0f\t%s\t%s\n", t.name, rps[t.name], median(p50s), median(p99s))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintln(w)
	for _, q := range ratios {
		v := rps[q.num] / rps[q.den]
		fmt.Fprintf(w, "%s = %.*fx", q.label, q.digits, v)
		if q.target > 0 {
			fmt.Fprintf(w, " (target >= %sx)", strconv.FormatFloat(q.target, 'f', -1, 64))
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

// median of a non-empty slice; the mean of the middle two for even sizes.
func median[T float64 | time.Duration](v []T) T {
	s := slices.Sorted(slices.Values(v))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// printTail prints the last n lines of the server log to stderr, reading
// only the end of it: the access log has a line per request.
func printTail(path string, n int) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return // the server was never started
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "loadrun: server log:", err)
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 64<<10 {
		_, _ = f.Seek(-64<<10, io.SeekEnd)
	}
	data, _ := io.ReadAll(f)
	if len(bytes.TrimSpace(data)) == 0 {
		fmt.Fprintln(os.Stderr, "loadrun: the server log is empty")
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	fmt.Fprintf(os.Stderr, "loadrun: last %d lines of the server log:\n%s\n", len(lines), strings.Join(lines, "\n"))
}
