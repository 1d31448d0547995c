package isolate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"syscall"
	"time"

	"github.com/plugind/plugind/isolate/child"
)

// transport is the proxy's http.RoundTripper to one child, over its Unix
// socket. A request without a body (most calls) is written, and its
// answer read, on the caller's goroutine over a pooled connection.
// http.Transport, which the others go through, hands each request to a
// connection's writer goroutine and each answer back from its reader
// goroutine: those hand-offs cost about a fifth of the server's CPU per
// isolated call (hello, 50 connections, measured against this).
//
// Requests with a body stay with http.Transport: its writer goroutine
// lets the child answer before the body is all sent (a body over the
// plugin's limit) without both ends blocking on full socket buffers. So
// do upgrades (WebSocket), which take the connection over.
type transport struct {
	sock     string
	fallback *http.Transport

	mu     sync.Mutex // guards idle and closed
	idle   []*unixConn
	closed bool
}

// maxIdle bounds the pooled connections, as MaxIdleConnsPerHost does
// the fallback's.
const maxIdle = 256

func newTransport(sock string) *transport {
	return &transport{
		sock: sock,
		fallback: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			MaxIdleConns:        maxIdle,
			MaxIdleConnsPerHost: maxIdle,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// unixConn is a pooled connection with its buffers.
type unixConn struct {
	net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// CloseIdleConnections closes the pooled connections, and any pooled
// later: it is called once the child has exited.
func (t *transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.closed = nil, true
	t.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
	t.fallback.CloseIdleConnections()
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody || req.Header.Get("Upgrade") != "" {
		return t.fallback.RoundTrip(req)
	}
	c, reused, err := t.get(req.Context())
	if err != nil {
		return nil, err
	}
	resp, err := t.exchange(c, req)
	if err != nil && reused && replayable(req) && errors.Is(err, errStale) {
		// The child closed the pooled connection before reading the
		// request: send it again on a new one, as http.Transport does.
		if c, _, err = t.get(req.Context()); err != nil {
			return nil, err
		}
		resp, err = t.exchange(c, req)
	}
	return resp, err
}

// errStale marks a request that a connection ended before its answer
// began: on a reused connection, one the child had closed.
var errStale = errors.New("connection closed before the answer")

// exchange writes req on c and reads its answer. The answer's body
// returns c to the pool when read to its end; a failure, or the
// request's context ending, closes c.
func (t *transport) exchange(c *unixConn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	// A deadline in the past wakes a blocked read or write: the request
	// was cancelled, or its deadline passed.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		_ = c.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return nil, err
	}
	if err := req.Write(c.bw); err != nil {
		return fail(stale(err))
	}
	if err := c.bw.Flush(); err != nil {
		return fail(stale(err))
	}
	if _, err := c.br.Peek(1); err != nil {
		return fail(stale(err))
	}
	resp, err := http.ReadResponse(c.br, req)
	// Informational answers (103 Early Hints) go to the proxy's trace,
	// which forwards them to the client, as http.Transport's do; then
	// the final answer follows. 101 is final.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err = trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				break
			}
		}
		resp, err = http.ReadResponse(c.br, req)
	}
	if err != nil {
		return fail(err)
	}
	b := &body{ReadCloser: resp.Body, t: t, c: c, ctx: ctx, stop: stop,
		keep: !resp.Close, done: resp.Body == http.NoBody}
	// A body of known length that the child sends in parts (the plugin
	// set Content-Length and flushed): what the proxy has copied to the
	// client is flushed before a read waits on the child. Not for a
	// child's failure, which ModifyResponse reads before anything is
	// written to the client; a body of unknown length the proxy flushes
	// itself.
	if resp.ContentLength > 0 && !b.done && resp.Header.Get(child.HeaderError) == "" {
		if cl, ok := ctx.Value(callKey{}).(*call); ok && cl.w != nil {
			b.client, b.left = cl.w, resp.ContentLength
		}
	}
	resp.Body = b
	return resp, nil
}

// stale marks err, met before any byte of the answer, as errStale when
// it says the connection had ended.
func stale(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
		return fmt.Errorf("%w: %w", errStale, err)
	}
	return err
}

// isReset reports whether err is the peer's reset or closed pipe.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// replayable reports whether req may be sent twice: a bodiless request
// whose method is idempotent, as http.Transport retries.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// get returns a pooled connection, or dials a new one.
func (t *transport) get(ctx context.Context) (c *unixConn, reused bool, err error) {
	t.mu.Lock()
	if n := len(t.idle); n > 0 {
		c = t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		return c, true, nil
	}
	t.mu.Unlock()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", t.sock)
	if err != nil {
		return nil, false, err
	}
	return &unixConn{Conn: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}, false, nil
}

// put pools c, or closes it when the pool is full or closed.
func (t *transport) put(c *unixConn) {
	t.mu.Lock()
	if !t.closed && len(t.idle) < maxIdle {
		t.idle = append(t.idle, c)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	_ = c.Close()
}

// body is an answer's body on a pooled connection: read to its end and
// closed, it returns the connection to the pool.
type body struct {
	io.ReadCloser
	t    *transport
	c    *unixConn
	ctx  context.Context // the call's
	stop func() bool     // the context's AfterFunc: false once it has run
	keep bool            // the child keeps the connection open
	done bool            // read to the end
	once sync.Once

	// client, when set, is flushed before a read that would wait on the
	// child while left of the body's bytes are still to come.
	client http.ResponseWriter
	left   int64
}

func (b *body) Read(p []byte) (int, error) {
	if b.client != nil && b.left > 0 && b.c.br.Buffered() == 0 {
		// A client that left fails the copy's next write, not this.
		_ = http.NewResponseController(b.client).Flush()
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	switch {
	case err == io.EOF:
		b.done = true
	case err != nil && b.ctx.Err() != nil:
		// The call ended under the read (the AfterFunc's deadline): say
		// why. context.Canceled, a client that left, is what the proxy
		// expects and does not log.
		return n, b.ctx.Err()
	}
	return n, err
}

func (b *body) Close() error {
	var err error
	b.once.Do(func() {
		// The connection is reusable only where the answer ended and the
		// context's AfterFunc never ran: it may have set a deadline.
		if b.stop() && b.done && b.keep {
			err = b.ReadCloser.Close()
			b.t.put(b.c)
			return
		}
		// The connection goes first: closing a body before its end
		// reads the rest of it, which for a stream may never end.
		_ = b.c.Close()
		_ = b.ReadCloser.Close()
	})
	return err
}
