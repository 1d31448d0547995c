package isolate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// unixServer is a child's side of the socket: an http.Server on a Unix
// socket that counts the connections it accepts and the calls it serves.
type unixServer struct {
	sock  string
	srv   *http.Server
	conns atomic.Int32
	calls atomic.Int32
	idle  chan struct{} // a connection went idle
}

func serveUnix(t *testing.T, h http.Handler) *unixServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "tr") // short: a socket's path is at most ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	u := &unixServer{sock: filepath.Join(dir, "s"), idle: make(chan struct{}, 16)}
	ln, err := net.Listen("unix", u.sock)
	if err != nil {
		t.Fatal(err)
	}
	u.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u.calls.Add(1)
			h.ServeHTTP(w, r)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				u.conns.Add(1)
			case http.StateIdle:
				select {
				case u.idle <- struct{}{}:
				default:
				}
			}
		},
	}
	go func() { _ = u.srv.Serve(ln) }()
	t.Cleanup(func() { _ = u.srv.Close() })
	return u
}

// childHandler answers as the tests below need.
func childHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s", r.Method, r.URL.RawQuery)
	})
	mux.HandleFunc("/len", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		_, _ = io.WriteString(w, "12345")
	})
	mux.HandleFunc("/none", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		for _, part := range []string{"a", "b", "c"} {
			_, _ = io.WriteString(w, part)
			_ = http.NewResponseController(w).Flush()
		}
		w.Header().Set("X-Sum", "abc")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 256<<10))
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "echo %s", b)
	})
	mux.HandleFunc("/hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("/forever", func(w http.ResponseWriter, r *http.Request) {
		for r.Context().Err() == nil {
			if _, err := io.WriteString(w, "data: tick\n\n"); err != nil {
				return
			}
			_ = http.NewResponseController(w).Flush()
		}
	})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	return mux
}

// countingTransport is newTransport whose fallback's dials are counted.
func countingTransport(sock string) (*transport, *atomic.Int32) {
	tr := newTransport(sock)
	var dials atomic.Int32
	dial := tr.fallback.DialContext
	tr.fallback.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dial(ctx, network, addr)
	}
	return tr, &dials
}

// send sends method path (with body, "" for none) through tr and reads
// the answer whole.
func send(t *testing.T, ctx context.Context, tr http.RoundTripper, method, path, body string) (*http.Response, string, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://plugind"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func TestTransport(t *testing.T) {
	type step struct {
		method, path, body string
		status             int
		want               string
	}
	tests := []struct {
		name  string
		steps []step
		// connections the child accepted, and dials of the fallback
		conns, fallback int32
	}{
		{"bodiless calls share a connection", []step{
			{"GET", "/hello?a=1", "", 200, "hello GET a=1"},
			{"DELETE", "/hello", "", 200, "hello DELETE "},
			{"GET", "/hello?a=2", "", 200, "hello GET a=2"},
		}, 1, 0},
		{"answers without a body keep it too", []step{
			{"HEAD", "/len", "", 200, ""},
			{"GET", "/none", "", 204, ""},
			{"GET", "/len", "", 200, "12345"},
		}, 1, 0},
		{"a streamed answer", []step{
			{"GET", "/stream", "", 200, "abc"},
			{"GET", "/stream", "", 200, "abc"},
		}, 1, 0},
		{"a body goes through http.Transport", []step{
			{"POST", "/echo", "x", 200, "echo x"},
			{"GET", "/hello", "", 200, "hello GET "},
		}, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := serveUnix(t, childHandler())
			tr, dials := countingTransport(u.sock)
			defer tr.CloseIdleConnections()
			for _, s := range tt.steps {
				resp, got, err := send(t, t.Context(), tr, s.method, s.path, s.body)
				if err != nil {
					t.Fatalf("%s %s: %v", s.method, s.path, err)
				}
				if resp.StatusCode != s.status || got != s.want {
					t.Fatalf("%s %s = %d %q, want %d %q", s.method, s.path, resp.StatusCode, got, s.status, s.want)
				}
				if s.path == "/stream" && resp.Trailer.Get("X-Sum") != "abc" {
					t.Errorf("trailer %v, want X-Sum: abc", resp.Trailer)
				}
				if s.method == "HEAD" && resp.ContentLength != 5 {
					t.Errorf("HEAD's Content-Length %d, want 5", resp.ContentLength)
				}
			}
			if c, d := u.conns.Load(), dials.Load(); c != tt.conns || d != tt.fallback {
				t.Errorf("the child accepted %d connections and the fallback dialled %d; want %d and %d", c, d, tt.conns, tt.fallback)
			}
		})
	}
}

// partly GETs path through tr and returns the answer's body with its
// first 10 bytes read.
func partly(t *testing.T, tr http.RoundTripper, path string) io.ReadCloser {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://plugind"+path, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	return resp.Body
}

