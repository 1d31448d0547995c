package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/plugind/plugind/admin"
)

// TestErrorsAreJSON: the admin page's errors are JSON objects with the
// status that fits, as every error of the server is; an Allow header
// comes with a 405.
func TestErrorsAreJSON(t *testing.T) {
	srv := httptest.NewServer(admin.New(admin.Options{Plugins: noPlugins{}}))
	defer srv.Close()
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodDelete, "/_ADMIN/", http.StatusMethodNotAllowed},
		{http.MethodPost, "/_ADMIN/plugins", http.StatusMethodNotAllowed},
		{http.MethodGet, "/_ADMIN/nonexistent", http.StatusNotFound},
		{http.MethodGet, "/_ADMIN/events", http.StatusNotFound}, // no event stream configured
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
			}
			var e struct {
				Error string `json:"error"`
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" || json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Errorf("%s %s answered %q %q, want a JSON object with an error", tt.method, tt.path, ct, body)
			}
			if tt.want == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q, want GET, HEAD", resp.Header.Get("Allow"))
			}
		})
	}
}
