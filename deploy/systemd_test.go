package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unit is a systemd unit file: section -> key -> values, in order.
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, section := unit{}, ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestSystemdUnit checks the unit's hardening, and that everything the
// server writes lies in the directories systemd makes writable for it
// under ProtectSystem=strict.
func TestSystemdUnit(t *testing.T) {
	u := readUnit(t, filepath.Join("systemd", "plugind.service"))
	svc := u["Service"]
	one := func(k string) string {
		if v := svc[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	for k, want := range map[string]string{
		"DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "KillSignal": "SIGTERM",
	} {
		if got, ok := svc[k]; !ok || one(k) != want {
			t.Errorf("%s = %q (set: %v), want %q", k, got, ok, want)
		}
	}
	if strings.Contains(one("MemoryDenyWriteExecute"), "yes") {
		t.Error("MemoryDenyWriteExecute=yes: plugin.Open maps plugin code executable")
	}
	env := map[string]string{}
	for _, e := range svc["Environment"] {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	writable := []string{"/tmp"} // PrivateTmp
	for _, d := range svc["StateDirectory"] {
		writable = append(writable, "/var/lib/"+d)
	}
	for _, d := range svc["CacheDirectory"] {
		writable = append(writable, "/var/cache/"+d)
	}
	for _, d := range svc["ReadWritePaths"] {
		writable = append(writable, strings.Fields(d)...)
	}
	for _, k := range []string{"PREST_PLUGINS_CACHEDIR", "PREST_TASKS_DIR", "GOCACHE", "HOME"} {
		dir := env[k]
		ok := dir != ""
		if ok {
			ok = false
			for _, w := range writable {
				if dir == w || strings.HasPrefix(dir, w+"/") {
					ok = true
				}
			}
		}
		if !ok {
			t.Errorf("%s=%q is not in a writable directory %v", k, dir, writable)
		}
	}
	// The default lifecycle: no delay, 20 s for requests in flight.
	stop, err := time.ParseDuration(one("TimeoutStopSec"))
	if err != nil || stop <= 20*time.Second {
		t.Errorf("TimeoutStopSec %q must exceed lifecycle.serverShutdownTimeout (20 s)", one("TimeoutStopSec"))
	}
}
