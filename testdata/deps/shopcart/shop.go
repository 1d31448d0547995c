// A folder plugin whose own go.mod requires nothing: it imports a
// package of its own module.
package main

import (
	"io"
	"net/http"

	"example.com/shop/cart"
)

// GETHelloHandler answers with what the cart package says.
func GETHelloHandler(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, cart.Hello())
}
