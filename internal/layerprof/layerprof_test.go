package layerprof

import (
	"math"
	"strings"
	"testing"
)

// traces is `go tool pprof -traces` of a profile of plugind under wrk,
// cut down to four samples.
const traces = `File: plugind
Type: cpu
Duration: 2s, Total samples = 2.96s (147.98%)
-----------+-------------------------------------------------------
      10ms   runtime.mallocgc
             runtime.makemap_small
             net/url.ParseQuery (inline)
             net/url.(*URL).Query
             github.com/plugind/plugind/loader.(*Handler).ServeHTTP
             github.com/plugind/plugind/handlers.(*pluginState).wrap.(*pluginState).withEnv.func2
             net/http.HandlerFunc.ServeHTTP
             github.com/plugind/plugind/handlers.(*Server).Handler.(*Server).access.func1
             net/http.serverHandler.ServeHTTP
             net/http.(*conn).serve
-----------+-------------------------------------------------------
      20ms   runtime.sweepone
             runtime.bgsweep
-----------+-------------------------------------------------------
     300ms   internal/runtime/syscall/linux.Syscall6
             syscall.write
             net.(*conn).Write
             net/http.checkConnErrorWriter.Write
             bufio.(*Writer).Flush
             net/http.(*response).finishRequest
             net/http.(*conn).serve
-----------+-------------------------------------------------------
      70ms   net/url.parse
             net/url.ParseRequestURI
             net/http.readRequest
             net/http.(*conn).readRequest
             net/http.(*conn).serve
-----------+-------------------------------------------------------
     100ms   encoding/json.(*encodeState).marshal
             encoding/json.Marshal
             plugin/unnamed-a12ab0f2622719157558cdc0c6f58b8a90f12a80.GETHelloHandler
             github.com/plugind/plugind/loader.(*artifact).handler.legacyFunc.func1
             github.com/plugind/plugind/loader.(*Handler).callIn
-----------+-------------------------------------------------------
`

func TestAttribute(t *testing.T) {
	tests := []struct {
		name   string
		layers []Layer
		want   map[string]float64 // ms of the 500 in the profile
	}{
		{"server", Server(), map[string]float64{
			"legacy globals": 10, Runtime: 20, "net/http: writing responses": 300,
			"net/http: reading requests": 70, "plugin's own code": 100,
		}},
		// Without the server's layers, net/http's work is no layer's, and
		// its URL parsing is not taken for the adapter's query.
		{"chain", Chain(), map[string]float64{
			"legacy globals": 110, Runtime: 20, Other: 370,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Attribute(traces, tt.layers)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("layers %v, want %v", got, tt.want)
			}
			for layer, ms := range tt.want {
				if want := 100 * ms / 500; math.Abs(got[layer]-want) > 1e-9 {
					t.Errorf("%s: %.2f%%, want %.2f%%", layer, got[layer], want)
				}
			}
		})
	}
	if _, err := Attribute("File: plugind\n", Server()); err == nil || !strings.Contains(err.Error(), "no samples") {
		t.Errorf("a profile without samples: %v", err)
	}
}

func TestSorted(t *testing.T) {
	got := Sorted(map[string]float64{"b": 10, "a": 10, "c": 50, "d": 1})
	if strings.Join(got, " ") != "c a b d" {
		t.Errorf("Sorted = %v, want c a b d", got)
	}
}
