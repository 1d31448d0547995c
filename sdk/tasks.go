package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
)

// Tasks runs a plugin's background work (see package tasks): a handler
// starts a task and answers at once; the client follows its Location.
type Tasks interface {
	Start(ctx context.Context, name string, run func(ctx context.Context, progress func(float64)) ([]byte, error)) (id string, err error)
}

// ErrQueueFull: the task queue is full; answer 429.
var ErrQueueFull = errors.New("sdk: the task queue is full")

// ErrNoTasks: the context carries no task runner (outside plugind).
var ErrNoTasks = errors.New("sdk: no task runner in this context")

// StartTask queues run as a task named name and returns its id. run gets
// a context that ends when the task is cancelled (DELETE /_TASKS/{id}),
// times out or the server stops, and a function to report progress in
// [0, 1]; its result is stored JSON-encoded.
func StartTask[R any](ctx context.Context, name string, run func(ctx context.Context, progress func(float64)) (R, error)) (string, error) {
	t := envFrom(ctx).Tasks
	if t == nil {
		return "", ErrNoTasks
	}
	return t.Start(ctx, name, func(ctx context.Context, progress func(float64)) ([]byte, error) {
		r, err := run(ctx, progress)
		if err != nil {
			return nil, err
		}
		return json.Marshal(r)
	})
}

// TaskLocation is where a task's state is served.
func TaskLocation(id string) string { return "/_TASKS/" + id }

// Accept answers the outcome of StartTask: 202 with the task's id and
// Location, 429 when the queue is full, 500 otherwise.
func Accept(w http.ResponseWriter, id string, err error) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case errors.Is(err, ErrQueueFull):
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		json.NewEncoder(w).Encode(map[string]string{"error": "the task queue is full; try again"})
	case err != nil:
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]string{"error": "the task could not be started"})
	default:
		w.Header().Set("Location", TaskLocation(id))
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(map[string]string{"id": id, "location": TaskLocation(id)})
	}
}
