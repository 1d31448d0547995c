// Command loadrun is the load-run half of `make bench`: it starts a
// plugind binary on a private plugin directory, measures one plugin path
// with wrk, measures a plain net/http handler that answers the same bytes
// (the ceiling), and prints both with their ratio.
//
// All traffic goes to 127.0.0.1. wrk must be on PATH (apt-get install -y
// wrk). The plugin source is copied into <tmp>/src under its own base
// name, so -path must name that file.
//
// Usage:
//
//	go run ./internal/cmd/loadrun -bin bin/plugind [-duration 10s] [-rounds 3]
package main

import (
	"bufio"
	"bytes"
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
	targetRatio   = 0.85
	logTailLines  = 20
)

type options struct {
	bin, src, path        string
	duration              time.Duration
	rounds, conns, thread int
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
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadrun:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadrun:", err)
		os.Exit(1)
	}
}

func parseFlags() (options, error) {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/plugind", "path to the plugind binary")
	flag.StringVar(&o.src, "src", "lib/src/hello.go", "plugin source to serve")
	flag.StringVar(&o.path, "path", "/_PLUGIN/hello/Hello?abc=123", "request path and query to measure")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each wrk run, whole seconds, 1s-5m")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds, each measuring both targets (1-20)")
	flag.IntVar(&o.conns, "connections", 50, "wrk connections (1-1000)")
	flag.IntVar(&o.thread, "threads", 2, "wrk threads (1-64, at most -connections)")
	flag.Parse()
	switch {
	case flag.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", flag.Args())
	case o.duration < time.Second || o.duration > 5*time.Minute || o.duration%time.Second != 0:
		return o, fmt.Errorf("-duration %s: want whole seconds from 1s to 5m", o.duration)
	case o.rounds < 1 || o.rounds > 20:
		return o, fmt.Errorf("-rounds %d: want 1-20", o.rounds)
	case o.conns < 1 || o.conns > 1000:
		return o, fmt.Errorf("-connections %d: want 1-1000", o.conns)
	case o.thread < 1 || o.thread > 64 || o.thread > o.conns:
		return o, fmt.Errorf("-threads %d: want 1-64 and at most -connections", o.thread)
	case !strings.HasPrefix(o.path, "/"):
		return o, fmt.Errorf("-path %q: must start with /", o.path)
	}
	return o, nil
}

func run(ctx context.Context, o options) (err error) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return fmt.Errorf("wrk not found on PATH (install it: apt-get install -y wrk): %w", err)
	}
	dir, err := os.MkdirTemp("", "loadrun-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	logPath := filepath.Join(dir, "plugind.log")
	defer func() {
		if err != nil {
			printTail(logPath, logTailLines)
		}
	}()

	srv, err := startServer(o, dir, logPath)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.stop()) }()

	base := "http://" + srv.addr
	if err := srv.waitReady(ctx, base+"/readyz"); err != nil {
		return err
	}
	pluginURL := base + o.path
	body, ctype, err := srv.warmUp(ctx, pluginURL)
	if err != nil {
		return err
	}
	plainURL, closePlain, err := startPlain(ctype, body)
	if err != nil {
		return err
	}
	defer closePlain()
	fmt.Printf("plugind %s: %d-byte %s body; plain handler at %s\n\n", pluginURL, len(body), ctype, plainURL)

	results, err := measure(ctx, wrk, o, pluginURL, plainURL+o.path)
	if err != nil {
		return err
	}
	return report(os.Stdout, results)
}

// server is a running plugind child process.
type server struct {
	cmd     *exec.Cmd
	addr    string
	exited  chan struct{} // closed once the process has exited
	waitErr error         // cmd.Wait's result, set before exited closes
}

func startServer(o options, dir, logPath string) (*server, error) {
	if err := os.Mkdir(filepath.Join(dir, "src"), 0o755); err != nil {
		return nil, fmt.Errorf("plugin dir: %w", err)
	}
	src, err := os.ReadFile(o.src)
	if err != nil {
		return nil, fmt.Errorf("plugin source: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "src", filepath.Base(o.src)), src, 0o644); err != nil {
		return nil, fmt.Errorf("plugin source: %w", err)
	}
	// An empty, explicit configuration file keeps a stray ./prest.toml out.
	conf := filepath.Join(dir, "prest.toml")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor

	cmd := exec.Command(o.bin)
	cmd.Env = append(cleanEnv(),
		"PREST_CONF="+conf,
		"PREST_PLUGINPATH="+dir,
		"PREST_HTTP_HOST=127.0.0.1",
		"PREST_HTTP_PORT="+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.bin, err)
	}
	s := &server{cmd: cmd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), exited: make(chan struct{})}
	go func() { s.waitErr = cmd.Wait(); close(s.exited) }()
	return s, nil
}

// cleanEnv is the environment without PREST_* and PORT, which would
// otherwise change the server's configuration.
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PREST_") || strings.HasPrefix(kv, "PORT=")
	})
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// stop sends SIGTERM and waits for the process to exit, killing it if
// it outlives stopTimeout.
func (s *server) stop() error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop server: %w", err)
	}
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("server still running %s after SIGTERM; killed", stopTimeout)
	}
	if s.waitErr != nil {
		return fmt.Errorf("server exit: %w", s.waitErr)
	}
	return nil
}

func (s *server) waitReady(ctx context.Context, url string) error {
	_, _, err := s.poll(ctx, url, readyTimeout)
	if err != nil {
		return fmt.Errorf("server not ready: %w", err)
	}
	return nil
}

