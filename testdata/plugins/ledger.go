// ledger keeps a count of orders through the bus: it listens to the
// order.placed event, answers the ledger.total query and handles the
// ledger.reset command. It also notes plugins that load after it.
package main

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"

	"github.com/plugind/plugind/sdk"
)

type order struct {
	Item string `json:"item"`
}

var (
	mu     sync.Mutex
	total  int
	loaded []string
)

func Init(ctx context.Context) error {
	if err := sdk.Subscribe(ctx, "order.placed", func(_ context.Context, o order) error {
		mu.Lock()
		defer mu.Unlock()
		total++
		return nil
	}); err != nil {
		return err
	}
	if err := sdk.Subscribe(ctx, "plugind.plugin.loaded", func(_ context.Context, e struct{ Plugin string }) error {
		mu.Lock()
		defer mu.Unlock()
		loaded = append(loaded, e.Plugin)
		return nil
	}); err != nil {
		return err
	}
	if err := sdk.HandleQuery(ctx, "ledger.total", func(context.Context, struct{}) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return total, nil
	}); err != nil {
		return err
	}
	return sdk.HandleCommand(ctx, "ledger.reset", func(context.Context, struct{}) error {
		mu.Lock()
		defer mu.Unlock()
		total = 0
		return nil
	})
}

// POSTOrderHandler publishes order.placed; a failing listener elsewhere
// is reported, not fatal.
func POSTOrderHandler(w http.ResponseWriter, r *http.Request) {
	err := sdk.Publish(r.Context(), "order.placed", order{Item: r.URL.Query().Get("item")})
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"published": true, "listener_errors": err != nil})
}

// GETTotalHandler asks the bus, as any plugin would.
func GETTotalHandler(w http.ResponseWriter, r *http.Request) {
	n, err := sdk.Query[int](r.Context(), "ledger.total", struct{}{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	json.NewEncoder(w).Encode(map[string]int{"total": n})
}

// GETLoadedHandler lists the plugins loaded since this one.
func GETLoadedHandler(w http.ResponseWriter, r *http.Request) {
	mu.Lock()
	defer mu.Unlock()
	json.NewEncoder(w).Encode(loaded)
}
