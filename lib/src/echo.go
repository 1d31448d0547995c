// echo is a plugin with the standard handler ABI: it gets the request
// itself, so it runs concurrently and sees headers and body.
//
//	curl -X POST -d 'hi' localhost:3000/_PLUGIN/echo/Echo
package main

import (
	"encoding/json"
	"io"
	"net/http"
)

// POSTEchoHandler answers with the request's method, path, query and body.
func POSTEchoHandler(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"method": r.Method,
		"path":   r.URL.Path,
		"query":  r.URL.Query(),
		"body":   string(body),
	})
}
