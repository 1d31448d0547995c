package main

import (
	"encoding/json"
	"net/http"
	"strings"
)

// helloResponse is lib/src/hello.go's answer.
type helloResponse struct {
	HTTPVars map[string]string   `json:"http_vars"`
	URLQuery map[string][]string `json:"url_query"`
	MSG      string              `json:"msg"`
}

// hello does lib/src/hello.go's work for a request to
// /_PLUGIN/hello/Hello?...: the route's variables and the query parsed,
// the answer marshalled. Every transport calls it in the child.
var hello http.HandlerFunc = func(w http.ResponseWriter, r *http.Request) {
	route := strings.TrimPrefix(r.URL.Path, "/_PLUGIN/")
	file, fn, _ := strings.Cut(route, "/")
	body, err := json.Marshal(helloResponse{
		HTTPVars: map[string]string{"file": file, "func": fn},
		URLQuery: r.URL.Query(),
		MSG:      "Hello plugin caller!",
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// recorder is a minimal http.ResponseWriter that keeps what a handler
// wrote: the RPC children answer with it, and the host's callers write
// into one (reset per call) so that every transport ends in the same
// place.
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	r.body = append(r.body, p...)
	return len(p), nil
}

func (r *recorder) reset() {
	clear(r.header)
	r.status, r.body = 0, r.body[:0]
}

// writeTo copies a recorded answer to w, as a server relaying it would.
func (r *recorder) writeTo(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range r.header {
		h[k] = v
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}
