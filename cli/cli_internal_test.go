package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/loader"
)

func TestNewLogger(t *testing.T) {
	tests := []struct {
		format string
		json   bool
	}{
		{config.LogJSON, true},
		{config.LogAuto, true}, // a buffer is no terminal
		{config.LogConsole, false},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		log, out := newLogger(&buf, tt.format, zerolog.InfoLevel)
		log.Info().Dur("duration", 1500*time.Millisecond).Msg("hello")
		log.Debug().Msg("not at info level")
		out.Close()
		line := strings.TrimSpace(buf.String())
		if got := json.Valid([]byte(line)); got != tt.json {
			t.Errorf("log.format %q: JSON %v, want %v: %q", tt.format, got, tt.json, line)
		}
		if !tt.json && !strings.HasSuffix(line, "INF hello duration=1.5s") {
			t.Errorf("log.format %q: %q", tt.format, line)
		}
		if strings.Contains(line, "not at info level") || strings.Count(line, "\n") != 0 {
			t.Errorf("log.format %q: level not applied: %q", tt.format, line)
		}
	}
}

func TestDevLine(t *testing.T) {
	buildErr := &loader.Error{Kind: loader.ErrBuild, Msg: `plugin "report" failed to build`,
		Output: "report.go:12:3: undefined: x\nreport.go:14:2: undefined: y\n\thave (int)\nreport.go:20:1: missing return"}
	tests := []struct {
		name  string
		ev    loader.Event
		took  time.Duration
		built bool
		want  string
	}{
		{"first build", loader.Event{Kind: loader.EventLoaded, Plugin: "report"}, 812 * time.Millisecond, true, "report built in 812ms"},
		{"from the cache", loader.Event{Kind: loader.EventLoaded, Plugin: "report"}, 0, false, "report loaded from the cache"},
		{"rebuild", loader.Event{Kind: loader.EventReloaded, Plugin: "report"}, 1240 * time.Millisecond, true, "report rebuilt in 1.2s"},
		{"revert", loader.Event{Kind: loader.EventReloaded, Plugin: "report"}, 0, false, "report reloaded from the cache"},
		{"build failure", loader.Event{Kind: loader.EventBuildFailed, Plugin: "report", Err: buildErr}, 0, false,
			"report: build failed: report.go:12:3: undefined: x (and 2 more)"},
		{"one diagnostic", loader.Event{Kind: loader.EventBuildFailed, Plugin: "r", Err: &loader.Error{Kind: loader.ErrBuild, Msg: "m", Output: "./r.go:1:1: expected 'package'"}}, 0, false,
			"r: build failed: r.go:1:1: expected 'package'"},
		{"no go command", loader.Event{Kind: loader.EventBuildFailed, Plugin: "r", Err: &loader.Error{Kind: loader.ErrBuild, Msg: `plugin "r" cannot be built: the go command "go" was not found`, Err: errors.New("exec: not found")}}, 0, false,
			`r: build failed: plugin "r" cannot be built: the go command "go" was not found`},
		{"load failure", loader.Event{Kind: loader.EventLoadFailed, Plugin: "r", Err: &loader.Error{Kind: loader.ErrInit, Msg: `plugin "r" failed to initialise: no db`}}, 0, false,
			`r: load failed: plugin "r" failed to initialise: no db`},
		{"removed", loader.Event{Kind: loader.EventRemoved, Plugin: "r"}, 0, false, "r removed"},
		{"built: told at load", loader.Event{Kind: loader.EventBuilt, Plugin: "r", Duration: time.Second}, 0, false, ""},
	}
	for _, tt := range tests {
		if got := devLine(tt.ev, tt.took, tt.built); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestDevLog follows a plugin through builds: a build's duration goes
// with the load that follows it, once.
func TestDevLog(t *testing.T) {
	var buf bytes.Buffer
	d := newDevLog(zerolog.New(&buf))
	for _, ev := range []loader.Event{
		{Kind: loader.EventBuilt, Plugin: "a", Duration: 2 * time.Second},
		{Kind: loader.EventLoaded, Plugin: "a"},
		{Kind: loader.EventReloaded, Plugin: "a"}, // a revert: no build
	} {
		d.event(ev)
	}
	want := `{"level":"info","plugin":"a","event":"loaded","message":"a built in 2.0s"}` + "\n" +
		`{"level":"info","plugin":"a","event":"reloaded","message":"a reloaded from the cache"}` + "\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestBanner(t *testing.T) {
	cfg := config.Config{PluginPath: "lib", HTTP: config.HTTP{Host: "0.0.0.0", Port: 3000}, Admin: config.Admin{Enabled: true, PProf: true}}
	addr := &net.TCPAddr{IP: net.IPv4zero, Port: 3000}
	var buf bytes.Buffer
	printBanner(&buf, cfg, addr, []loader.Info{
		{Name: "hello", Kind: loader.KindFile, Handlers: []loader.HandlerInfo{{Method: "GET", Func: "Hello", ABI: loader.ABILegacy}}},
		{Name: "echo", Kind: loader.KindFile, Handlers: []loader.HandlerInfo{{Method: "POST", Func: "Echo", ABI: loader.ABIStandard},
			{Method: "GET", Func: "Odd", Symbol: "GETOddHandler", ABI: loader.ABIUnsupported, Signature: "func(int) string"}}},
		{Name: "empty", Kind: loader.KindFolder},
	})
	for _, want := range []string{
		"plugind dev: serving lib/src on http://localhost:3000",
		"  admin    http://localhost:3000/_ADMIN/\n",
		"  profile  go tool pprof 'http://localhost:3000/_ADMIN/pprof/profile?seconds=10'\n",
		"    curl 'http://localhost:3000/_PLUGIN/hello/Hello'\n",
		"    curl -X POST -d '{}' 'http://localhost:3000/_PLUGIN/echo/Echo'\n",
		"    curl 'http://localhost:3000/_PLUGIN/echo/Odd'   # GETOddHandler: unsupported signature func(int) string\n",
		"  empty (folder)\n    no handlers found",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, buf.String())
		}
	}
	cfg.HTTP.Host, cfg.HTTPS.Mode = "::1", true
	if got := baseURL(cfg, &net.TCPAddr{IP: net.IPv6loopback, Port: 8443}); got != "https://[::1]:8443" {
		t.Errorf("baseURL = %q", got)
	}
}
