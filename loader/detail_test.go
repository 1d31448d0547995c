package loader_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// TestPluginTextIsDetail: what a plugin writes (an Init error, a panic
// value, a failing Health hook's error) stays out of client-safe
// messages and listings' safe fields, and is kept apart in Detail for
// operators. The kinds are unchanged.
func TestPluginTextIsDetail(t *testing.T) {
	dir := plugintest.PluginPath(t, "hooks", "panics")
	l, _ := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
		o.Settings = func(name string) (map[string]any, map[string]string) {
			return map[string]any{"fail_init": true}, nil
		}
	})
	ctx := context.Background()
	_, err := l.Handler(ctx, "hooks", "State", "GET")
	e, ok := errors.AsType[*loader.Error](err)
	if !errors.Is(err, loader.ErrInit) || !ok || e.Msg != `plugin "hooks": Init failed` || e.Detail != "database unreachable" {
		t.Errorf("failing Init: %#v; want ErrInit, Msg without the plugin's text, Detail with it", err)
	}
	if !strings.Contains(err.Error(), "database unreachable") {
		t.Errorf("the log line %q lacks the plugin's text", err)
	}
	if i := info(t, l, "hooks"); i.LastError != `plugin "hooks": Init failed` || i.LastErrorDetail != "database unreachable" {
		t.Errorf("listing: last_error %q, detail %q", i.LastError, i.LastErrorDetail)
	}

	h, err := l.Handler(ctx, "panics", "Boom", "GET")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = h.Call(ctx, nil, nil)
	if e, ok := errors.AsType[*loader.Error](err); !errors.Is(err, loader.ErrPanic) || !ok ||
		strings.Contains(e.Msg, "secret") || e.Detail != "secret-internal-detail" {
		t.Errorf("panic: %#v; want ErrPanic with the value in Detail only", err)
	}
}

// TestHealthResult: a failing Health hook's error is reported as the
// hook returned it (the plugin's text: the HTTP layer shows it to
// operators only), in Health and in the listing.
func TestHealthResult(t *testing.T) {
	l, _ := newLoaderWith(t, plugintest.PluginPath(t, "hooks"), func(b *build.Options, o *loader.Options) {
		o.Settings = func(string) (map[string]any, map[string]string) { return map[string]any{"healthy": false}, nil }
	})
	if _, err := call(t, l, "hooks", "State"); err != nil {
		t.Fatal(err)
	}
	if got := l.Health(context.Background(), 10e9)["hooks"]; got != "backend down" {
		t.Errorf("Health = %q, want the hook's error", got)
	}
	if i := info(t, l, "hooks"); i.Health != "backend down" {
		t.Errorf("listing: health %q, want the hook's error", i.Health)
	}
}
