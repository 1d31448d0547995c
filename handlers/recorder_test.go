package handlers

import (
	"bufio"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
)

// optional names the optional interfaces a writer has, as rec* bits.
func optional(w http.ResponseWriter) int {
	var set int
	if _, ok := w.(http.Flusher); ok {
		set |= recFlusher
	}
	if _, ok := w.(http.Hijacker); ok {
		set |= recHijacker
	}
	if _, ok := w.(io.ReaderFrom); ok {
		set |= recReaderFrom
	}
	if _, ok := w.(http.Pusher); ok {
		set |= recPusher
	}
	//lint:ignore SA1019 the recorder keeps the deprecated interface
	if _, ok := w.(http.CloseNotifier); ok {
		set |= recCloseNotifier
	}
	return set
}

// fullWriter has every optional interface and counts the calls that
// reach it.
type fullWriter struct {
	benchWriter
	calls map[string]int
}

func (w *fullWriter) Flush() { w.calls["Flush"]++ }
func (w *fullWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.calls["Hijack"]++
	return nil, nil, nil
}
func (w *fullWriter) ReadFrom(src io.Reader) (int64, error) {
	w.calls["ReadFrom"]++
	return io.Copy(io.Discard, src)
}
func (w *fullWriter) Push(string, *http.PushOptions) error { w.calls["Push"]++; return nil }
func (w *fullWriter) CloseNotify() <-chan bool             { w.calls["CloseNotify"]++; return nil }

// TestRecorderInterfaces: for every combination of optional interfaces an
// inner writer may have, the recorder has exactly those, and each call
// reaches the inner writer. The inner writers are recorders themselves,
// of each combination, over a writer that has all: first checked to
// have exactly their combination.
func TestRecorderInterfaces(t *testing.T) {
	for set := range recCombinations {
		full := &fullWriter{benchWriter{h: http.Header{}}, map[string]int{}}
		innerRec := &recorder{recorderBase{w: full, info: &requestInfo{}}}
		inner := innerRec.as(set)
		if got := optional(inner); got != set {
			t.Fatalf("combination %05b: the inner writer has %05b", set, got)
		}
		info := &requestInfo{}
		w := info.rec.wrap(inner, info)
		if got := optional(w); got != set {
			t.Errorf("inner writer with %05b: the recorder has %05b", set, got)
			continue
		}
		want := map[string]int{}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
			want["Flush"] = 1
		}
		if h, ok := w.(http.Hijacker); ok {
			h.Hijack()
			want["Hijack"] = 1
		}
		if rf, ok := w.(io.ReaderFrom); ok {
			rf.ReadFrom(strings.NewReader("abc"))
			want["ReadFrom"] = 1
		}
		if p, ok := w.(http.Pusher); ok {
			p.Push("/x", nil)
			want["Push"] = 1
		}
		//lint:ignore SA1019 the recorder keeps the deprecated interface
		if cn, ok := w.(http.CloseNotifier); ok {
			cn.CloseNotify()
			want["CloseNotify"] = 1
		}
		for k, n := range want {
			if full.calls[k] != n {
				t.Errorf("combination %05b: %s reached the inner writer %d times, want %d", set, k, full.calls[k], n)
			}
		}
		if len(full.calls) != len(want) {
			t.Errorf("combination %05b: calls %v, want %v", set, full.calls, want)
		}
		if unwrapped := w.(interface{ Unwrap() http.ResponseWriter }).Unwrap(); unwrapped != inner {
			t.Errorf("combination %05b: Unwrap gives %T, not the inner writer", set, unwrapped)
		}
	}
}

// startServer serves h on loopback, HTTP/1.1 or HTTP/2 over TLS, with
// net/http's own complaints (a superfluous WriteHeader) kept out of the
// test's output.
func startServer(t *testing.T, h http.Handler, http2 bool) (*httptest.Server, *http.Client) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if http2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, srv.Client()
}

// TestRecorderOverRealWriters: what a plugin behind the access log finds
// on its writer is what net/http's writer (HTTP/1.1, HTTP/2) or the gzip
// wrapper offers, and no more.
func TestRecorderOverRealWriters(t *testing.T) {
	tests := []struct {
		name   string
		gzip   bool
		http2  bool
		accept string
		want   int
	}{
		{"HTTP/1.1", false, false, "", recFlusher | recHijacker | recReaderFrom | recCloseNotifier},
		{"HTTP/2", false, true, "", recFlusher | recPusher | recCloseNotifier},
		{"HTTP/1.1, gzip on, not accepted", true, false, "identity", recFlusher | recHijacker | recReaderFrom | recCloseNotifier},
		// gzhttp's writer: Flush and Hijack always, CloseNotify when its
		// own inner writer has it.
		{"HTTP/1.1, gzip accepted", true, false, "gzip", recFlusher | recHijacker | recCloseNotifier},
		{"HTTP/2, gzip accepted", true, true, "gzip", recFlusher | recHijacker | recCloseNotifier},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan int, 1)
			s := &Server{Log: zerolog.Nop(), Gzip: tt.gzip, GzipMinBytes: 1024,
				Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error {
					got <- optional(w)
					return nil
				})}
			srv, client := startServer(t, s.Handler(), tt.http2)
			req, _ := http.NewRequest("GET", srv.URL+"/_PLUGIN/p/X", nil)
			req.Header.Set("Accept-Encoding", tt.accept)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if wantProto := map[bool]int{false: 1, true: 2}[tt.http2]; resp.ProtoMajor != wantProto {
				t.Fatalf("served over %s", resp.Proto)
			}
			if g := <-got; g != tt.want {
				t.Errorf("the plugin's writer has %05b (FHRPC), want %05b", g, tt.want)
			}
		})
	}
}

