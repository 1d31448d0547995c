// std exercises the standard ABI.
package main

import (
	"fmt"
	"net/http"
	"time"
)

// GETHeaderHandler echoes a request header, concurrently.
func GETHeaderHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Echo", r.Header.Get("X-In"))
	fmt.Fprintf(w, "id=%s", r.URL.Query().Get("id"))
}

// GETSlowHandler sleeps for the query's ms, then answers "done".
func GETSlowHandler(w http.ResponseWriter, r *http.Request) {
	d, _ := time.ParseDuration(r.URL.Query().Get("d"))
	select {
	case <-time.After(d):
		fmt.Fprint(w, "done")
	case <-r.Context().Done():
	}
}

// GETBoomHandler panics before writing anything.
func GETBoomHandler(w http.ResponseWriter, r *http.Request) {
	panic("standard handler exploded")
}

// GETLateBoomHandler writes a status, then panics.
func GETLateBoomHandler(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusTeapot)
	panic("too late to say so")
}
