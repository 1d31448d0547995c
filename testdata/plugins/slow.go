// slow sleeps in both ABIs, for timeouts, concurrency limits and the
// legacy-against-standard benchmark.
package main

import (
	"fmt"
	"io"
	"net/http"
	"time"
)

var URLQuery map[string][]string

func sleepFor(q []string) time.Duration {
	if len(q) == 0 {
		return time.Millisecond
	}
	d, _ := time.ParseDuration(q[0])
	return d
}

// GETLegacyHandler sleeps for ?d= (1ms by default).
func GETLegacyHandler() string {
	time.Sleep(sleepFor(URLQuery["d"]))
	return "slept"
}

// GETStandardHandler sleeps for ?d= (1ms by default), or until the
// request's context ends.
func GETStandardHandler(w http.ResponseWriter, r *http.Request) {
	select {
	case <-time.After(sleepFor(r.URL.Query()["d"])):
		io.WriteString(w, "slept")
	case <-r.Context().Done():
	}
}

// POSTBodyHandler reads the body and says how much it got.
func POSTBodyHandler(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	fmt.Fprintf(w, "%d", n)
}

// GETAbortHandler aborts its response the way httputil.ReverseProxy does.
func GETAbortHandler(w http.ResponseWriter, r *http.Request) {
	panic(http.ErrAbortHandler)
}