// TestRecorderStatus: the access log's status and size are the final
// status the client got and the body's bytes, however the handler wrote
// them.
func TestRecorderStatus(t *testing.T) {
	body := strings.Repeat("x", 100)
	tests := []struct {
		name   string
		serve  func(w http.ResponseWriter, r *http.Request)
		status int // logged and received
		size   int
	}{
		{"nothing written", func(w http.ResponseWriter, r *http.Request) {}, 200, 0},
		{"Write without WriteHeader", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }, 200, 100},
		{"WriteString", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }, 200, 100},
		{"ReadFrom (io.Copy)", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(w, strings.NewReader(body))
		}, 200, 100},
		{"WriteHeader only", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }, 204, 0},
		{"WriteHeader then body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(body))
			w.Write([]byte(body))
		}, 201, 200},
		{"103 then 200", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusOK)
			w.Write([]byte(body))
		}, 200, 100},
		{"103 then body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.Write([]byte(body))
		}, 200, 100},
		{"double WriteHeader", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			w.WriteHeader(http.StatusInternalServerError)
		}, 404, 0},
		{"WriteHeader after Write", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(body))
			w.WriteHeader(http.StatusInternalServerError)
		}, 200, 100},
		{"Flush, then WriteHeader", func(w http.ResponseWriter, r *http.Request) {
			w.(http.Flusher).Flush()
			w.WriteHeader(http.StatusInternalServerError)
		}, 200, 0},
		{"ResponseController Flush, then WriteHeader", func(w http.ResponseWriter, r *http.Request) {
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
			w.WriteHeader(http.StatusInternalServerError)
		}, 200, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &plugintest.Log{}
			s := &Server{Log: zerolog.New(logs), Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error {
				tt.serve(w, r)
				return nil
			})}
			srv, client := startServer(t, s.Handler(), false)
			resp, err := client.Get(srv.URL + "/_PLUGIN/p/X")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || len(got) != tt.size {
				t.Fatalf("the client got %d with %d bytes; the case wants %d with %d", resp.StatusCode, len(got), tt.status, tt.size)
			}
			ev := logs.Events(map[string]any{"message": "request"})
			if len(ev) != 1 || ev[0]["status"] != float64(tt.status) || ev[0]["size"] != float64(tt.size) {
				t.Errorf("access log: %s; want status %d, size %d", logs, tt.status, tt.size)
			}
		})
	}
}

// TestRecorderHijack: a hijacked connection is the handler's, and the
// access log calls it 101; a hijack the writer refuses (HTTP/2 under
// gzip) leaves the status to what the handler then writes.
func TestRecorderHijack(t *testing.T) {
	tests := []struct {
		name   string
		http2  bool
		status int
	}{
		{"HTTP/1.1", false, http.StatusSwitchingProtocols},
		{"HTTP/2 under gzip: refused", true, http.StatusNotImplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &plugintest.Log{}
			s := &Server{Log: zerolog.New(logs), Gzip: true, GzipMinBytes: 1024,
				Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error {
					conn, rw, err := w.(http.Hijacker).Hijack()
					if err != nil {
						w.WriteHeader(http.StatusNotImplemented)
						return nil
					}
					defer conn.Close()
					rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhijack")
					return rw.Flush()
				})}
			srv, client := startServer(t, s.Handler(), tt.http2)
			req, _ := http.NewRequest("GET", srv.URL+"/_PLUGIN/p/X", nil)
			req.Header.Set("Accept-Encoding", "gzip")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tt.status == http.StatusSwitchingProtocols && string(body) != "hijack" {
				t.Errorf("the client got %d %q, not the hijacker's answer", resp.StatusCode, body)
			}
			if tt.status != http.StatusSwitchingProtocols && resp.StatusCode != tt.status {
				t.Errorf("the client got %d, want %d", resp.StatusCode, tt.status)
			}
			// The client can have the hijacker's answer before the
			// handler returns and the access log is written.
			var ev []map[string]any
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if ev = logs.Events(map[string]any{"message": "request"}); len(ev) > 0 {
					break
				}
			}
			if len(ev) != 1 || ev[0]["status"] != float64(tt.status) {
				t.Errorf("access log: %s; want status %d", logs, tt.status)
			}
		})
	}
}

