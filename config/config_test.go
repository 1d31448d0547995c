package config_test

import (
	"fmt"
	"maps"
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
pluginmiddlewarelist = [{file = "auth", func = "Check"}, {file = "log", func = "Trace"}]

[http]
port = 8080

[pg]
host = "db"

[lifecycle]
serverShutdownTimeout = "3s"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	prestd := filepath.Join(dir, "prestd.toml")
	// A prestd prest.toml, as prestd's documentation writes it.
	writeFile(t, prestd, `
migrations = "./migrations"
debug = true
pluginpath = "/srv/prestd/lib"

[http]
host = "127.0.0.1"
port = 6000
timeout = 30

[jwt]
default = true
key = "secret"
algo = "HS256"
whitelist = ["^/auth$", "^/_PLUGIN/public/"]

[auth]
enabled = true
type = "body"
table = "prest_users"

[pg]
host = "127.0.0.1"
user = "postgres"
pass = "postgres"
database = "prest"

[cors]
alloworigin = ["https://app.example"]
allowheaders = ["Content-Type", "Authorization"]

[https]
mode = false
cert = "/etc/certs/cert.crt"
key = "/etc/certs/cert.key"

[cache]
enabled = false

[[access.tables]]
name = "test"
permissions = ["read"]
`)
	// prestd 2.x's own defaults: a key alone does not turn JWT on.
	prestdKeyOnly := filepath.Join(dir, "prestd-key-only.toml")
	writeFile(t, prestdKeyOnly, "[jwt]\nkey = \"secret\"\n")
	devFile := filepath.Join(dir, "dev.toml")
	writeFile(t, devFile, "debug = false\n[plugins]\nreload = \"off\"\n[admin]\nenabled = false\npprof = false\n")
	plugins := filepath.Join(dir, "plugins.toml")
	secrets := filepath.Join(dir, "secrets.toml")
	writeFile(t, plugins, `
pluginmiddlewarelist = [{file = "auth", func = "Check"}]

[plugins]
secretsfile = "`+secrets+`"

[plugin.hello]
timeout = "2s"
maxconcurrency = 8
methods = ["GET", "POST"]
maxbodybytes = 1024

[plugin.hello.settings]
greeting = "hi"
Retries = 3
tags = ["a", "b"]
[plugin.hello.settings.nested]
on = true
`)
	writeFile(t, secrets, "[hello]\ntoken = \"from-file\"\nother = \"file-only\"\n")
	for name, content := range map[string]string{
		"badkey.toml":    "[plugin.hello]\ntimout = \"1s\"\n",
		"badname.toml":   "[plugin.\"a.b\"]\ntimeout = \"1s\"\n",
		"badmethod.toml": "[plugin.hello]\nmethods = [\"get\"]\n",
		"badmw.toml":     "pluginmiddlewarelist = [{file = \"../x\", func = \"Y\"}]\n",
		"negative.toml":  "[plugin.hello]\nmaxconcurrency = -1\n",
		"proxies.toml":   "[http]\ntrustedproxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"::ffff:198.51.100.0/120\"]\n",
		"badproxy.toml":  "[http]\ntrustedproxies = [\"10.0.0.0/8\", \"lb.example\"]\n",
	} {
		writeFile(t, filepath.Join(dir, name), content)
	}
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("pluginpath = [unclosed"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		opts    []config.LoadOption
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
				if c.Plugins.BuildWait != 50*time.Second || c.HTTP.WriteTimeout != time.Minute {
					t.Errorf("default buildwait %s, write timeout %s; want 50s under 1m", c.Plugins.BuildWait, c.HTTP.WriteTimeout)
				}
				if c.JWT.Default || c.Admin.Enabled || c.Admin.PProf || c.Log.Format != config.LogAuto || c.Plugins.Reload != config.ReloadOff || len(c.Warnings) != 0 {
					t.Errorf("jwt.default %v, admin.enabled %v, log.format %q, reload %q, warnings %q", c.JWT.Default, c.Admin.Enabled, c.Log.Format, c.Plugins.Reload, c.Warnings)
				}
			},
		},
		{
			name: "a prestd jwt.key without jwt.default leaves JWT off",
			env:  map[string]string{"PREST_CONF": prestdKeyOnly},
			check: func(t *testing.T, c config.Config) {
				if c.JWT.Key != "secret" || c.JWT.Default || len(c.Warnings) != 0 {
					t.Errorf("jwt = %+v, warnings %q", c.JWT, c.Warnings)
				}
			},
		},
		{
			name: "debug turns JWT checking off, with a warning",
			env:  map[string]string{"PREST_CONF": prestdKeyOnly, "PREST_JWT_DEFAULT": "true", "PREST_DEBUG": "true"},
			check: func(t *testing.T, c config.Config) {
				if c.JWT.Default || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "JWT checking is off") {
					t.Errorf("jwt = %+v, warnings %q", c.JWT, c.Warnings)
				}
			},
		},
		{
			name: "jwt.default without debug turns JWT on",
			env:  map[string]string{"PREST_CONF": prestdKeyOnly, "PREST_JWT_DEFAULT": "true"},
			check: func(t *testing.T, c config.Config) {
				if !c.JWT.Default || len(c.Warnings) != 0 {
					t.Errorf("jwt = %+v, warnings %q", c.JWT, c.Warnings)
				}
			},
		},
		{
			name: "plugind dev: debug, reload, admin, profiles and console logs, whatever the file says",
			env:  map[string]string{"PREST_CONF": devFile},
			opts: []config.LoadOption{config.ForDev()},
			check: func(t *testing.T, c config.Config) {
				if !c.Debug || c.Plugins.Reload != config.ReloadOnChange || !c.Admin.Enabled || !c.Admin.PProf || c.Log.Format != config.LogConsole {
					t.Errorf("dev config: debug %v reload %q admin %v pprof %v log %q", c.Debug, c.Plugins.Reload, c.Admin.Enabled, c.Admin.PProf, c.Log.Format)
				}
			},
		},
		{
			name: "plugind dev keeps JSON logs when asked",
			env:  map[string]string{"PREST_LOG_FORMAT": "json"},
			opts: []config.LoadOption{config.ForDev()},
			check: func(t *testing.T, c config.Config) {
				if c.Log.Format != config.LogJSON {
					t.Errorf("log.format = %q", c.Log.Format)
				}
			},
		},
		{
			name: "buildwait under a longer write timeout",
			env:  map[string]string{"PREST_PLUGINS_BUILDWAIT": "90s", "PREST_HTTP_TIMEOUT": "120"},
			check: func(t *testing.T, c config.Config) {
				if c.Plugins.BuildWait != 90*time.Second || c.HTTP.WriteTimeout != 120*time.Second {
					t.Errorf("buildwait %s writetimeout %s", c.Plugins.BuildWait, c.HTTP.WriteTimeout)
				}
			},
		},
		{name: "buildwait at the write timeout", env: map[string]string{"PREST_PLUGINS_BUILDWAIT": "60s"}, wantErr: "plugins.buildwait (1m0s) must be less than http.writetimeout (1m0s"},
		{name: "buildwait over an explicit write timeout", env: map[string]string{"PREST_HTTP_WRITETIMEOUT": "30s", "PREST_PLUGINS_BUILDWAIT": "40s"}, wantErr: "plugins.buildwait (40s) must be less than http.writetimeout (30s"},
		{name: "log format", env: map[string]string{"PREST_LOG_FORMAT": "pretty"}, wantErr: "log.format"},
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
		{
			name: "plugin tables, secrets and middleware",
			env:  map[string]string{"PREST_CONF": plugins, "PREST_PLUGIN_HELLO_TOKEN": "from-env", "PREST_PLUGIN_OTHER_TOKEN": "not-hello's"},
			check: func(t *testing.T, c config.Config) {
				p := c.Plugin("hello")
				if p.Timeout != 2*time.Second || p.MaxConcurrency != 8 || !slices.Equal(p.Methods, []string{"GET", "POST"}) || p.MaxBodyBytes != 1024 {
					t.Errorf("limits = %+v", p)
				}
				if p.Settings["greeting"] != "hi" || p.Settings["retries"] != int64(3) || len(p.Settings["tags"].([]any)) != 2 {
					t.Errorf("settings = %#v", p.Settings)
				}
				if nested, _ := p.Settings["nested"].(map[string]any); nested["on"] != true {
					t.Errorf("nested settings = %#v", p.Settings["nested"])
				}
				want := map[string]string{"token": "from-env", "other": "file-only"}
				if got := c.Secrets("hello"); !maps.Equal(got, want) {
					t.Errorf("secrets = %v, want %v", got, want)
				}
				if len(c.Secrets("nothing")) != 0 {
					t.Error("a plugin without secrets has some")
				}
				if len(c.Middleware) != 1 || c.Middleware[0] != (config.MiddlewareRef{File: "auth", Func: "Check"}) {
					t.Errorf("middleware = %+v", c.Middleware)
				}
				if len(c.Unknown) != 0 {
					t.Errorf("plugin keys reported unknown: %v", c.Unknown)
				}
			},
		},
		{
			name: "middleware list in the main file",
			env:  map[string]string{"PREST_CONF": toml},
			check: func(t *testing.T, c config.Config) {
				if len(c.Middleware) != 2 || c.Middleware[1].Func != "Trace" {
					t.Errorf("middleware = %+v", c.Middleware)
				}
			},
		},
		{
			name: "reload follows debug",
			env:  map[string]string{"PREST_DEBUG": "true"},
			check: func(t *testing.T, c config.Config) {
				if c.Plugins.Reload != config.ReloadOnChange {
					t.Errorf("reload = %q with debug", c.Plugins.Reload)
				}
			},
		},
		{name: "reload value", env: map[string]string{"PREST_PLUGINS_RELOAD": "sometimes"}, wantErr: "plugins.reload"},
		{name: "build value", env: map[string]string{"PREST_PLUGINS_BUILD": "never", "PREST_TASKS_DIR": "/var/lib/plugind"}, wantErr: "plugins.build"},
		{name: "prebuilt mode needs a tasks dir", env: map[string]string{"PREST_PLUGINS_BUILD": "off"}, wantErr: "tasks.dir"},
		{
			name: "prebuilt mode with tasks on PostgreSQL needs no tasks dir",
			env:  map[string]string{"PREST_PLUGINS_BUILD": "off", "PREST_TASKS_STORE": "postgres", "PREST_TASKS_DSN": "postgres://db/plugind"},
			check: func(t *testing.T, c config.Config) {
				if c.Plugins.Build != config.BuildOff || c.Tasks.Store != "postgres" {
					t.Errorf("build %q store %q", c.Plugins.Build, c.Tasks.Store)
				}
			},
		},
		{
			name: "prebuilt mode",
			env:  map[string]string{"PREST_PLUGINS_BUILD": "off", "PREST_TASKS_DIR": "/var/lib/plugind/tasks"},
			check: func(t *testing.T, c config.Config) {
				if c.Plugins.Build != config.BuildOff || c.Tasks.Dir != "/var/lib/plugind/tasks" {
					t.Errorf("build %q tasks.dir %q", c.Plugins.Build, c.Tasks.Dir)
				}
			},
		},
		{
			name: "build defaults to auto",
			check: func(t *testing.T, c config.Config) {
				if c.Plugins.Build != config.BuildAuto {
					t.Errorf("build = %q", c.Plugins.Build)
				}
			},
		},
		{name: "misspelt plugin key", env: map[string]string{"PREST_CONF": filepath.Join(dir, "badkey.toml")}, wantErr: "plugin.hello.timout"},
		{name: "plugin table name", env: map[string]string{"PREST_CONF": filepath.Join(dir, "badname.toml")}, wantErr: "plugin"},
		{name: "lower-case method", env: map[string]string{"PREST_CONF": filepath.Join(dir, "badmethod.toml")}, wantErr: "plugin.hello.methods"},
		{name: "middleware name", env: map[string]string{"PREST_CONF": filepath.Join(dir, "badmw.toml")}, wantErr: "pluginmiddlewarelist[0]"},
		{name: "negative concurrency", env: map[string]string{"PREST_CONF": filepath.Join(dir, "negative.toml")}, wantErr: "plugin.hello.maxconcurrency"},
		{name: "missing secrets file", env: map[string]string{"PREST_PLUGINS_SECRETSFILE": filepath.Join(dir, "nope.toml")}, wantErr: "plugins.secretsfile"},
		{
			name: "a prestd prest.toml works unchanged",
			env:  map[string]string{"PREST_CONF": prestd},
			check: func(t *testing.T, c config.Config) {
				if c.PluginPath != "/srv/prestd/lib" || c.HTTP.Port != 6000 || c.HTTP.ReadTimeout != 30*time.Second || !c.Debug {
					t.Errorf("shared keys = %+v", c)
				}
				if c.JWT.Key != "secret" || len(c.JWT.Whitelist) != 2 || c.CORS.AllowOrigin[0] != "https://app.example" || len(c.CORS.AllowHeaders) != 2 {
					t.Errorf("jwt/cors = %+v %+v", c.JWT, c.CORS)
				}
				if c.Plugins.BuildWait != 25*time.Second {
					t.Errorf("buildwait = %s under a 30 s write timeout, want 25s", c.Plugins.BuildWait)
				}
				if c.JWT.Default || len(c.Warnings) != 1 { // its debug = true turns JWT off, as in prestd
					t.Errorf("jwt.default = %v with debug on, warnings %q", c.JWT.Default, c.Warnings)
				}
				for _, k := range []string{"auth.enabled", "auth.table", "auth.type", "cache.enabled", "migrations", "pg.database", "pg.host"} {
					if !slices.Contains(c.Unknown, k) {
						t.Errorf("prestd-only key %s not reported as ignored: %v", k, c.Unknown)
					}
				}
			},
		},
		{name: "--config of a missing file", args: []string{"--config", filepath.Join(dir, "nope.toml")}, wantErr: "nope.toml"},
		{name: "malformed file", env: map[string]string{"PREST_CONF": bad}, wantErr: "bad.toml"},
		{
			name: "trusted proxies",
			env:  map[string]string{"PREST_CONF": filepath.Join(dir, "proxies.toml")},
			check: func(t *testing.T, c config.Config) {
				got := fmt.Sprint(c.HTTP.TrustedProxyPrefixes())
				if got != "[10.0.0.0/8 192.0.2.7/32 198.51.100.0/24]" {
					t.Errorf("trusted proxies = %s", got)
				}
			},
		},
		{name: "trusted proxy not a CIDR", env: map[string]string{"PREST_CONF": filepath.Join(dir, "badproxy.toml")}, wantErr: "http.trustedproxies[1]"},
		{name: "event streams", env: map[string]string{"PREST_BUS_MAXSTREAMS": "0"}, wantErr: "bus.maxstreams"},
		{name: "port not a number", env: map[string]string{"PREST_HTTP_PORT": "http"}, wantErr: "http.port"},
		{name: "port out of range", env: map[string]string{"PREST_HTTP_PORT": "70000"}, wantErr: "http.port"},
		{name: "debug not a bool", env: map[string]string{"PREST_DEBUG": "maybe"}, wantErr: "debug"},
		{name: "empty pluginpath flag", args: []string{"--pluginpath="}, wantErr: "pluginpath"},
		{name: "bad duration", env: map[string]string{"PREST_LIFECYCLE_SERVERSHUTDOWNTIMEOUT": "soon"}, wantErr: "serverShutdownTimeout"},
		{name: "negative build timeout", env: map[string]string{"PREST_PLUGINS_BUILDTIMEOUT": "-1s"}, wantErr: "plugins.buildtimeout"},
		{
			name: "tasks on postgres from the environment",
			env:  map[string]string{"PREST_TASKS_STORE": "postgres", "PREST_TASKS_DSN": "postgres://db/tasks", "PREST_TASKS_MAXFINISHED": "50"},
			check: func(t *testing.T, c config.Config) {
				if c.Tasks.Store != "postgres" || c.Tasks.DSN != "postgres://db/tasks" || c.Tasks.MaxFinished != 50 || c.Tasks.Lease != 15*time.Second {
					t.Errorf("tasks = %+v", c.Tasks)
				}
			},
		},
		{name: "tasks store", env: map[string]string{"PREST_TASKS_STORE": "redis"}, wantErr: "tasks.store"},
		{name: "tasks on postgres without a dsn", env: map[string]string{"PREST_TASKS_STORE": "postgres"}, wantErr: "tasks.dsn"},
		{name: "tasks cap", env: map[string]string{"PREST_TASKS_MAXFINISHED": "0"}, wantErr: "tasks.maxfinished"},
		{name: "tasks lease", env: map[string]string{"PREST_TASKS_LEASE": "10ms"}, wantErr: "tasks.lease"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir()) // no ./prest.toml
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			config.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			var environ []string
			for k, v := range tt.env {
				environ = append(environ, k+"="+v)
			}
			c, err := config.Load(fs, environ, tt.opts...)
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

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSecretEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		plugins []string
		want    map[string]map[string]string // plugin -> its secrets
		wantErr string                       // of CheckSecretEnv
	}{
		{
			name:    "double underscore names the plugin",
			env:     []string{"PREST_PLUGIN_A__B_KEY=for-a", "PREST_PLUGIN_A_B__KEY=for-a_b"},
			plugins: []string{"a", "a_b"},
			want:    map[string]map[string]string{"a": {"b_key": "for-a"}, "a_b": {"key": "for-a_b"}},
		},
		{
			name:    "the older form where it fits one plugin",
			env:     []string{"PREST_PLUGIN_HELLO_API_TOKEN=t", "PREST_PLUGIN_MY_PLUGIN_KEY=k"},
			plugins: []string{"hello", "my-plugin"},
			want:    map[string]map[string]string{"hello": {"api_token": "t"}, "my-plugin": {"key": "k"}},
		},
		{
			name:    "the double-underscore form wins for the same key",
			env:     []string{"PREST_PLUGIN_HELLO_TOKEN=old", "PREST_PLUGIN_HELLO__TOKEN=new"},
			plugins: []string{"hello"},
			want:    map[string]map[string]string{"hello": {"token": "new"}},
		},
		{
			name:    "an older-form variable that fits two plugins",
			env:     []string{"PREST_PLUGIN_A_B_KEY=x"},
			plugins: []string{"a_b", "a"},
			wantErr: `PREST_PLUGIN_A_B_KEY is ambiguous: it is "b_key" of plugin "a" and "key" of plugin "a_b"`,
		},
		{
			name:    "plugins a and a_b without older-form variables",
			env:     []string{"PREST_PLUGIN_A__KEY=x", "PREST_PLUGIN_A_B__KEY=y"},
			plugins: []string{"a", "a_b"},
			want:    map[string]map[string]string{"a": {"key": "x"}, "a_b": {"key": "y"}},
		},
		{
			name:    "two plugins of one NAME",
			env:     []string{"PREST_PLUGIN_MY_PLUGIN__KEY=x"},
			plugins: []string{"my_plugin", "my-plugin"},
			wantErr: `plugins "my-plugin" and "my_plugin" both read PREST_PLUGIN_MY_PLUGIN__KEY`,
		},
		{
			name:    "two plugins of one NAME, no variable for them",
			env:     []string{"PREST_PLUGIN_OTHER__KEY=x"},
			plugins: []string{"my_plugin", "my-plugin", "other"},
			want:    map[string]map[string]string{"my_plugin": {}, "other": {"key": "x"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			c, err := config.Load(nil, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			err = c.CheckSecretEnv(tt.plugins)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CheckSecretEnv = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tt.want {
				if got := c.Secrets(name); !maps.Equal(got, want) {
					t.Errorf("Secrets(%q) = %v, want %v", name, got, want)
				}
			}
		})
	}
}
