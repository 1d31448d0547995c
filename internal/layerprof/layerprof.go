// Package layerprof reads a CPU profile as the request path's layers:
// each sample goes to the innermost frame that belongs to a layer, so a
// layer's share is its own work (its allocations included), not that of
// the layers inside it. benchtable reads the in-process benchmarks'
// profiles with it, loadrun the server's under wrk.
package layerprof

import (
	"cmp"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// A Layer names the frames whose function names contain Pattern.
type Layer struct{ Name, Pattern string }

// Runtime is the share of samples in the runtime's frames alone: the
// garbage collector's workers, the scheduler, the netpoller.
const Runtime = "runtime (GC, scheduler)"

// Other is the share of samples in no layer's frames that are not the
// runtime's alone.
const Other = "other"

// Chain is the request path's layers, as handlers and loader name their
// functions. The first pattern a frame contains names its layer: order
// matters only among patterns of one frame.
func Chain() []Layer {
	return []Layer{
		{"request id", ".requestID"},
		{"request id", "rs/xid."},
		{"metrics", "plugind/metrics."},
		{"metrics", "prometheus/"},
		{"access log", ".logRequest"},
		{"access log", "rs/zerolog."},
		{"access log", "internal/logbuf."},
		{"access log", "handlers.ClientIP"},
		{"access log", "handlers.(*recorder"}, // recorderBase and the combination types
		{"access log", ".access.func"},
		{"security headers", ".securityHeaders.func"},
		{"gzip", "klauspost/compress/"},
		{"cors", "rs/cors."},
		{"cors", ".corsHandler.func"},
		{"auth", "plugind/auth."},
		{"auth", ".guard.func"},
		{"router", "gorilla/mux."},
		{"router", ".dispatch.func"},
		{"router", "handlers.matchPluginRoute"},
		{"limits", "handlers.(*pluginState)"},
		{"limits", "handlers.(*Server).plugin"},
		{"limits", "handlers.(*Server).existing"},
		{"limits", "plugind/sdk."},
		{"handler", "handlers.trivialServe"},
		{"handler", "handlers.(*trivialPlugin)"},
		{"legacy lock", "loader.(*artifact).lock"},
		{"legacy lock", "loader.(*artifact).tryLock"},
		{"legacy lock", "loader.(*artifact).unlock"},
		{"legacy lock", "loader.(*artifact).take"}, // a free copy, with [plugin.NAME] copies
		{"legacy lock", "loader.(*Handler).Call"},
		{"legacy globals", "loader.(*Handler).callLocked"},
		{"legacy globals", "loader.(*Handler).callIn"},
		{"legacy globals", "loader.(*Handler).vars"},
		{"legacy globals", "net/url.(*URL).Query"}, // the adapter's URLQuery, not net/http's parsing
		{"json check", "encoding/json.Valid"},
		{"legacy adapter", "loader.(*Handler).ServeHTTP"},
		{"harness", "testing."},
		{"harness", "handlers.serveBench"},
	}
}

// Server is Chain and what a whole server does around it: net/http's
// reading of requests and writing of responses (the socket's system
// calls included: a profile's sample in a system call is the calling
// goroutine's), and the plugin's own code.
func Server() []Layer {
	return append(Chain(),
		Layer{"plugin's own code", "plugin/unnamed-"},
		Layer{"net/http: reading requests", "net/http.(*conn).readRequest"},
		Layer{"net/http: reading requests", "net/http.readRequest"},
		Layer{"net/http: reading requests", "net/http.(*connReader)"},
		Layer{"net/http: reading requests", "bufio.(*Reader)"},
		Layer{"net/http: writing responses", "net/http.(*response)"},
		Layer{"net/http: writing responses", "net/http.(*chunkWriter)"},
		Layer{"net/http: writing responses", "net/http.checkConnErrorWriter"},
		Layer{"net/http: writing responses", "bufio.(*Writer)"},
		Layer{"net/http: connections", "net/http.(*conn)"},
		Layer{"net/http: connections", "net/http.(*Server)"},
	)
}

// Traces is `go tool pprof -traces` of profile, symbolised with bin
// ("" for a profile that carries its symbols, as one fetched from a
// server's runtime does).
func Traces(ctx context.Context, bin, profile string) (string, error) {
	args := []string{"tool", "pprof", "-traces"}
	if bin != "" {
		args = append(args, bin)
	}
	out, err := exec.CommandContext(ctx, "go", append(args, profile)...).Output()
	if err != nil {
		return "", fmt.Errorf("go tool pprof -traces: %w", err)
	}
	return string(out), nil
}

// Attribute splits `go tool pprof -traces` output into samples and gives
// each to the layer of its innermost frame that belongs to one; samples
// in no layer's frames are Runtime's if every frame is the runtime's,
// else Other's. It returns each layer's share of the samples' time, in
// percent.
func Attribute(traces string, layers []Layer) (map[string]float64, error) {
	by := map[string]time.Duration{}
	var total time.Duration
	for _, block := range strings.Split(traces, "-----------+")[1:] {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) < 2 {
			continue
		}
		// The first line is the rule's tail; then "  10ms   frame", frames.
		first := strings.Fields(lines[1])
		if len(first) < 2 {
			continue
		}
		d, err := time.ParseDuration(first[0])
		if err != nil {
			continue
		}
		frames := []string{first[1]}
		for _, l := range lines[2:] {
			if f := strings.Fields(l); len(f) > 0 {
				frames = append(frames, f[0])
			}
		}
		layer := Runtime
		if slices.ContainsFunc(frames, func(f string) bool { return !strings.HasPrefix(f, "runtime.") && !strings.HasPrefix(f, "internal/") }) {
			layer = Other
		}
	frames:
		for _, f := range frames {
			for _, l := range layers {
				if strings.Contains(f, l.Pattern) {
					layer = l.Name
					break frames
				}
			}
		}
		by[layer] += d
		total += d
	}
	if total == 0 {
		return nil, fmt.Errorf("the profile has no samples")
	}
	shares := map[string]float64{}
	for k, v := range by {
		shares[k] = 100 * float64(v) / float64(total)
	}
	return shares, nil
}

// Sorted returns shares' layers, the largest share first.
func Sorted(shares map[string]float64) []string {
	keys := make([]string, 0, len(shares))
	for k := range shares {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(shares[b], shares[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return keys
}
