package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestWithFeatures: the floor does what the default chain does for a
// plugin's request: an id (the client's or a new one) in the answer and
// the request's context, the security headers and Vary, and one access
// line with the answer's status and size.
func TestWithFeatures(t *testing.T) {
	tests := []struct {
		name     string
		clientID string
		status   int
		body     string
	}{
		{name: "new id", status: http.StatusOK, body: "hello"},
		{name: "client's id", clientID: "abc-123", status: http.StatusOK, body: "hello"},
		{name: "status and size", status: http.StatusCreated, body: "made it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ctxID any
			work := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctxID = r.Context().Value(requestIDKey{})
				if tt.status != http.StatusOK {
					w.WriteHeader(tt.status)
				}
				_, _ = w.Write([]byte(tt.body))
			})
			var log bytes.Buffer
			h := withFeatures(work, "hello", "Hello", zerolog.New(&log))
			r := httptest.NewRequest(http.MethodGet, "/_PLUGIN/hello/Hello?a=1", nil)
			if tt.clientID != "" {
				r.Header.Set("X-Request-Id", tt.clientID)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)

			id := w.Header().Get("X-Request-Id")
			if tt.clientID != "" && id != tt.clientID {
				t.Errorf("X-Request-Id %q, want the client's %q", id, tt.clientID)
			} else if tt.clientID == "" && len(id) != 20 {
				t.Errorf("X-Request-Id %q, want a new xid", id)
			}
			if ctxID != id {
				t.Errorf("the request's context carries id %v, want %q", ctxID, id)
			}
			for k, v := range map[string]string{
				"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
				"Cross-Origin-Resource-Policy": "same-origin", "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
				"Vary": "Accept-Encoding",
			} {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if w.Code != tt.status || w.Body.String() != tt.body {
				t.Errorf("answer %d %q, want %d %q", w.Code, w.Body, tt.status, tt.body)
			}
			var line map[string]any
			if err := json.Unmarshal(log.Bytes(), &line); err != nil {
				t.Fatalf("access line %q: %v", log.String(), err)
			}
			for k, v := range map[string]any{
				"message": "request", "request_id": id, "plugin": "hello", "func": "Hello", "method": "GET",
				"path": "/_PLUGIN/hello/Hello", "client": "192.0.2.1", "status": float64(tt.status), "size": float64(len(tt.body)),
			} {
				if line[k] != v {
					t.Errorf("access line's %s: %v, want %v (%s)", k, line[k], v, log.String())
				}
			}
			if _, ok := line["duration"]; !ok {
				t.Errorf("access line without duration: %s", log.String())
			}
		})
	}
}

// TestStartFeatures: the floor is served only if it answers with the
// default chain's header names.
func TestStartFeatures(t *testing.T) {
	const path = "/_PLUGIN/hello/Hello?a=1"
	chain := http.Header{}
	for _, k := range []string{"Content-Length", "Content-Security-Policy", "Content-Type", "Cross-Origin-Resource-Policy", "Date",
		"Referrer-Policy", "Vary", "X-Content-Type-Options", "X-Frame-Options", "X-Request-Id"} {
		chain.Set(k, "x")
	}
	tests := []struct {
		name    string
		want    http.Header
		wantErr string
	}{
		{name: "same headers", want: chain},
		{name: "a header the floor lacks", want: with(chain, "Strict-Transport-Security"), wantErr: "want the same"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, closeFloor, err := startFeatures(context.Background(), filepath.Join(t.TempDir(), "log"), path, tt.want)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer closeFloor()
			body, _, err := get(context.Background(), url+path, "")
			if err != nil {
				t.Fatal(err)
			}
			if want := `{"http_vars":{"file":"hello","func":"Hello"},"url_query":{"a":["1"]},"msg":"Hello plugin caller!"}`; string(body) != want {
				t.Errorf("body %s, want hello's %s", body, want)
			}
		})
	}
}

func with(h http.Header, key string) http.Header {
	h = h.Clone()
	h.Set(key, "x")
	return h
}
