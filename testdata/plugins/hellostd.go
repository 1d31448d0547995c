// hellostd does lib/src/hello.go's work through the standard ABI: the
// same JSON from the route variables and the query, for benchmarks of
// one ABI against the other.
package main

import (
	"encoding/json"
	"net/http"

	"github.com/plugind/plugind/sdk"
)

type Response struct {
	HTTPVars map[string]string   `json:"http_vars"`
	URLQuery map[string][]string `json:"url_query"`
	MSG      string              `json:"msg"`
}

// GETHelloHandler answers what hello's GETHelloHandler answers.
func GETHelloHandler(w http.ResponseWriter, r *http.Request) {
	body, err := json.Marshal(Response{HTTPVars: sdk.Vars(r.Context()), URLQuery: r.URL.Query(), MSG: "Hello plugin caller!"})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}
