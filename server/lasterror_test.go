package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/server"
)

// TestListingSaysWhyAPluginFailed: /_PLUGINS' last_error for a plugin
// that failed to load says what went wrong in the words its endpoint's
// JSON error has, and last_error_detail carries what the endpoint's
// detail carries: the plugin's own text, for operators and debug mode
// only. For each kind of load failure, with and without debug mode.
func TestListingSaysWhyAPluginFailed(t *testing.T) {
	tests := []struct {
		name   string
		dir    func(t *testing.T) string // the plugin path
		set    func(c *config.Config)    // nil: defaults
		first  string                    // a path called first, which must answer 200
		call   string                    // the failing plugin's endpoint
		msg    string                    // its error, and the listing's last_error
		detail string                    // in the detail, in debug mode; never in msg
		own    bool                      // in a process of its own (see below)
		loads  bool                      // the plugin loads: only the call fails
	}{
		{
			name: "an init that panics, in the load check",
			dir:  fixtures("initpanic"), call: "/_PLUGIN/initpanic/Hello",
			msg:    `plugin "initpanic" cannot be loaded: an init function panicked`,
			detail: "init exploded on purpose",
		},
		{
			// Opened in the server: Go hangs opening it again in the
			// process, which another test's server would.
			name: "an init that panics, without the load check",
			dir:  fixtures("initpanic"), set: noLoadCheck, call: "/_PLUGIN/initpanic/Hello", own: true,
			msg:    `plugin "initpanic" cannot be loaded: an init function panicked`,
			detail: "init exploded on purpose",
		},
		{
			name: "a global of the wrong type, in the load check",
			dir:  fixtures("badglobal"), call: "/_PLUGIN/badglobal/Hello",
			msg: `plugin "badglobal" cannot be loaded: HTTPVars has type []string; want map[string]string`,
		},
		{
			name: "a global of the wrong type, without the load check",
			dir:  fixtures("badglobal"), set: noLoadCheck, call: "/_PLUGIN/badglobal/Hello",
			msg: `plugin "badglobal": HTTPVars has type []string; want map[string]string`,
		},
		{
			// The load check opens each alone, in a child: it passes.
			name: "plugin.Open refuses a copy of a loaded library",
			dir:  libraryCopies, first: "/_PLUGIN/a/V", call: "/_PLUGIN/b/V",
			msg: `plugin "b" cannot be loaded: plugin.Open: plugin already loaded (another library built from the same source, a copy under another name, is loaded: Go loads a plugin's package once per process)`,
		},
		{
			name: "an isolated plugin whose init panics",
			dir:  fixtures("initpanic"), set: func(c *config.Config) { c.Plugins.Isolation = config.IsolationProcess },
			call:   "/_PLUGIN/initpanic/Hello",
			msg:    `plugin "initpanic": its process did not start`,
			detail: "init exploded on purpose",
		},
		{
			name: "a handler of a signature no ABI takes",
			dir:  fixtures("badsig"), call: "/_PLUGIN/badsig/Args", loads: true,
			msg: `plugin "badsig": GETArgsHandler has type func(int) string; want func() string, func() (string, int) or func(http.ResponseWriter, *http.Request)`,
		},
	}
	for _, tt := range tests {
		for _, debug := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/debug=%v", tt.name, debug), func(t *testing.T) {
				if tt.own && !plugintest.OwnProcess(t) {
					return
				}
				dir := tt.dir(t)
				srv := startWith(t, dir, func(c *config.Config) {
					c.Debug = debug
					if tt.set != nil {
						tt.set(c)
					}
				})
				if tt.first != "" {
					if got := srv.do(t, "GET", tt.first, ""); got.status != 200 {
						t.Fatalf("debug %v: GET %s = %d %s", debug, tt.first, got.status, got.body)
					}
				}
				got := srv.do(t, "GET", tt.call, "")
				var body struct{ Error, Detail string }
				if err := json.Unmarshal([]byte(got.body), &body); err != nil || got.status != 500 || body.Error != tt.msg {
					t.Fatalf("debug %v: GET %s = %d %s\nwant 500 with error %q", debug, tt.call, got.status, got.body, tt.msg)
				}
				name := strings.Split(tt.call, "/")[2]
				info := listed(t, srv, name)
				if tt.loads {
					if info.State != loader.StateReady || info.LastError != "" {
						t.Errorf("debug %v: listed %s %q; want ready without an error: the plugin loads", debug, info.State, info.LastError)
					}
					return
				}
				if info.State != loader.StateFailed || info.LastError != body.Error || info.LastErrorDetail != body.Detail {
					t.Errorf("debug %v: listed %s, last_error %q, last_error_detail %q\nwant failed, %q, %q: the endpoint's", debug, info.State, info.LastError, info.LastErrorDetail, body.Error, body.Detail)
				}
				if tt.detail != "" && strings.Contains(info.LastError, tt.detail) {
					t.Errorf("debug %v: last_error %q has the plugin's text", debug, info.LastError)
				}
				if hasDetail := strings.Contains(info.LastErrorDetail, tt.detail); tt.detail != "" && hasDetail != debug {
					t.Errorf("debug %v: last_error_detail %q; the plugin's text %q is for debug mode (and operators) only", debug, info.LastErrorDetail, tt.detail)
				}
				if strings.Contains(info.LastError, dir) || strings.Contains(info.LastErrorDetail, dir) {
					t.Errorf("debug %v: the listing names a server path: %q, %q", debug, info.LastError, info.LastErrorDetail)
				}
			})
		}
	}
}

// noLoadCheck opens new artifacts in the server without a child first.
func noLoadCheck(c *config.Config) { c.Plugins.LoadCheckTimeout = 0 }

// fixtures makes a plugin path of the named fixtures.
func fixtures(names ...string) func(t *testing.T) string {
	return func(t *testing.T) string { return plugintest.PluginPath(t, names...) }
}

// libraryCopies makes a plugin path holding one prebuilt library twice,
// as a.so and b.so (prestd's built plugins, no sources), built from a
// source no other test has.
func libraryCopies(t *testing.T) string {
	t.Helper()
	build := plugintest.PluginPath(t)
	plugintest.WriteFile(t, filepath.Join(build, "src"), "v.go", plugintest.Unique(t, "package main\n\nfunc GETVHandler() string { return \"v\" }\n"))
	p, _, err := server.NewPipeline(t.Context(), config.Config{PluginPath: build, Plugins: config.Plugins{
		CacheDir: plugintest.CacheDir(), Go: "go", BuildTimeout: 5 * time.Minute,
	}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	src, err := p.Find("v")
	if err != nil {
		t.Fatal(err)
	}
	k, err := p.Key(src)
	if err != nil {
		t.Fatal(err)
	}
	path, _, err := p.Artifact(context.Background(), src, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := plugintest.PluginPath(t)
	for _, name := range []string{"a.so", "b.so"} {
		plugintest.WriteFile(t, dir, name, string(lib))
	}
	return dir
}

// listed is plugin name as /_PLUGINS lists it.
func listed(t *testing.T, srv *running, name string) loader.Info {
	t.Helper()
	var list struct{ Plugins []loader.Info }
	got := srv.do(t, "GET", "/_PLUGINS", "")
	if err := json.Unmarshal([]byte(got.body), &list); err != nil {
		t.Fatalf("/_PLUGINS: %d %s", got.status, got.body)
	}
	for _, i := range list.Plugins {
		if i.Name == name {
			return i
		}
	}
	t.Fatalf("/_PLUGINS does not list %s: %s", name, got.body)
	return loader.Info{}
}
