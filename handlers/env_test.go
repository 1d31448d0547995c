package handlers

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/sdk"
)

// TestPluginEnv: a plugin finds its sdk env in the request's context,
// which is the request's info rather than a context and a request copy
// more; a middleware plugin, which runs before the plugin is known,
// finds none; the env is the same under a timeout, where the plugin runs
// on a goroutine of its own.
func TestPluginEnv(t *testing.T) {
	type seen struct {
		Plugin, RequestID, Greeting string
		Vars                        map[string]string
	}
	see := func(r *http.Request) seen {
		ctx := r.Context()
		return seen{sdk.Plugin(ctx), sdk.RequestID(ctx), sdk.Settings(ctx).String("greeting", ""), sdk.Vars(ctx)}
	}
	for _, tc := range []struct {
		name    string
		timeout time.Duration
	}{
		{"no timeout", 0},
		{"under a timeout", time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before seen
			s := &Server{
				Log: zerolog.Nop(),
				Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error {
					return json.NewEncoder(w).Encode(see(r))
				}),
				Setup: func(string) PluginSetup {
					return PluginSetup{Settings: map[string]any{"greeting": "hi"}, Timeout: tc.timeout}
				},
				Middleware: []func(http.Handler) http.Handler{func(next http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						before = see(r)
						next.ServeHTTP(w, r)
					})
				}},
			}
			h := s.Handler()
			for range 2 { // the second request finds the plugin's state made
				req := httptest.NewRequest("GET", "/_PLUGIN/p/Fn", nil)
				req.Header.Set("X-Request-Id", "req-7")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				var got seen
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 200 {
					t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
				}
				want := seen{"p", "req-7", "hi", map[string]string{"file": "p", "func": "Fn"}}
				if got.Plugin != want.Plugin || got.RequestID != want.RequestID || got.Greeting != want.Greeting || !maps.Equal(got.Vars, want.Vars) {
					t.Errorf("the plugin saw %+v, want %+v", got, want)
				}
				if before.Plugin != "" || before.RequestID != "" || before.Vars != nil {
					t.Errorf("the middleware saw %+v, want an empty env", before)
				}
			}
		})
	}
}
