// crashy fails in the ways an in-process plugin cannot survive, for
// isolated plugins: a panic in a goroutine, os.Exit, a fatal signal, a
// call that never returns. It also reports its environment.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

var URLQuery map[string][]string

// GETOkHandler answers with the process id, so callers can tell
// processes apart.
func GETOkHandler(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "ok "+itoa(os.Getpid()))
}

// GETGoPanicHandler panics in a goroutine while the call waits.
func GETGoPanicHandler(w http.ResponseWriter, r *http.Request) {
	go func() { panic("boom in a goroutine") }()
	<-r.Context().Done()
}

// GETExitHandler exits the process mid-call.
func GETExitHandler(w http.ResponseWriter, r *http.Request) {
	os.Exit(7)
}

// GETHalfHandler sends half of the answer it declared, then exits.
func GETHalfHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Length", "10")
	io.WriteString(w, "half.")
	http.NewResponseController(w).Flush()
	os.Exit(8)
}

// GETSignalHandler dies of ?sig= (KILL, as the OOM killer does, or SEGV).
func GETSignalHandler(w http.ResponseWriter, r *http.Request) {
	sig := syscall.SIGKILL
	if r.URL.Query().Get("sig") == "SEGV" {
		sig = syscall.SIGSEGV
	}
	syscall.Kill(os.Getpid(), sig)
	<-r.Context().Done()
}

// GETStuckHandler never returns: a legacy call that holds the lock.
func GETStuckHandler() string {
	select {}
}

// GETSlowHandler is a legacy call that sleeps ?d= and names its process.
// It says on stdout when it has started.
func GETSlowHandler() string {
	d, _ := time.ParseDuration(strings.Join(URLQuery["d"], ""))
	fmt.Println("slow call started")
	time.Sleep(d)
	return itoa(os.Getpid())
}

// GETEnvHandler lists the names and values of the process's environment.
func GETEnvHandler(w http.ResponseWriter, r *http.Request) {
	json.NewEncoder(w).Encode(os.Environ())
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// GETWhoHandler answers the Host the client sent and its address.
func GETWhoHandler(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, r.Host+" "+r.RemoteAddr)
}
