// Command goplugin measures the transport plugind's isolated plugins use
// (isolate/: net/http/httputil.ReverseProxy to a child's HTTP server on a
// Unix socket) against hashicorp/go-plugin's two (net/rpc and gRPC, each
// over its own Unix socket), for the decision in the README's "Isolated
// plugins" section. It is a module of its own so that go-plugin and gRPC
// never enter the server's go.mod, which every in-process plugin is built
// against.
//
// The host is this program; each child is this program again, started as
// the transport expects, serving prestd's hello (lib/src/hello.go's work:
// route variables and query parsed, the answer marshalled). Every
// transport does the same job per call: an *http.Request in the host is
// relayed to the child, hello runs there, and its status, headers and body
// are written to a ResponseWriter in the host. For the RPC transports the
// request (method, URL, headers, body) and the answer travel as messages
// (gob for net/rpc, protobuf's wire format for gRPC); the reverse proxy
// sends HTTP/1.1. A fourth row calls the HTTP child with a plain
// http.Client, no proxy: what HTTP/1.1 costs apart from the proxy's work.
//
// For each concurrency, -rounds rounds run every transport for -duration,
// starting one transport later in each round, and print calls/s, p50 and
// p99 per run, the medians and each RPC transport's ratios to the proxy.
// Nothing leaves the machine: Unix sockets only.
//
//	cd test/goplugin && go run . [-duration 3s] [-rounds 3] [-concurrency 1,32]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// The children's side: which one this process is, from its environment.
const (
	envSocket = "HELLO_BENCH_SOCKET" // the HTTP child's socket path
	envProto  = "HELLO_BENCH_PROTO"  // the go-plugin child's protocol: netrpc or grpc
)

var handshake = plugin.HandshakeConfig{ProtocolVersion: 1, MagicCookieKey: "HELLO_BENCH_PLUGIN", MagicCookieValue: "hello"}

const helloPath = "/_PLUGIN/hello/Hello?abc=123"

type options struct {
	duration time.Duration
	rounds   int
	conc     []int
}

func main() {
	if sock := os.Getenv(envSocket); sock != "" {
		serveHTTPChild(sock)
		return
	}
	if os.Getenv(handshake.MagicCookieKey) == handshake.MagicCookieValue {
		serveRPCChild(os.Getenv(envProto))
		return
	}
	var o options
	var conc string
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of each run: 100ms to 1m")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per concurrency, each running every transport: 1 to 10")
	flag.StringVar(&conc, "concurrency", "1,32", "comma-separated numbers of concurrent callers, each 1 to 256")
	flag.Parse()
	if err := o.parse(conc); err != nil {
		fmt.Fprintf(os.Stderr, "goplugin: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "goplugin: %v\n", err)
		os.Exit(1)
	}
}

func (o *options) parse(conc string) error {
	switch {
	case o.duration < 100*time.Millisecond || o.duration > time.Minute:
		return fmt.Errorf("-duration %s: want 100ms to 1m", o.duration)
	case o.rounds < 1 || o.rounds > 10:
		return fmt.Errorf("-rounds %d: want 1 to 10", o.rounds)
	}
	for _, f := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 256 {
			return fmt.Errorf("-concurrency %q: want numbers from 1 to 256", conc)
		}
		o.conc = append(o.conc, n)
	}
	return nil
}

// serveHTTPChild serves hello over HTTP on the Unix socket sock, as an
// isolated plugin's generated main does, until its stdin closes (the
// host is gone).
func serveHTTPChild(sock string) {
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintf(os.Stderr, "goplugin child: %v\n", err)
		os.Exit(1)
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	srv := &http.Server{Handler: hello, ReadHeaderTimeout: 10 * time.Second}
	_ = srv.Serve(ln)
}

// serveRPCChild serves hello through go-plugin with proto ("netrpc" or
// "grpc") until the host kills it.
func serveRPCChild(proto string) {
	cfg := &plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         plugin.PluginSet{"hello": helloPlugin{}},
		Logger:          hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: os.Stderr}),
	}
	if proto == "grpc" {
		cfg.GRPCServer = plugin.DefaultGRPCServer
	}
	plugin.Serve(cfg)
}

