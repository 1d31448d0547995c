// jobs starts background tasks.
package main

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/plugind/plugind/sdk"
)

// POSTRunHandler starts a task that works for ?d= (in 4 steps,
// reporting progress) and returns {"steps":4}; ?fail=1 makes it fail,
// ?panic=1 panic.
func POSTRunHandler(w http.ResponseWriter, r *http.Request) {
	d, _ := time.ParseDuration(r.URL.Query().Get("d"))
	fail, explode := r.URL.Query().Get("fail") != "", r.URL.Query().Get("panic") != ""
	id, err := sdk.StartTask(r.Context(), "steps", func(ctx context.Context, progress func(float64)) (map[string]int, error) {
		for i := range 4 {
			select {
			case <-time.After(d / 4):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			progress(float64(i+1) / 4)
		}
		switch {
		case explode:
			panic("task exploded")
		case fail:
			return nil, errors.New("step 4 failed")
		}
		return map[string]int{"steps": 4}, nil
	})
	sdk.Accept(w, id, err)
}
