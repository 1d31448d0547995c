// hooks exports every lifecycle hook and the legacy settings globals.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync/atomic"
)

var (
	Settings map[string]any
	Secrets  map[string]string
)

var inits atomic.Int64

// Init counts its calls and checks its settings.
func Init(ctx context.Context, settings map[string]any) error {
	if settings["fail_init"] == true {
		return errors.New("database unreachable")
	}
	inits.Add(1)
	return nil
}

// Close records that it ran in the file its settings name.
func Close(ctx context.Context) error {
	if path, ok := Settings["close_marker"].(string); ok {
		return os.WriteFile(path, []byte("closed"), 0o644)
	}
	return nil
}

// Health fails when its settings say so.
func Health(ctx context.Context) error {
	if Settings["healthy"] == false {
		return errors.New("backend down")
	}
	return nil
}

// GETStateHandler shows what the globals hold (the secret's presence only).
func GETStateHandler() string {
	_, hasToken := Secrets["token"]
	out, _ := json.Marshal(map[string]any{"inits": inits.Load(), "greeting": Settings["greeting"], "has_token": hasToken})
	return string(out)
}