// transport is one way of calling hello in a child from the host.
type transport struct {
	name string
	call caller
	stop func()
}

// startHTTP starts the HTTP child and returns a reverse proxy to it, set
// up as isolate/ sets its own, and a plain client of the same child.
func startHTTP(dir string) (proxy, client *transport, err error) {
	sock := filepath.Join(dir, "hello.sock")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envSocket+"="+sock)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start the HTTP child: %w", err)
	}
	stop := func() { _ = stdin.Close(); _ = cmd.Wait() }
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	target := &url.URL{Scheme: "http", Host: "plugin"}
	// As in isolate/proxy.go: the proxy's error reaches the caller through
	// a value in the request's context (ErrorHandler gets the outgoing
	// request, a clone).
	type errKey struct{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport:     tr,
		FlushInterval: -1,
		ErrorHandler: func(_ http.ResponseWriter, r *http.Request, err error) {
			*r.Context().Value(errKey{}).(*error) = err
		},
	}
	// The child is healthy once it answers on its socket.
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("http://plugin" + helloPath)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("the HTTP child did not answer within 30 s: %w", err)
		}
		time.Sleep(5 * time.Millisecond) // polling the socket until it listens
	}
	stopAll := func() { tr.CloseIdleConnections(); stop() }
	viaProxy := &transport{name: "http reverse proxy", stop: stopAll, call: func(w http.ResponseWriter, r *http.Request) error {
		var err error
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), errKey{}, &err)))
		return err
	}}
	// The same child and connections without the proxy: what HTTP/1.1
	// itself costs, apart from httputil.ReverseProxy's work per call.
	viaClient := &transport{name: "http client, no proxy", stop: func() {}, call: func(w http.ResponseWriter, r *http.Request) error {
		out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://plugin"+r.URL.RequestURI(), nil)
		if err != nil {
			return err
		}
		out.Header = r.Header.Clone()
		resp, err := hc.Do(out)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		h := w.Header()
		for k, v := range resp.Header {
			h[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, err = io.Copy(w, resp.Body)
		return err
	}}
	return viaProxy, viaClient, nil
}

// startPlugin starts a go-plugin child speaking proto and dispenses hello.
func startPlugin(proto string) (*transport, error) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envProto+"="+proto)
	allowed := plugin.ProtocolNetRPC
	if proto == "grpc" {
		allowed = plugin.ProtocolGRPC
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake,
		Plugins:          plugin.PluginSet{"hello": helloPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{allowed},
		Logger:           hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: os.Stderr}),
		StartTimeout:     30 * time.Second,
	})
	rc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("go-plugin %s: %w", proto, err)
	}
	raw, err := rc.Dispense("hello")
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("go-plugin %s: dispense: %w", proto, err)
	}
	if got := client.NegotiatedVersion(); got != 1 {
		client.Kill()
		return nil, fmt.Errorf("go-plugin %s: protocol version %d", proto, got)
	}
	return &transport{name: "go-plugin " + proto, call: raw.(caller), stop: client.Kill}, nil
}

// result is one run of one transport.
type result struct {
	transport string
	conc      int
	round     int
	calls     int
	errs      int
	firstErr  error
	rate      float64 // calls/s
	p50, p99  time.Duration
}