// TestRecorderFlushReachesTheClient: a flush through the recorder, by
// http.Flusher or http.ResponseController, sends what was written while
// the handler still runs, over HTTP/1.1 and HTTP/2, with and without the
// gzip wrapper; ResponseController's deadlines reach the connection
// through Unwrap.
func TestRecorderFlushReachesTheClient(t *testing.T) {
	type flushFunc func(w http.ResponseWriter) error
	flusher := func(w http.ResponseWriter) error { w.(http.Flusher).Flush(); return nil }
	controller := func(w http.ResponseWriter) error { return http.NewResponseController(w).Flush() }
	tests := []struct {
		name  string
		http2 bool
		gzip  bool
		flush flushFunc
	}{
		{"HTTP/1.1, Flusher", false, false, flusher},
		{"HTTP/1.1, ResponseController", false, false, controller},
		{"HTTP/1.1 under gzip, ResponseController", false, true, controller},
		{"HTTP/2, Flusher", true, false, flusher},
		{"HTTP/2, ResponseController", true, false, controller},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			received := make(chan struct{})
			s := &Server{Log: zerolog.Nop(), Gzip: tt.gzip, GzipMinBytes: 1,
				Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error {
					rc := http.NewResponseController(w)
					if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
						t.Errorf("SetWriteDeadline: %v", err)
					}
					if err := rc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
						t.Errorf("SetReadDeadline: %v", err)
					}
					w.Header().Set("Content-Type", "text/event-stream") // not compressed
					io.WriteString(w, "first\n")
					if err := tt.flush(w); err != nil {
						t.Errorf("flush: %v", err)
					}
					select {
					case <-received: // the client read it: the flush sent it
					case <-time.After(10 * time.Second):
						t.Error("the client did not get the flushed line while the handler ran")
					}
					io.WriteString(w, "second\n")
					return nil
				})}
			srv, client := startServer(t, s.Handler(), tt.http2)
			req, _ := http.NewRequest("GET", srv.URL+"/_PLUGIN/p/X", nil)
			req.Header.Set("Accept-Encoding", "gzip")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			if err != nil || line != "first\n" {
				t.Fatalf("first line %q, %v", line, err)
			}
			close(received)
			if rest, _ := io.ReadAll(br); string(rest) != "second\n" {
				t.Errorf("then %q", rest)
			}
		})
	}
}

// TestRecorderFlushError: a flush that fails (the write deadline has
// passed) reports its error through http.ResponseController, as it does
// on net/http's own writer, rather than passing for a success.
func TestRecorderFlushError(t *testing.T) {
	flushErr := make(chan error, 1)
	s := &Server{Log: zerolog.Nop(), Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Errorf("SetWriteDeadline: %v", err)
		}
		io.WriteString(w, "lost")
		flushErr <- rc.Flush()
		return nil
	})}
	srv, client := startServer(t, s.Handler(), false)
	if resp, err := client.Get(srv.URL + "/_PLUGIN/p/X"); err == nil {
		resp.Body.Close()
	}
	if err := <-flushErr; err == nil {
		t.Error("a flush past the write deadline reported no error")
	} else if ne := (net.Error)(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("flush error %v; want the connection's timeout", err)
	}
}

// TestRecorderPush: under HTTP/2 the recorder is a Pusher and a push
// reaches the connection, which answers for itself (Go's client refuses
// pushes).
func TestRecorderPush(t *testing.T) {
	pushErr := make(chan error, 1)
	s := &Server{Log: zerolog.Nop(), Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error {
		p, ok := w.(http.Pusher)
		if !ok {
			t.Errorf("%T is no Pusher under HTTP/2", w)
			pushErr <- nil
			return nil
		}
		pushErr <- p.Push("/style.css", nil)
		return nil
	})}
	srv, client := startServer(t, s.Handler(), true)
	resp, err := client.Get(srv.URL + "/_PLUGIN/p/X")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := <-pushErr; !errors.Is(err, http.ErrNotSupported) {
		t.Errorf("push: %v; want the connection's refusal, http.ErrNotSupported", err)
	}
}

// TestAccessLogAllocs holds the access layer to what it must allocate per
// request over the handler's own: the request's copy and the request
// info, which is its context and holds the recorder and the request id's
// header value; and a generated id's text. The recorder's type, whatever
// the inner writer's interfaces, costs nothing.
func TestAccessLogAllocs(t *testing.T) {
	tests := []struct {
		name  string
		w     interface{ reset() }
		r     *http.Request
		extra float64
	}{
		{"the client's id", &benchWriter{h: http.Header{}}, benchRequest("X-Request-Id", "abc"), 2},
		{"a generated id", &benchWriter{h: http.Header{}}, benchRequest(), 3},
		{"a writer with every optional interface", &fullWriter{benchWriter{h: http.Header{}}, map[string]int{}}, benchRequest("X-Request-Id", "abc"), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := benchServer(true)
			w, h := tt.w.(http.ResponseWriter), s.access(trivial)
			base := testing.AllocsPerRun(200, func() {
				tt.w.reset()
				trivial(w, tt.r)
			})
			got := testing.AllocsPerRun(200, func() {
				tt.w.reset()
				h.ServeHTTP(w, tt.r)
			})
			if want := base + tt.extra; got > want {
				t.Errorf("%v allocs per request; want at most %v (the handler's own %v + %v)", got, want, base, tt.extra)
			}
		})
	}
}
