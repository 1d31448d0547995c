package config_test

import (
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