func run(ctx context.Context, o options, w io.Writer) error {
	dir, err := os.MkdirTemp("", "goplugin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var ts []*transport
	defer func() {
		for _, t := range ts {
			t.stop()
		}
	}()
	proxy, client, err := startHTTP(dir)
	if err != nil {
		return err
	}
	ts = append(ts, proxy, client)
	for _, start := range []func() (*transport, error){
		func() (*transport, error) { return startPlugin("netrpc") },
		func() (*transport, error) { return startPlugin("grpc") },
	} {
		t, err := start()
		if err != nil {
			return err
		}
		ts = append(ts, t)
	}
	// Each transport must answer hello's bytes before it is measured.
	var want []byte
	for _, t := range ts {
		rec := newRecorder()
		if err := t.call(rec, newRequest(ctx)); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		if rec.status != http.StatusOK || rec.header.Get("Content-Type") != "application/json" {
			return fmt.Errorf("%s: status %d, Content-Type %q: want 200 application/json", t.name, rec.status, rec.header.Get("Content-Type"))
		}
		if want == nil {
			want = slices.Clone(rec.body)
		} else if string(rec.body) != string(want) {
			return fmt.Errorf("%s answers %q, the proxy %q", t.name, rec.body, want)
		}
	}
	fmt.Fprintf(w, "hello over each transport answers %d bytes: %s\n", len(want), want)

	var results []result
	for _, conc := range o.conc {
		for round := 1; round <= o.rounds; round++ {
			for i := range ts {
				t := ts[(i+round-1)%len(ts)]
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r := load(ctx, t, conc, o.duration, want)
				r.round = round
				results = append(results, r)
				fmt.Fprintf(w, "concurrency %d, round %d/%d: %s: %.0f calls/s\n", conc, round, o.rounds, t.name, r.rate)
			}
		}
	}
	return report(w, ts, o.conc, results)
}

// newRequest is the request every call relays, as a server's handler
// would get it from a client.
func newRequest(ctx context.Context) *http.Request {
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:8000"+helloPath, nil)
	r.Header.Set("User-Agent", "goplugin-bench")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("X-Request-Id", "0123456789abcdef")
	return r
}

// load calls t from conc goroutines for d and times every call.
func load(ctx context.Context, t *transport, conc int, d time.Duration, want []byte) result {
	var mu sync.Mutex
	r := result{transport: t.name, conc: conc}
	var all []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range conc {
		wg.Go(func() {
			req := newRequest(ctx)
			rec := newRecorder()
			lat := make([]time.Duration, 0, 1<<14)
			var errs int
			var firstErr error
			for time.Now().Before(deadline) && ctx.Err() == nil {
				rec.reset()
				began := time.Now()
				err := t.call(rec, req)
				lat = append(lat, time.Since(began))
				if err == nil && (rec.status != http.StatusOK || string(rec.body) != string(want)) {
					err = fmt.Errorf("status %d, body %q", rec.status, rec.body)
				}
				if err != nil {
					errs++
					firstErr = cmpErr(firstErr, err)
				}
			}
			mu.Lock()
			all = append(all, lat...)
			r.errs += errs
			r.firstErr = cmpErr(r.firstErr, firstErr)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	r.calls = len(all)
	r.rate = float64(r.calls) / elapsed.Seconds()
	if len(all) > 0 {
		slices.Sort(all)
		r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	return r
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// report prints every run, then per concurrency each transport's medians
// and its ratios to the reverse proxy's. It fails if any call failed.
func report(w io.Writer, ts []*transport, concs []int, results []result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\ntransport\tconcurrency\tround\tcalls/s\tp50\tp99\terrors")
	var errs []error
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%d\n", r.transport, r.conc, r.round, r.rate, r.p50, r.p99, r.errs)
		if r.errs > 0 {
			errs = append(errs, fmt.Errorf("%s, concurrency %d, round %d: %d of %d calls failed, first: %w", r.transport, r.conc, r.round, r.errs, r.calls, r.firstErr))
		}
	}
	fmt.Fprintln(tw, "\ntransport\tconcurrency\tmedian calls/s\tp50\tp99\tcalls/s vs proxy\tp99 vs proxy")
	for _, conc := range concs {
		var base struct {
			rate float64
			p99  time.Duration
		}
		for i, t := range ts {
			var rates []float64
			var p50s, p99s []time.Duration
			for _, r := range results {
				if r.transport == t.name && r.conc == conc {
					rates, p50s, p99s = append(rates, r.rate), append(p50s, r.p50), append(p99s, r.p99)
				}
			}
			rate, p99 := median(rates), median(p99s)
			if i == 0 {
				base.rate, base.p99 = rate, p99
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%.2fx\t%.2fx\n", t.name, conc, rate, median(p50s), p99,
				rate/base.rate, float64(p99)/float64(base.p99))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return errors.Join(errs...)
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
