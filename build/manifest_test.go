package build_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugind/plugind/build"
)

// TestManifest: a record is found by the builder identity that wrote it
// for the sources it was written for, and by nothing else; what is not
// found says why.
func TestManifest(t *testing.T) {
	source, key := strings.Repeat("s", 64), strings.Repeat("k", 64)
	tests := []struct {
		name    string
		prepare func(t *testing.T, m build.Manifest)
		lookup  func(m build.Manifest) (string, error)
		wantKey string
		why     string // the RecordError's, when one is wanted
	}{
		{"recorded", func(t *testing.T, m build.Manifest) { record(t, m, "hello", source, key) },
			func(m build.Manifest) (string, error) { return m.Lookup("hello", source) }, key, ""},
		{"other sources", func(t *testing.T, m build.Manifest) { record(t, m, "hello", source, key) },
			func(m build.Manifest) (string, error) { return m.Lookup("hello", strings.Repeat("t", 64)) }, "", "no program was built for its current source"},
		{"another plugin", func(t *testing.T, m build.Manifest) { record(t, m, "hello", source, key) },
			func(m build.Manifest) (string, error) { return m.Lookup("other", source) }, "", "no program was built for its current source"},
		{"another builder", func(t *testing.T, m build.Manifest) {
			other := m
			other.Identity = "another"
			record(t, other, "hello", source, key)
		}, func(m build.Manifest) (string, error) { return m.Lookup("hello", source) }, "", "its program was built by a different plugind binary"},
		{"damaged", func(t *testing.T, m build.Manifest) {
			record(t, m, "hello", source, key)
			files, _ := filepath.Glob(filepath.Join(m.Dir, "hello.*.json"))
			if len(files) != 1 {
				t.Fatalf("records %v, want one", files)
			}
			if err := os.WriteFile(files[0], []byte("{"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, func(m build.Manifest) (string, error) { return m.Lookup("hello", source) }, "", "its build record is damaged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := build.Manifest{Dir: filepath.Join(t.TempDir(), "records"), Identity: "this", What: "program"}
			tt.prepare(t, m)
			got, err := tt.lookup(m)
			var re *build.RecordError
			switch {
			case tt.why == "" && (err != nil || got != tt.wantKey):
				t.Fatalf("Lookup = %q, %v; want %q", got, err, tt.wantKey)
			case tt.why != "" && (!errors.As(err, &re) || re.Why != tt.why || got != ""):
				t.Fatalf("Lookup = %q, %v; want a RecordError %q", got, err, tt.why)
			}
		})
	}
}

func record(t *testing.T, m build.Manifest, name, source, key string) {
	t.Helper()
	if err := m.Record(name, source, key); err != nil {
		t.Fatal(err)
	}
}
