package handlers

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

// plugin serves /_PLUGIN/{file}/{func}: resolve, then serve. Configured
// limits (methods, body size) apply before the plugin is looked up; the
// others are composed around the resolved handler (pluginState.wrap).
func (s *Server) plugin(w http.ResponseWriter, r *http.Request) {
	info := infoFrom(r.Context())
	st := s.existing(info.file)
	if st != nil {
		if err := st.admit(r, w, info.file); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	h, err := s.Plugins.Resolve(r.Context(), info.file, info.fn, r.Method)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	info.resolved = true
	if st == nil {
		// Made only for plugins that exist, so that requests for random
		// names cannot grow the map.
		st = s.state(info.file)
		if err := st.admit(r, w, info.file); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if format := renderer(r); format != "" {
		// prestd's ?_renderer: the answer is buffered (bounded like one
		// under a timeout) and rendered as prestd renders it.
		buf := &bufferedWriter{header: make(http.Header), plugin: info.file}
		err = st.wrap(h).ServeHTTP(buf, r)
		if err == nil && buf.overflow {
			err = fmt.Errorf("%w: plugin %q wrote more than %d bytes, the most an answer rendered by ?_renderer may buffer", errBufferFull, info.file, MaxBufferedBytes)
		}
		if err == nil && !info.bodyTooLarge.Load() {
			render(w, buf, format)
			return
		}
	} else {
		err = st.wrap(h).ServeHTTP(w, r)
	}
	if info.bodyTooLarge.Load() {
		switch {
		case !info.started():
			err = fmt.Errorf("%w: the body is over the limit", errBodyTooLarge)
		case info.status < 400:
			// A success computed from a cut-off body would pass for one
			// computed from the whole: abort rather than let it.
			err = fmt.Errorf("%w: the plugin answered %d to a body cut off at the limit", errBodyTooLarge, info.status)
		}
	}
	if err != nil {
		s.fail(w, r, err)
	}
}

// limitedBody is http.MaxBytesReader that notes, in the request's info,
// that the body went over the limit, so that the answer can be 413 however
// the plugin took the error.
type limitedBody struct {
	io.ReadCloser
	info *requestInfo
}

func (b limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var mbe *http.MaxBytesError
	if err != nil && errors.As(err, &mbe) {
		b.info.bodyTooLarge.Store(true)
	}
	return n, err
}

// limitReader bounds r's body at limit bytes (limit > 0). A request
// without a body (net/http's NoBody: no Content-Length, not chunked) has
// nothing to bound and keeps it.
func limitReader(w http.ResponseWriter, r *http.Request, limit int64) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	if info := infoFrom(r.Context()); info != nil {
		body = limitedBody{body, info}
	}
	r.Body = body
}
