package config_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/plugind/plugind/config"
)

// TestIsolation reads plugins.isolation and a plugin's own isolation and
// processes, and refuses values that are not modes.
func TestIsolation(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	writeFile(t, good, `
[plugins]
isolation = "process"

[plugin.legacy]
processes = 4

[plugin.fast]
isolation = "inprocess"
`)
	badMode := filepath.Join(dir, "badmode.toml")
	writeFile(t, badMode, "[plugin.x]\nisolation = \"container\"\n")
	badN := filepath.Join(dir, "badn.toml")
	writeFile(t, badN, "[plugin.x]\nprocesses = -1\n")
	tests := []struct {
		name    string
		env     []string
		check   func(t *testing.T, c config.Config)
		wantErr string
	}{
		{name: "default", check: func(t *testing.T, c config.Config) {
			if got := c.Isolation("any"); got != config.IsolationInProcess {
				t.Errorf("Isolation = %q; want inprocess", got)
			}
		}},
		{name: "file", env: []string{"PREST_CONF=" + good}, check: func(t *testing.T, c config.Config) {
			if c.Isolation("legacy") != "process" || c.Isolation("fast") != "inprocess" || c.Plugin("legacy").Processes != 4 {
				t.Errorf("isolation %q %q, processes %d", c.Isolation("legacy"), c.Isolation("fast"), c.Plugin("legacy").Processes)
			}
		}},
		{name: "environment", env: []string{"PREST_PLUGINS_ISOLATION=auto"}, check: func(t *testing.T, c config.Config) {
			if c.Isolation("x") != config.IsolationAuto {
				t.Errorf("Isolation = %q; want auto", c.Isolation("x"))
			}
		}},
		{name: "bad default", env: []string{"PREST_PLUGINS_ISOLATION=docker"}, wantErr: "plugins.isolation"},
		{name: "bad plugin mode", env: []string{"PREST_CONF=" + badMode}, wantErr: "plugin.x.isolation"},
		{name: "negative processes", env: []string{"PREST_CONF=" + badN}, wantErr: "plugin.x.processes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			config.AddFlags(fs)
			c, err := config.Load(fs, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want one naming %s", err, tt.wantErr)
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

// TestCopies reads [plugin.<name>] copies: absent is 0 (one copy), 0 and
// 1 to MaxCopies are taken, anything else is refused naming the key, the
// bound and that 0 is allowed.
func TestCopies(t *testing.T) {
	tests := []struct {
		name    string
		toml    string
		want    int
		wantErr string
	}{
		{name: "absent", toml: "[plugin.hello]\ntimeout = \"1s\"\n", want: 0},
		{name: "one", toml: "[plugin.hello]\ncopies = 1\n", want: 1},
		{name: "four", toml: "[plugin.hello]\ncopies = 4\n", want: 4},
		{name: "the bound", toml: "[plugin.hello]\ncopies = 64\n", want: config.MaxCopies},
		{name: "zero, as unset", toml: "[plugin.hello]\ncopies = 0\n", want: 0},
		{name: "negative", toml: "[plugin.hello]\ncopies = -1\n", wantErr: "plugin.hello.copies must be between 1 and 64, or 0 for one copy (as when unset), got -1"},
		{name: "over the bound", toml: "[plugin.hello]\ncopies = 65\n", wantErr: "plugin.hello.copies must be between 1 and 64, or 0 for one copy (as when unset), got 65"},
		{name: "not a number", toml: "[plugin.hello]\ncopies = \"many\"\n", wantErr: "copies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			file := filepath.Join(t.TempDir(), "prest.toml")
			writeFile(t, file, tt.toml)
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			config.AddFlags(fs)
			c, err := config.Load(fs, []string{"PREST_CONF=" + file})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Plugin("hello").Copies; got != tt.want {
				t.Errorf("copies = %d; want %d", got, tt.want)
			}
		})
	}
}
