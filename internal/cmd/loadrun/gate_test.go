package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "baseline.json")
	var out bytes.Buffer
	if _, err := gate(&out, path, map[string]float64{"a / b": 0.80, "c / d": 2}, true); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		got     map[string]float64
		dropped int
		want    string
	}{
		{"equal", map[string]float64{"a / b": 0.80, "c / d": 2}, 0, "ok: a / b = 0.800"},
		{"within 5%", map[string]float64{"a / b": 0.77, "c / d": 1.91}, 0, "ok: c / d = 1.910"},
		{"higher", map[string]float64{"a / b": 0.95}, 0, "+18.7%"},
		{"dropped", map[string]float64{"a / b": 0.75, "c / d": 2}, 1, "WARNING: a / b = 0.750, 6.2% below the baseline's 0.800"},
		{"new ratio", map[string]float64{"e / f": 1}, 0, "e / f = 1.000: not in the baseline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			dropped, err := gate(&out, path, tt.got, false)
			if err != nil {
				t.Fatal(err)
			}
			if dropped != tt.dropped || !strings.Contains(out.String(), tt.want) {
				t.Errorf("dropped %d, output:\n%s\nwant %d dropped and %q", dropped, out.String(), tt.dropped, tt.want)
			}
		})
	}
	t.Run("no baseline", func(t *testing.T) {
		var out bytes.Buffer
		if _, err := gate(&out, filepath.Join(dir, "none.json"), map[string]float64{"a / b": 1}, false); err != nil || !strings.Contains(out.String(), "does not exist") {
			t.Errorf("err %v, output %q", err, out.String())
		}
	})
	t.Run("bad baseline", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(bad, []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := gate(&bytes.Buffer{}, bad, nil, false); err == nil {
			t.Error("no error for a malformed baseline")
		}
	})
}