// TestTransportUnfinishedBody: a body closed before its end leaves
// bytes on the connection, which is then closed, not pooled.
func TestTransportUnfinishedBody(t *testing.T) {
	u := serveUnix(t, childHandler())
	tr := newTransport(u.sock)
	defer tr.CloseIdleConnections()
	partly(t, tr, "/big").Close()
	if _, got, err := send(t, t.Context(), tr, "GET", "/hello", ""); err != nil || got != "hello GET " {
		t.Fatalf("after an unfinished body: %q, %v", got, err)
	}
	if n := u.conns.Load(); n != 2 {
		t.Errorf("%d connections; want 2: the unfinished one must not be reused", n)
	}
}

// TestTransportEndlessBody: closing a body that never ends (a stream
// the client left) returns at once, without reading the rest.
func TestTransportEndlessBody(t *testing.T) {
	u := serveUnix(t, childHandler())
	tr := newTransport(u.sock)
	defer tr.CloseIdleConnections()
	body := partly(t, tr, "/forever")
	closed := make(chan struct{})
	go func() {
		body.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close of an endless body did not return in 5 s")
	}
}

// TestTransportUpgrade: an upgrade goes through http.Transport, which
// hands the connection over.
func TestTransportUpgrade(t *testing.T) {
	u := serveUnix(t, childHandler())
	tr, dials := countingTransport(u.sock)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://plugind/hello", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if dials.Load() != 1 {
		t.Errorf("an upgrade request did not go through http.Transport")
	}
}

// TestTransportCancel: a call whose context ends while the child holds
// it returns at once with the context's error, and its connection is
// not reused.
func TestTransportCancel(t *testing.T) {
	u := serveUnix(t, childHandler())
	tr := newTransport(u.sock)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := send(t, ctx, tr, "GET", "/hold", "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("returned after %v, long after its deadline", took)
	}
	if _, got, err := send(t, t.Context(), tr, "GET", "/hello", ""); err != nil || got != "hello GET " {
		t.Fatalf("after a cancelled call: %q, %v", got, err)
	}
	if n := u.conns.Load(); n != 2 {
		t.Errorf("%d connections; want 2: the cancelled one must not be reused", n)
	}
}

// TestTransportStale: a pooled connection the child has closed is
// replaced for a request that may be sent again (GET), and reported for
// one that may not (a bodiless POST), which the child never sees twice.
func TestTransportStale(t *testing.T) {
	tests := []struct {
		method string
		retry  bool
	}{
		{"GET", true},
		{"POST", false},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			u := serveUnix(t, childHandler())
			tr := newTransport(u.sock)
			defer tr.CloseIdleConnections()
			if _, _, err := send(t, t.Context(), tr, tt.method, "/hello", ""); err != nil {
				t.Fatal(err)
			}
			select { // the child's side of the pooled connection is idle
			case <-u.idle:
			case <-time.After(5 * time.Second):
				t.Fatal("the connection never went idle")
			}
			u.srv.SetKeepAlivesEnabled(false) // closes idle connections
			_, got, err := send(t, t.Context(), tr, tt.method, "/hello", "")
			switch {
			case tt.retry && (err != nil || got != "hello GET "):
				t.Fatalf("on a closed pooled connection: %q, %v; want it sent again", got, err)
			case !tt.retry && !errors.Is(err, errStale):
				t.Fatalf("on a closed pooled connection: %q, %v; want errStale", got, err)
			}
			if want := int32(1) + map[bool]int32{true: 1}[tt.retry]; u.calls.Load() != want {
				t.Errorf("the child served %d calls, want %d", u.calls.Load(), want)
			}
		})
	}
}

// TestTransportEarlyHints: an informational answer reaches the proxy's
// trace, which forwards it to the client, before the final one.
func TestTransportEarlyHints(t *testing.T) {
	u := serveUnix(t, childHandler())
	tr := newTransport(u.sock)
	defer tr.CloseIdleConnections()
	var hints []string
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
			return nil
		},
	})
	resp, got, err := send(t, ctx, tr, "GET", "/hints", "")
	if err != nil || resp.StatusCode != 200 || got != "ok" {
		t.Fatalf("GET /hints = %v %q, %v", resp, got, err)
	}
	if want := "103 </a.css>; rel=preload"; len(hints) != 1 || hints[0] != want {
		t.Errorf("informational answers %q, want [%q]", hints, want)
	}
}

// TestTransportClosed: once the child has exited (CloseIdleConnections),
// nothing is pooled.
func TestTransportClosed(t *testing.T) {
	u := serveUnix(t, childHandler())
	tr := newTransport(u.sock)
	if _, _, err := send(t, t.Context(), tr, "GET", "/hello", ""); err != nil {
		t.Fatal(err)
	}
	tr.CloseIdleConnections()
	if _, _, err := send(t, t.Context(), tr, "GET", "/hello", ""); err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.idle) != 0 {
		t.Errorf("%d connections pooled after close", len(tr.idle))
	}
}
