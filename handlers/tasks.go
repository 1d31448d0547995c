package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/plugind/plugind/bus"
	"github.com/plugind/plugind/tasks"
)

// TaskStore serves /_TASKS/{id}. *tasks.Manager implements it.
type TaskStore interface {
	Get(id string) (tasks.Task, error)
	Cancel(id string) (tasks.Task, error)
}

var _ TaskStore = (*tasks.Manager)(nil)

// errTaskNotFound and errTaskFinished are mapped by writeError.
var (
	errTaskNotFound = errors.New("no such task")
	errTaskFinished = errors.New("the task has finished")
)

// task serves GET (the task's state) and DELETE (cancel it) on
// /_TASKS/{id}.
func (s *Server) task(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	var t tasks.Task
	var err error
	if r.Method == http.MethodDelete {
		t, err = s.Tasks.Cancel(id)
	} else {
		t, err = s.Tasks.Get(id)
	}
	switch {
	case errors.Is(err, tasks.ErrNotFound):
		s.writeError(w, r, fmt.Errorf("%w: %s", errTaskNotFound, id))
	case errors.Is(err, tasks.ErrFinished):
		s.writeError(w, r, fmt.Errorf("%w: it is %s", errTaskFinished, t.State))
	case err != nil:
		s.writeError(w, r, err)
	case r.Method == http.MethodDelete:
		writeJSON(w, http.StatusAccepted, t) // cancellation requested
	default:
		writeJSON(w, http.StatusOK, t)
	}
}

// EventStream is the bus's traffic, for /_EVENTS. *bus.Tap implements it.
type EventStream interface {
	Stream(ctx context.Context) <-chan bus.Message
}

var _ EventStream = (*bus.Tap)(nil)

// events streams bus traffic as Server-Sent Events, for debugging.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	stream := s.Events.Stream(r.Context()) // before the client can know it is open
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives http.writetimeout
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	// A comment first: it gets the headers out through every buffering
	// writer (compression decides on the first bytes), so the client knows
	// the stream is open before any message arrives.
	if _, err := io.WriteString(w, ": plugind bus\n\n"); err != nil {
		return
	}
	_ = rc.Flush()
	for {
		var m bus.Message
		select {
		case msg, ok := <-stream:
			if !ok {
				return
			}
			m = msg
		case <-s.Closing: // nil: never
			return
		}
		data, _ := json.Marshal(struct {
			Kind      bus.Kind        `json:"kind"`
			Name      string          `json:"name"`
			Payload   json.RawMessage `json:"payload,omitempty"`
			Delivered int             `json:"delivered"`
			Error     string          `json:"error,omitempty"`
		}{m.Kind, m.Name, validJSON(m.Payload), m.Delivered, errString(m.Err)})
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", m.Kind, data); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func validJSON(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
