// stream answers in two parts with a flush between them, and holds the
// response open in between until the client leaves (at most 10 s): a
// client reads the first part before the end only if the flush reached
// it.
package main

import (
	"net/http"
	"strconv"
	"time"
)

// GETLinesHandler streams text lines, chunked (no length declared).
func GETLinesHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	twoParts(w, r, "first\n", "last\n")
}

// GETSizedHandler streams text lines of a length it declares.
func GETSizedHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len("first\n")+len("last\n")))
	twoParts(w, r, "first\n", "last\n")
}

// GETEventsHandler streams server-sent events.
func GETEventsHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	twoParts(w, r, "data: first\n\n", "data: last\n\n")
}

func twoParts(w http.ResponseWriter, r *http.Request, first, last string) {
	w.Write([]byte(first))
	if err := http.NewResponseController(w).Flush(); err != nil {
		panic(err)
	}
	select {
	case <-r.Context().Done():
		return
	case <-time.After(10 * time.Second):
	}
	w.Write([]byte(last))
}

// GETPingHandler answers at once: the plugin is up.
func GETPingHandler(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }
