package loader

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidNames(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen)
	tests := []struct {
		in         string
		name, fn   bool
		methodOnly bool
	}{
		{in: "hello", name: true, fn: true},
		{in: "Hello_World2", name: true, fn: true},
		{in: "my-plugin", name: true, fn: false},
		{in: long, name: true, fn: true},
		{in: long + "a"},
		{in: ""},
		{in: "-rf"},
		{in: "."},
		{in: ".."},
		{in: "a.so"},
		{in: "../etc/passwd"},
		{in: "a/b"},
		{in: `a\b`},
		{in: "a%2Fb"},
		{in: "a\x00b"},
		{in: "hello\n"},
		{in: " hello"},
		{in: "héllo"},        // non-ASCII letter
		{in: "hello\u200b"},  // zero-width space
		{in: "\uff0e\uff0e"}, // fullwidth dots
		{in: "hel\u2215lo"},  // division slash
		{in: "\u0430dmin"},   // Cyrillic a
		{in: "~root"},
		{in: "$HOME"},
	}
	for _, tt := range tests {
		if got := ValidName(tt.in); got != tt.name {
			t.Errorf("ValidName(%q) = %v, want %v", tt.in, got, tt.name)
		}
		if got := ValidFunc(tt.in); got != tt.fn {
			t.Errorf("ValidFunc(%q) = %v, want %v", tt.in, got, tt.fn)
		}
	}
}

func TestIgnored(t *testing.T) {
	for in, want := range map[string]bool{"_draft": true, "_": true, "draft": false, "draft_": false, "a_b": false, "": false} {
		if got := Ignored(in); got != want {
			t.Errorf("Ignored(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestValidMethod(t *testing.T) {
	for in, want := range map[string]bool{
		"GET": true, "PROPFIND": true, "get": false, "": false,
		"G-T": false, "GET ": false, strings.Repeat("A", MaxMethodLen+1): false,
	} {
		if got := ValidMethod(in); got != want {
			t.Errorf("ValidMethod(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzValidName checks that whatever passes validation is a plain file
// name: it cannot leave the source directory or change meaning when used
// in a path.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"hello", "..", "a/b", "a\x00", "héllo", "-x", "a.go", "%2e%2e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dir := "/srv/plugins/src"
		for _, ok := range []bool{ValidName(s), ValidFunc(s)} {
			if !ok {
				continue
			}
			p := filepath.Join(dir, s+".go")
			if filepath.Dir(p) != dir || filepath.Base(p) != s+".go" {
				t.Fatalf("valid name %q escapes to %q", s, p)
			}
			if !utf8.ValidString(s) || strings.ContainsAny(s, "./\\\x00%: ") || len(s) > MaxNameLen || s == "" {
				t.Fatalf("valid name %q contains a forbidden byte or length", s)
			}
		}
	})
}
