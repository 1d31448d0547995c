// journal writes its lifecycle into the file its settings name
// ("journal"), one line per event: "init NAME ID", "close-start NAME ID",
// "close-end NAME ID", where ID tells loaded instances apart. A hook that
// starts while another of this instance runs writes "overlap NAME ID".
// With "hold" set, Close waits until that file exists (or its context
// ends) before it returns.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

var Settings map[string]any

var (
	id      = fmt.Sprint(time.Now().UnixNano()) // this instance
	running atomic.Int32                        // hooks of this instance in progress
)

func Init(ctx context.Context, settings map[string]any) error {
	defer enter(settings)()
	return note(settings, "init")
}

func Close(ctx context.Context) error {
	settings := Settings
	defer enter(settings)()
	if err := note(settings, "close-start"); err != nil {
		return err
	}
	if hold, _ := settings["hold"].(string); hold != "" {
		for {
			if _, err := os.Stat(hold); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return note(settings, "close-end")
}

// enter marks a hook running, noting an overlap with another.
func enter(settings map[string]any) (leave func()) {
	if running.Add(1) > 1 {
		note(settings, "overlap")
	}
	return func() { running.Add(-1) }
}

func note(settings map[string]any, what string) error {
	path, _ := settings["journal"].(string)
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s %v %s\n", what, settings["name"], id)
	return errors.Join(err, f.Close())
}

// GETIDHandler answers which instance serves.
func GETIDHandler() string { return id }
