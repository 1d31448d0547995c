package handlers

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
)

// profileServer serves s on loopback with a write timeout, as the
// server's own http.Server has one.
func profileServer(t *testing.T, s *Server) string {
	t.Helper()
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config.WriteTimeout = 5 * time.Second
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.URL
}

func getProfile(t *testing.T, method, url string) (int, http.Header, []byte) {
	t.Helper()
	a := plugintest.Do(t, nil, plugintest.Request(t, method, url, ""))
	return a.Status, a.Header, []byte(a.Body)
}

var gzipMagic = []byte{0x1f, 0x8b} // pprof's format is gzipped protobuf

func TestProfiles(t *testing.T) {
	base := profileServer(t, &Server{Plugins: &okPlugins{}, Log: zerolog.Nop(), Profiles: true})
	tests := []struct {
		name   string
		method string
		path   string
		status int
		// prefix the body starts with, or text it contains
		prefix   []byte
		contains string
		minTime  time.Duration
	}{
		{name: "index", path: "", status: 200, contains: `"name":"heap"`},
		{name: "index names the CPU profile", path: "", status: 200, contains: `/_ADMIN/pprof/profile?seconds=30`},
		{name: "heap as text", path: "heap?debug=1", status: 200, contains: "heap profile:"},
		{name: "heap after a GC", path: "heap?gc=1", status: 200, prefix: gzipMagic},
		{name: "goroutines", path: "goroutine", status: 200, prefix: gzipMagic},
		{name: "goroutines as text", path: "goroutine?debug=2", status: 200, contains: "goroutine "},
		{name: "CPU profile", path: "profile?seconds=1", status: 200, prefix: gzipMagic, minTime: time.Second},
		{name: "execution trace", path: "trace?seconds=1", status: 200, prefix: []byte("go 1."), minTime: time.Second},
		{name: "no such profile", path: "nothing", status: 404, contains: "no such profile"},
		{name: "no seconds", path: "profile?seconds=0", status: 400, contains: "at least 1"},
		{name: "seconds not a number", path: "trace?seconds=1.5", status: 400, contains: "whole number"},
		{name: "as long as the write timeout", path: "profile?seconds=5", status: 400, contains: "write timeout"},
		{name: "not a GET", method: http.MethodPost, path: "heap", status: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			start := time.Now()
			status, hdr, body := getProfile(t, method, base+profilesPath+tt.path)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %.200s", status, tt.status, body)
			}
			if tt.prefix != nil && !bytes.HasPrefix(body, tt.prefix) {
				t.Errorf("body starts %q, want %q", body[:min(len(body), 8)], tt.prefix)
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body %.300s lacks %q", body, tt.contains)
			}
			if status >= 400 && status != 405 {
				var e errorBody
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("error body %q is not a JSON error (%v)", body, err)
				}
			}
			if took := time.Since(start); took < tt.minTime {
				t.Errorf("answered in %v, before the %v asked for", took, tt.minTime)
			}
			if status == 200 && hdr.Get("X-Content-Type-Options") != "nosniff" && tt.path != "" {
				t.Errorf("a profile without nosniff: %v", hdr)
			}
		})
	}
}

// TestProfileOneAtATime: the runtime takes one CPU profile at a time;
// a second request meanwhile is refused with 409, not left waiting or
// handed an empty profile.
func TestProfileOneAtATime(t *testing.T) {
	base := profileServer(t, &Server{Plugins: &okPlugins{}, Log: zerolog.Nop(), Profiles: true})
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i := range statuses {
		wg.Go(func() { statuses[i], _, _ = getProfile(t, http.MethodGet, base+profilesPath+"profile?seconds=2") })
	}
	wg.Wait()
	if !(statuses[0] == 200 && statuses[1] == 409 || statuses[0] == 409 && statuses[1] == 200) {
		t.Fatalf("two overlapping CPU profiles answered %v, want one 200 and one 409", statuses)
	}
	// The refused one took nothing down: the next profile is served.
	if status, _, body := getProfile(t, http.MethodGet, base+profilesPath+"profile?seconds=1"); status != 200 || !bytes.HasPrefix(body, gzipMagic) {
		t.Fatalf("after the conflict: %d %.100q", status, body)
	}
}

// TestProfilesOff: without Profiles the paths are not served, with or
// without the admin page.
func TestProfilesOff(t *testing.T) {
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	for _, s := range []*Server{
		{Plugins: &okPlugins{}, Log: zerolog.Nop()},
		{Plugins: &okPlugins{}, Log: zerolog.Nop(), Admin: admin},
	} {
		base := profileServer(t, s)
		for _, path := range []string{"", "heap", "profile?seconds=1"} {
			if status, _, body := getProfile(t, http.MethodGet, base+profilesPath+path); status != 404 {
				t.Errorf("admin %v: %s answered %d %.100q, want 404", s.Admin != nil, path, status, body)
			}
		}
	}
}
