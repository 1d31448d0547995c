package handlers

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
)

//go:generate go run gen_recorder.go

// The access log's view of a response: recorder passes every call on to
// the writer it wraps and notes the final status and the body's size in
// the request's info. It lives inside the requestInfo the access layer
// allocates anyway, so recording costs no allocation of its own (the
// info cannot be pooled: an abandoned handler under a timeout may still
// hold the request, whose context is the info, after the response).
//
// The wrapped writer keeps the optional interfaces of the one it wraps,
// exactly: http.Flusher, http.Hijacker, io.ReaderFrom, http.Pusher and
// http.CloseNotifier are implemented when, and only when, the inner
// writer implements them, so that a handler's type assertion finds what
// the server offers, no more. Each combination is its own type
// (recorder_gen.go), a defined type of recorder chosen once per request
// by wrap: converting &info.rec to one is free, and a pointer in an
// interface does not allocate. Unwrap reaches the inner writer for
// http.ResponseController (deadlines, full duplex), and FlushError
// returns the inner writer's flush error where a bare Flush loses it.

// recorder is the state of the wrapped writer and its methods common to
// every combination.
type recorder struct{ recorderBase }

// recorderBase is embedded by recorder, so that every defined type of
// recorder has its methods.
type recorderBase struct {
	w    http.ResponseWriter // the inner writer
	info *requestInfo        // where status and size go
}

// Optional interfaces of the inner writer, as bits of the set that
// chooses the combination type (recorder.as).
const (
	recFlusher = 1 << iota
	recHijacker
	recReaderFrom
	recPusher
	recCloseNotifier
	recCombinations
)

// wrap returns r recording w's response in info, with w's optional
// interfaces.
func (r *recorder) wrap(w http.ResponseWriter, info *requestInfo) http.ResponseWriter {
	r.w, r.info = w, info
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
	if _, ok := w.(http.CloseNotifier); ok {
		set |= recCloseNotifier
	}
	return r.as(set)
}

// begin notes that the response has begun with a 200, unless a status
// was written already.
func (r *recorderBase) begin() {
	if r.info.status == 0 {
		r.info.status = http.StatusOK
	}
}

func (r *recorderBase) Header() http.Header { return r.w.Header() }

// WriteHeader records the final status: the first written, 1xx excluded
// (103 Early Hints and the like are interim), except 101, after which the
// connection is no longer HTTP. A second final status is net/http's to
// refuse; the first is what the client got.
func (r *recorderBase) WriteHeader(code int) {
	if r.info.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.info.status = code
	}
	r.w.WriteHeader(code)
}

func (r *recorderBase) Write(b []byte) (int, error) {
	r.begin()
	n, err := r.w.Write(b)
	r.info.size += n
	return n, err
}

// WriteString spares io.WriteString a copy of s when the inner writer
// takes strings (net/http's does); otherwise it is what io.WriteString
// would have done.
func (r *recorderBase) WriteString(s string) (int, error) {
	r.begin()
	var n int
	var err error
	if sw, ok := r.w.(io.StringWriter); ok {
		n, err = sw.WriteString(s)
	} else {
		n, err = r.w.Write([]byte(s))
	}
	r.info.size += n
	return n, err
}

// Unwrap returns the inner writer, for http.ResponseController.
func (r *recorderBase) Unwrap() http.ResponseWriter { return r.w }

// FlushError flushes through the inner writer's FlushError or Flush,
// unwrapping as http.ResponseController does, and returns its error: a
// ResponseController's Flush on the recorder reports a failed flush (a
// write deadline passed, the client gone) instead of losing it in Flush.
// A flush commits the header: the status is 200 unless written before.
func (r *recorderBase) FlushError() error {
	err := http.NewResponseController(r.w).Flush()
	if !errors.Is(err, http.ErrNotSupported) {
		r.begin()
	}
	return err
}

// flush and the others below are the optional interfaces' methods,
// exported by the combination types whose inner writer has them.

func (r *recorderBase) flush() {
	r.begin()
	r.w.(http.Flusher).Flush()
}

// hijack hands the connection to the handler; the response is then 101
// as far as the log goes, unless a status was written before.
func (r *recorderBase) hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := r.w.(http.Hijacker).Hijack()
	if err == nil && r.info.status == 0 {
		r.info.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

func (r *recorderBase) readFrom(src io.Reader) (int64, error) {
	r.begin()
	n, err := r.w.(io.ReaderFrom).ReadFrom(src)
	r.info.size += int(n)
	return n, err
}

func (r *recorderBase) push(target string, opts *http.PushOptions) error {
	return r.w.(http.Pusher).Push(target, opts)
}

func (r *recorderBase) closeNotify() <-chan bool {
	return r.w.(http.CloseNotifier).CloseNotify() // deprecated, kept for handlers that still use it
}
