// A folder plugin with its own go.mod.
package main

import (
	"io"
	"net/http"

	"example.com/greet"
)

// GETHelloHandler answers with greet.Hello(), which names the greet version.
func GETHelloHandler(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, greet.Hello())
}
