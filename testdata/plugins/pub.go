// pub publishes a tick per request.
package main

import (
	"net/http"

	"github.com/plugind/plugind/sdk"
)

// POSTTickHandler publishes one tick event.
func POSTTickHandler(w http.ResponseWriter, r *http.Request) {
	if err := sdk.Publish(r.Context(), "tick", struct{}{}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Write([]byte("ticked"))
}
