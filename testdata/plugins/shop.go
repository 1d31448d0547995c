// shop talks to ledger over the bus only: plugins share no Go types.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/plugind/plugind/sdk"
)

// POSTResetHandler dispatches ledger.reset.
func POSTResetHandler(w http.ResponseWriter, r *http.Request) {
	if err := sdk.Dispatch(r.Context(), "ledger.reset", struct{}{}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprint(w, "reset")
}

// POSTRefundHandler dispatches a command nobody handles.
func POSTRefundHandler(w http.ResponseWriter, r *http.Request) {
	err := sdk.Dispatch(r.Context(), "ledger.refund", struct{}{})
	if errors.Is(err, sdk.ErrHandlerNotFound) {
		http.Error(w, "no refunds here", http.StatusNotImplemented)
		return
	}
	fmt.Fprint(w, "refunded?")
}

// POSTSubscribeHandler tries to subscribe from a request: refused.
func POSTSubscribeHandler(w http.ResponseWriter, r *http.Request) {
	err := sdk.Subscribe(r.Context(), "x", func(context.Context, int) error { return nil })
	fmt.Fprint(w, errors.Is(err, sdk.ErrRegisterInInit))
}