// warmUp requests url until it answers 200, building the plugin, and
// returns that answer's body and Content-Type.
func (s *server) warmUp(ctx context.Context, url string) ([]byte, string, error) {
	start := time.Now()
	body, ctype, err := s.poll(ctx, url, warmupTimeout)
	if err != nil {
		return nil, "", fmt.Errorf("plugin not serving: %w", err)
	}
	fmt.Printf("plugin answered 200 after %s\n", time.Since(start).Round(time.Millisecond))
	return body, ctype, nil
}

// poll GETs url until it answers 200, the server exits or limit passes.
func (s *server) poll(ctx context.Context, url string, limit time.Duration) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	last := errors.New("no answer yet")
	for {
		body, ctype, err := get(ctx, url)
		if err == nil {
			return body, ctype, nil
		}
		last = err
		select {
		case <-s.exited:
			return nil, "", fmt.Errorf("server exited (%v); last: %w", s.waitErr, last)
		case <-ctx.Done():
			return nil, "", fmt.Errorf("GET %s: gave up after %s: %w", url, limit, last)
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
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return body, resp.Header.Get("Content-Type"), nil
}

// startPlain serves body with ctype on 127.0.0.1 from this process.
func startPlain(ctype string, body []byte) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("plain server: %w", err)
	}
	length := strconv.Itoa(len(body))
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Content-Length", length)
			w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// measure runs wrk on both targets each round, swapping their order.
func measure(ctx context.Context, wrk string, o options, pluginURL, plainURL string) ([]result, error) {
	targets := [2]struct{ name, url string }{{"plugin", pluginURL}, {"plain", plainURL}}
	var results []result
	for round := 1; round <= o.rounds; round++ {
		for i := range 2 {
			t := targets[(i+round+1)%2] // plugin first in odd rounds
			fmt.Printf("round %d/%d: %s (%s)\n", round, o.rounds, t.name, o.duration)
			r, err := runWrk(ctx, wrk, o, t.url)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round, t.name, err)
			}
			r.target, r.round = t.name, round
			results = append(results, r)
		}
	}
	fmt.Println()
	return results, nil
}

func runWrk(ctx context.Context, wrk string, o options, url string) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.duration+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, wrk,
		fmt.Sprintf("-t%d", o.thread), fmt.Sprintf("-c%d", o.conns),
		fmt.Sprintf("-d%ds", o.duration/time.Second), "--latency", url).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	r, err := parseWrk(out)
	if err != nil {
		return result{}, fmt.Errorf("wrk output: %w\n%s", err, out)
	}
	return r, nil
}

// parseWrk reads Requests/sec, the 50% and 99% latency lines and any
// error lines from wrk --latency output.
func parseWrk(out []byte) (result, error) {
	var r result
	var errs []string
	inDist, seen := false, 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case line == "Latency Distribution":
			inDist = true
		case inDist && len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			d, err := time.ParseDuration(f[1]) // wrk's units: us, ms, s, m, h
			if err != nil {
				return r, fmt.Errorf("latency %q: %w", line, err)
			}
			if f[0] == "50%" {
				r.p50 = d
			} else {
				r.p99 = d
			}
			seen++
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			rps, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("requests/sec %q: %w", line, err)
			}
			r.rps = rps
			seen++
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"), strings.HasPrefix(line, "Socket errors:"):
			errs = append(errs, line)
		}
	}
	if seen != 3 {
		return r, errors.New("missing Requests/sec or 50%/99% latency lines")
	}
	r.errs = strings.Join(errs, "; ")
	return r, nil
}

// report prints every run, the medians per target and the ratio. It
// fails if any run saw errors, since its figures then measure errors.
func report(w io.Writer, results []result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tround\treq/s\tp50\tp99\t\terrors")
	failed := 0
	for _, r := range results {
		errs := r.errs
		if errs == "" {
			errs = "-"
		} else {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t\t%s\n", r.target, r.round, r.rps, r.p50, r.p99, errs)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t\t")
	fmt.Fprintln(tw, "median\t\treq/s\tp50\tp99\t\t")
	rps := map[string]float64{}
	for _, t := range []string{"plugin", "plain"} {
		var rs []float64
		var p50s, p99s []time.Duration
		for _, r := range results {
			if r.target == t {
				rs, p50s, p99s = append(rs, r.rps), append(p50s, r.p50), append(p99s, r.p99)
			}
		}
		rps[t] = median(rs)
		fmt.Fprintf(tw, "%s\t\t%.0f\t%s\t%s\t\t\n", t, rps[t], median(p50s), median(p99s))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	ratio := rps["plugin"] / rps["plain"]
	verdict := ""
	if ratio < targetRatio {
		verdict = ": below target"
	}
	fmt.Fprintf(w, "\nplugin path / plain handler = %.2fx (target >= %.2fx)%s\n", ratio, targetRatio, verdict)
	if failed > 0 {
		return fmt.Errorf("%d of %d runs reported errors (see the errors column)", failed, len(results))
	}
	return nil
}

// median of a non-empty slice; the mean of the middle two for even sizes.
func median[T float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// printTail prints the last n lines of the server log to stderr.
func printTail(path string, n int) {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadrun: server log: %v\n", err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	fmt.Fprintf(os.Stderr, "loadrun: last %d lines of the server log:\n%s\n", len(lines), strings.Join(lines, "\n"))
}
