package isolate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/isolate/child"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/sdk"
)

// call is one request on its way to a child: what the proxy's hooks need
// and what they found wrong. It rides in the outgoing request's context.
type call struct {
	symbol string
	w      http.ResponseWriter // the client's: the transport flushes it (body.Read)
	err    error
}

type callKey struct{}

// newProxy returns the reverse proxy to pr's socket. A reverse proxy was
// chosen over hashicorp/go-plugin's gRPC: it adds no dependency to the
// server (and so to every in-process plugin's build), streams bodies both
// ways, and keeps HTTP's semantics (headers, status, trailers, flushes)
// that a plugin's handler is written against; a child is a plain HTTP
// server anyone can curl on its socket.
//
// What the proxy itself logs (an answer cut short by the child, say) goes
// to log, the plugin's, marked component=proxy.
func newProxy(pr *proc, log zerolog.Logger) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // the plugin sees the Host the client sent
			h := r.Out.Header
			for k := range h {
				if strings.HasPrefix(k, "X-Plugind-") { // canonical form; a client's own are dropped
					delete(h, k)
				}
			}
			c := r.In.Context().Value(callKey{}).(*call)
			h.Set(child.HeaderSymbol, c.symbol)
			env := sdk.Vars(r.In.Context())
			h.Set(child.HeaderFile, env["file"])
			h.Set(child.HeaderFunc, env["func"])
			h.Set(child.HeaderRequestID, sdk.RequestID(r.In.Context()))
			h.Set(child.HeaderRemote, r.In.RemoteAddr)
		},
		Transport: pr.tr,
		// A plugin's flushes reach the client: the proxy flushes each
		// write at once for a body of unknown length (a plugin that
		// flushed before its end, whose answer the child sends chunked)
		// and for server-sent events, and the transport flushes a body of
		// known length before waiting on the child for more of it (a
		// plugin that set Content-Length and flushed). A body of known
		// length that came whole is written once: a FlushInterval of -1
		// for every answer would also flush the header on a goroutine of
		// its own before the body came, a second write to the client for
		// each request (a quarter of the server's CPU per isolated call,
		// measured).
		FlushInterval: 0,
		// Without a pool the proxy allocates a 32 KiB copy buffer for
		// every response.
		BufferPool: &bufferPool{},
		ModifyResponse: func(resp *http.Response) error {
			kind := resp.Header.Get(child.HeaderError)
			if kind == "" {
				return nil
			}
			defer resp.Body.Close()
			var f child.Failure
			_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&f)
			e := &loader.Error{Kind: loader.ErrPanic, Plugin: pr.plugin, Msg: f.Msg, Detail: f.Detail, Site: f.Site}
			switch kind {
			case child.ErrKindPanic:
				e.Err, e.Stack = fmt.Errorf("panic: %s", f.Detail), []byte(f.Stack)
			case child.ErrKindStatus:
				e.Kind = loader.ErrStatus
			case child.ErrKindNoHandler:
				e.Kind = loader.ErrNoHandler
			case child.ErrKindBusy:
				e.Kind = loader.ErrBusy
			}
			return e
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			r.Context().Value(callKey{}).(*call).err = err
		},
		ErrorLog: stdlog.New(log.With().Str("component", "proxy").Logger(), "", 0),
	}
}

// bufferPool lends the proxy its copy buffers (httputil.BufferPool).
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// Handler is one function of an isolated plugin: the comparable value
// Resolve returns, kept for the plugin's life.
type Handler struct {
	p      *plugin
	symbol string
	abi    loader.ABI
}

// ServeHTTP proxies r to one of the plugin's processes and returns what
// went wrong: ErrCrashed when the process died under the call,
// ErrRestarting when none is serving, the child's panic or status error
// as the in-process adapter would have returned it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	pr, err := h.p.pick()
	if err != nil {
		return err
	}
	defer pr.release()
	c := &call{symbol: h.symbol, w: w}
	pr.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
	if c.err == nil {
		return nil
	}
	return h.failed(r, pr, c.err)
}

// crashWait bounds how long a call whose connection broke waits to see
// its process exit, to tell a crash from a lost connection.
const crashWait = 2 * time.Second

func (h *Handler) failed(r *http.Request, pr *proc, err error) error {
	var le *loader.Error
	if errors.As(err, &le) {
		return le // the child's own answer: a panic, a bad status
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err // the body went over the plugin's limit: 413, not a crash
	}
	if ctxErr := r.Context().Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			h.p.overdue(pr, h.abi)
		}
		return fmt.Errorf("plugin %q: %w", h.p.name, ctxErr)
	}
	t := time.NewTimer(crashWait)
	defer t.Stop()
	select {
	case <-pr.exited:
		return &loader.Error{Kind: loader.ErrCrashed, Plugin: h.p.name, Err: err,
			Msg: fmt.Sprintf("plugin %q: its process crashed during the call", h.p.name), Detail: pr.reason()}
	case <-t.C:
	}
	return &loader.Error{Kind: loader.ErrCrashed, Plugin: h.p.name, Err: err,
		Msg: fmt.Sprintf("plugin %q: the connection to its process broke during the call", h.p.name)}
}
