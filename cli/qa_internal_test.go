package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/plugerr"
)

// TestDevLineSaysWhy: the dev console's line for a failure carries what
// the plugin said about it (an Init's error, a panic's value), as the
// loader records it (plugerr.FromPlugin: the text in Detail, never in
// Msg). The console is the author's own terminal; "hk: load failed:
// plugin "hk": Init failed" alone sent them to the request log, and a
// reload on save has no request.
func TestDevLineSaysWhy(t *testing.T) {
	initErr := errors.New("init says no")
	tests := []struct {
		name string
		ev   loader.Event
		want string
	}{
		{"Init error", loader.Event{Kind: loader.EventLoadFailed, Plugin: "hk",
			Err: plugerr.FromPlugin(loader.ErrInit, "hk", initErr.Error(), initErr, "plugin %q: Init failed", "hk")},
			`hk: load failed: plugin "hk": Init failed: init says no`},
		{"init panic", loader.Event{Kind: loader.EventLoadFailed, Plugin: "ip",
			Err: plugerr.FromPlugin(loader.ErrOpen, "ip", "boom", nil, "plugin %q cannot be loaded: an init function panicked", "ip")},
			`ip: load failed: plugin "ip" cannot be loaded: an init function panicked: boom`},
		{"no detail", loader.Event{Kind: loader.EventLoadFailed, Plugin: "r",
			Err: &loader.Error{Kind: loader.ErrOpen, Msg: `plugin "r": its artifact is unreadable`}},
			`r: load failed: plugin "r": its artifact is unreadable`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := devLine(tt.ev, 0, false); got != tt.want {
				t.Errorf("devLine = %q, want %q", got, tt.want)
			}
		})
	}
	// One line: a detail of several lines is cut at the first.
	multi := plugerr.FromPlugin(loader.ErrInit, "m", "first\nsecond", nil, "plugin %q: Init failed", "m")
	if got := devLine(loader.Event{Kind: loader.EventLoadFailed, Plugin: "m", Err: multi}, 0, false); strings.Contains(got, "\n") || !strings.HasSuffix(got, "first (and 1 more line)") {
		t.Errorf("devLine = %q, want one line ending %q", got, "first (and 1 more line)")
	}
}
