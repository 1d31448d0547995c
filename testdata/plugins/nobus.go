// nobus reports what the bus and the task runner answer it: in an
// isolated plugin's process there are neither.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/plugind/plugind/sdk"
)

// GETTryHandler publishes an event and starts a task, and reports whether
// each failed with the sdk's documented error.
func GETTryHandler(w http.ResponseWriter, r *http.Request) {
	busErr := sdk.Publish(r.Context(), "tried", struct{}{})
	_, taskErr := sdk.StartTask(r.Context(), "try", func(ctx context.Context, progress func(float64)) (int, error) { return 0, nil })
	json.NewEncoder(w).Encode(map[string]bool{
		"no_bus":   errors.Is(busErr, sdk.ErrNoBus),
		"no_tasks": errors.Is(taskErr, sdk.ErrNoTasks),
	})
}
