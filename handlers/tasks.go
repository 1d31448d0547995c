package handlers

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gorilla/mux"

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

// EventStream serves GET /_EVENTS, the bus's traffic as Server-Sent
// Events. The server implements it: the stream's limits are the bus's
// configuration (bus.maxstreams, bus.writetimeout), shared with the admin
// page's stream.
type EventStream interface {
	http.Handler
}

// events serves the event stream, behind the route's access class.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	s.Events.ServeHTTP(w, r)
}
