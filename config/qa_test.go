package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugind/plugind/config"
)

// TestInvalidValueNamesItsKey: an invalid value stops start-up with a
// message naming the key the user set, not another key derived from it,
// and does not name a key the user never touched.
func TestInvalidValueNamesItsKey(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		want    string // the key the message must name
		notWant string // a key it must not name ("" : none)
	}{
		{name: "http.timeout zero", env: []string{"PREST_HTTP_TIMEOUT=0"}, want: "http.timeout", notWant: "plugins.buildwait"},
		{name: "http.timeout negative", env: []string{"PREST_HTTP_TIMEOUT=-5"}, want: "http.timeout", notWant: "plugins.buildwait"},
		{name: "http.writetimeout negative", env: []string{"PREST_HTTP_WRITETIMEOUT=-1s"}, want: "writetimeout", notWant: "plugins.buildwait"},
		{name: "cors.alloworigin not an origin", env: []string{"PREST_CORS_ALLOWORIGIN=notanorigin"}, want: "cors.alloworigin"},
		{name: "cors.alloworigin with a path", env: []string{"PREST_CORS_ALLOWORIGIN=https://app.example/"}, want: "cors.alloworigin"},
		{name: "cors.alloworigin without a scheme", env: []string{"PREST_CORS_ALLOWORIGIN=app.example"}, want: "cors.alloworigin"},
		{name: "auth.apikeys empty", env: []string{"PREST_CONF=" + writeTOML(t, "[auth]\napikeys = [\"\"]\n")}, want: "auth.apikeys[0]"},
		{name: "auth.apikeys blank second", env: []string{"PREST_AUTH_APIKEYS=good-key, "}, want: "auth.apikeys[1]"},
		{name: "plugin apikeys empty", env: []string{"PREST_CONF=" + writeTOML(t, "[plugin.hello]\napikeys = [\"k\", \"\"]\n")}, want: "plugin.hello.apikeys[1]"},
		{name: "cors.alloworigin second of two", env: []string{"PREST_CORS_ALLOWORIGIN=https://a.example,https://b.example/x"}, want: "cors.alloworigin[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir()) // no ./prest.toml
			_, err := config.Load(nil, tt.env)
			if err == nil {
				t.Fatalf("Load(%v) = nil error, want one naming %s", tt.env, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%v) = %q, want it to name %s", tt.env, err, tt.want)
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("Load(%v) = %q, names %s, which was not set", tt.env, err, tt.notWant)
			}
		})
	}
}

// TestValidOriginsLoad: what rs/cors matches, an origin with or without
// a port, one wildcard, or "*", loads.
func TestValidOriginsLoad(t *testing.T) {
	for _, origins := range []string{
		"*",
		"https://app.example",
		"http://localhost:5173",
		"https://*.example.com",
		"https://a.example,http://127.0.0.1:8080",
	} {
		t.Run(origins, func(t *testing.T) {
			t.Chdir(t.TempDir())
			c, err := config.Load(nil, []string{"PREST_CORS_ALLOWORIGIN=" + origins})
			if err != nil {
				t.Fatalf("Load = %v", err)
			}
			if got := strings.Join(c.CORS.AllowOrigin, ","); got != origins {
				t.Errorf("cors.alloworigin = %q, want %q", got, origins)
			}
		})
	}
}

// TestBareNumberDurations: TOML gives a duration key written as a bare
// number (buildtimeout = 300, as http.timeout is written) as an integer,
// which decoded to that many nanoseconds: every build "exceeded 300ns",
// a readheadertimeout of 10 cut every connection. A bare number other
// than 0 stops start-up naming the key and asking for a unit; 0 and
// durations with units load as before.
func TestBareNumberDurations(t *testing.T) {
	tests := []struct {
		name, toml string
		want       string // the key the error names; "" : loads
	}{
		{name: "plugins.buildtimeout", toml: "[plugins]\nbuildtimeout = 300\n", want: "plugins.buildtimeout"},
		{name: "http.readheadertimeout", toml: "[http]\nreadheadertimeout = 10\n", want: "http.readheadertimeout"},
		{name: "float", toml: "[tasks]\ntimeout = 1.5\n", want: "tasks.timeout"},
		{name: "camel-case key", toml: "[lifecycle]\nserverShutdownTimeout = 20\n", want: "lifecycle.serverShutdownTimeout"},
		{name: "a plugin's timeout", toml: "[plugin.hello]\ntimeout = 5\n", want: "plugin.hello.timeout"},
		{name: "zero", toml: "[plugins]\nloadchecktimeout = 0\n"},
		{name: "with a unit", toml: "[plugins]\nbuildtimeout = \"300s\"\n[plugin.hello]\ntimeout = \"5s\"\n"},
		{name: "http.timeout is seconds", toml: "[http]\ntimeout = 30\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			if err := os.WriteFile(filepath.Join(dir, "prest.toml"), []byte(tt.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := config.Load(nil, nil)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Load = %v, want it to load", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "unit")):
				t.Fatalf("Load = %v, want an error naming %s and asking for a unit", err, tt.want)
			}
		})
	}
}

// writeTOML writes content to a prest.toml of its own and returns its path.
func writeTOML(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "prest.toml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
