package haproxytest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a test server named name whose /ready answers 200 while
// ready is true, whose /drop closes the connection without an answer
// when drop is true, and whose other paths answer its name.
type backend struct {
	name        string
	ready, drop atomic.Bool
	srv         *httptest.Server
}

func newBackend(t *testing.T, name string) *backend {
	b := &backend{name: name}
	b.ready.Store(true)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/ready" && !b.ready.Load():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case r.URL.Path == "/drop" && b.drop.Load():
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			io.WriteString(w, b.name)
		}
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) server() Server {
	return Server{Name: b.name, Addr: strings.TrimPrefix(b.srv.URL, "http://")}
}

// get GETs path through p and returns the body and the server HAProxy
// says answered, failing on anything but a 200.
func get(t *testing.T, p *Proxy, path string) (body, servedBy string) {
	t.Helper()
	resp, err := http.Get(p.URL(path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %q %v", path, resp.Status, data, err)
	}
	return string(data), resp.Header.Get(ServedBy)
}

func TestProxy(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	p := Start(t, Config{Servers: []Server{a.server(), b.server()}, Check: "/ready", Interval: 50 * time.Millisecond, Retries: 2})
	for _, name := range []string{"a", "b"} {
		if err := p.Await(t.Context(), name, "UP", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("round robin", func(t *testing.T) {
		seen := map[string]int{}
		for range 4 {
			body, by := get(t, p, "/x")
			if body != by {
				t.Errorf("%s answered, %s says %q", body, ServedBy, by)
			}
			seen[body]++
		}
		if seen["a"] != 2 || seen["b"] != 2 {
			t.Errorf("answers by server: %v, want 2 each", seen)
		}
	})

	t.Run("a connection closed without an answer is retried elsewhere", func(t *testing.T) {
		a.drop.Store(true)
		defer a.drop.Store(false)
		before, _, err := p.Retries(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			if body, _ := get(t, p, "/drop"); body != "b" {
				t.Errorf("answered by %s, want b", body)
			}
		}
		// Round robin moves on with each redispatch: how many of the 4
		// went to a first depends on where it stood.
		after, redispatched, err := p.Retries(t.Context())
		if err != nil || after <= before || redispatched != after {
			t.Errorf("retries %d -> %d, redispatches %d (%v): want the requests a dropped retried on b", before, after, redispatched, err)
		}
	})

	t.Run("a failing check takes the server out", func(t *testing.T) {
		a.ready.Store(false)
		if err := p.Await(t.Context(), "a", "DOWN", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		for range 4 {
			if body, _ := get(t, p, "/x"); body != "b" {
				t.Errorf("answered by %s while a is down", body)
			}
		}
		a.ready.Store(true)
		if err := p.Await(t.Context(), "a", "UP", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMissingBinarySaysWhatToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := binary(); err == nil || !strings.Contains(err.Error(), "apt-get install -y haproxy") {
		t.Errorf("binary() without haproxy: %v", err)
	}
}
