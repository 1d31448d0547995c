package handlers

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
)

// TestRequestID: a client's plain, short X-Request-Id is kept, anything
// else replaced by a generated one; the response carries the id the log
// line has, whatever the handler does to the header's value.
func TestRequestID(t *testing.T) {
	tests := []struct {
		name, sent string
		kept       bool
		serve      func(w http.ResponseWriter)
	}{
		{"none sent", "", false, nil},
		{"a plain one", "abc-123_x.y", true, nil},
		{"too long", strings.Repeat("a", 65), false, nil},
		{"log structure", `a","level":"error`, false, nil},
		{"the handler adds one", "abc", true, func(w http.ResponseWriter) { w.Header().Add("X-Request-Id", "added") }},
		{"the handler overwrites the value in place", "abc", true, func(w http.ResponseWriter) { w.Header()["X-Request-Id"][0] = "changed" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &plugintest.Log{}
			s := &Server{Log: zerolog.New(logs), Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error {
				if tt.serve != nil {
					tt.serve(w)
				}
				return nil
			})}
			req := httptest.NewRequest("GET", "/_PLUGIN/p/X", nil)
			if tt.sent != "" {
				req.Header.Set("X-Request-Id", tt.sent)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			ev := logs.Events(map[string]any{"message": "request"})
			if len(ev) != 1 {
				t.Fatalf("want one access log line: %s", logs)
			}
			logged, _ := ev[0]["request_id"].(string)
			switch {
			case tt.kept && logged != tt.sent:
				t.Errorf("logged id %q; want the client's %q", logged, tt.sent)
			case !tt.kept && (logged == tt.sent || len(logged) != 20):
				t.Errorf("logged id %q; want a generated one (20 characters)", logged)
			}
			if tt.serve == nil {
				if got := rec.Header().Values("X-Request-Id"); len(got) != 1 || got[0] != logged {
					t.Errorf("response X-Request-Id %q; want [%q]", got, logged)
				}
			}
		})
	}
}

type parentKey struct{}

// TestRequestInfoContext: the request info, as the request's context,
// is its parent with one value more: the parent's values, cancellation,
// cause and deadline carry through, also to contexts derived from it.
func TestRequestInfoContext(t *testing.T) {
	cause := errors.New("the client left")
	parent, cancel := context.WithCancelCause(context.WithValue(context.Background(), parentKey{}, "v"))
	parent, stop := context.WithDeadline(parent, time.Now().Add(time.Hour))
	defer stop()
	info := &requestInfo{Context: parent}
	child, cancelChild := context.WithCancel(info)
	defer cancelChild()
	if infoFrom(info) != info || infoFrom(child) != info {
		t.Error("the info is not its own context's value")
	}
	if info.Value(parentKey{}) != "v" || child.Value(parentKey{}) != "v" {
		t.Error("the parent's value is lost")
	}
	if d, ok := child.Deadline(); !ok || time.Until(d) < 59*time.Minute {
		t.Errorf("deadline %v %v; want the parent's", d, ok)
	}
	if info.Err() != nil || child.Err() != nil {
		t.Fatal("done before the parent")
	}
	cancel(cause)
	select {
	case <-child.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a context derived from the info is not cancelled with the parent")
	}
	if !errors.Is(info.Err(), context.Canceled) || context.Cause(child) != cause {
		t.Errorf("err %v, cause %v; want the parent's", info.Err(), context.Cause(child))
	}
	if infoFrom(context.Background()) != nil {
		t.Error("info found in a context without one")
	}
}

// TestRequestInfoContextNoGoroutine: a context derived from the info
// (a plugin's timeout) hangs on the parent's cancelCtx, as one derived
// from context.WithValue's does, instead of a goroutine of its own
// watching the info's Done.
func TestRequestInfoContextNoGoroutine(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	info := &requestInfo{Context: parent}
	before := runtime.NumGoroutine()
	for range 200 {
		_, stop := context.WithTimeout(info, time.Hour)
		defer stop()
	}
	if n := runtime.NumGoroutine() - before; n >= 100 {
		t.Errorf("%d goroutines more after deriving 200 contexts from the info", n)
	}
}
