package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/plugind/plugind/config"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	toml := filepath.Join(dir, "prest.toml")
	if err := os.WriteFile(toml, []byte(`
pluginpath = "/srv/plugins"
debug = true

[http]
port = 8080

[pg]
host = "db"

[lifecycle]
serverShutdownTimeout = "3s"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("pluginpath = [unclosed"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		check   func(t *testing.T, c config.Config)
		wantErr string
	}{
		{
			name: "prestd defaults",
			check: func(t *testing.T, c config.Config) {
				if c.PluginPath != "./lib" || c.HTTP.Host != "0.0.0.0" || c.HTTP.Port != 3000 || c.Debug {
					t.Errorf("defaults = %+v", c)
				}
				if c.SrcDir() != "lib/src" || c.Plugins.CacheDir != "lib/.plugind" || c.Addr() != "0.0.0.0:3000" {
					t.Errorf("derived = %s %s %s", c.SrcDir(), c.Plugins.CacheDir, c.Addr())
				}
				if c.Lifecycle.ServerShutdownTimeout != 20*time.Second || c.Plugins.BuildTimeout != 5*time.Minute {
					t.Errorf("durations = %+v", c)
				}
			},
		},
		{
			name: "environment",
			env:  map[string]string{"PREST_PLUGINPATH": "/p", "PREST_HTTP_HOST": "127.0.0.1", "PREST_HTTP_PORT": "4000", "PREST_DEBUG": "true", "PORT": "5000"},
			check: func(t *testing.T, c config.Config) {
				if c.PluginPath != "/p" || c.HTTP.Host != "127.0.0.1" || c.HTTP.Port != 4000 || !c.Debug {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "PORT when PREST_HTTP_PORT is unset",
			env:  map[string]string{"PORT": "5000"},
			check: func(t *testing.T, c config.Config) {
				if c.HTTP.Port != 5000 {
					t.Errorf("port = %d", c.HTTP.Port)
				}
			},
		},
		{
			name: "file from PREST_CONF, unknown keys reported",
			env:  map[string]string{"PREST_CONF": toml},
			check: func(t *testing.T, c config.Config) {
				if c.PluginPath != "/srv/plugins" || c.HTTP.Port != 8080 || !c.Debug || c.Lifecycle.ServerShutdownTimeout != 3*time.Second {
					t.Errorf("config = %+v", c)
				}
				if c.File != toml || !slices.Equal(c.Unknown, []string{"pg.host"}) {
					t.Errorf("file %q unknown %q", c.File, c.Unknown)
				}
			},
		},
		{
			name: "flags beat environment beats file",
			env:  map[string]string{"PREST_CONF": toml, "PREST_HTTP_PORT": "4000"},
			args: []string{"--port", "4500", "--pluginpath", "/flag"},
			check: func(t *testing.T, c config.Config) {
				if c.HTTP.Port != 4500 || c.PluginPath != "/flag" {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "environment beats file",
			env:  map[string]string{"PREST_CONF": toml, "PREST_HTTP_PORT": "4000"},
			check: func(t *testing.T, c config.Config) {
				if c.HTTP.Port != 4000 {
					t.Errorf("port = %d", c.HTTP.Port)
				}
			},
		},
		{name: "--config of a missing file", args: []string{"--config", filepath.Join(dir, "nope.toml")}, wantErr: "nope.toml"},
		{name: "malformed file", env: map[string]string{"PREST_CONF": bad}, wantErr: "bad.toml"},
		{name: "port not a number", env: map[string]string{"PREST_HTTP_PORT": "http"}, wantErr: "http.port"},
		{name: "port out of range", env: map[string]string{"PREST_HTTP_PORT": "70000"}, wantErr: "http.port"},
		{name: "debug not a bool", env: map[string]string{"PREST_DEBUG": "maybe"}, wantErr: "debug"},
		{name: "empty pluginpath flag", args: []string{"--pluginpath="}, wantErr: "pluginpath"},
		{name: "bad duration", env: map[string]string{"PREST_LIFECYCLE_SERVERSHUTDOWNTIMEOUT": "soon"}, wantErr: "serverShutdownTimeout"},
		{name: "negative build timeout", env: map[string]string{"PREST_PLUGINS_BUILDTIMEOUT": "-1s"}, wantErr: "plugins.buildtimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir()) // no ./prest.toml
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			config.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			c, err := config.Load(fs, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.wantErr)) {
					t.Fatalf("err = %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}
