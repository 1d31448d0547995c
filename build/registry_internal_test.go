package build

import (
	"strings"
	"testing"
)

func TestRegistry(t *testing.T) {
	host := map[string]string{"github.com/rs/xid": "v1.6.0"}
	tests := []struct {
		name      string
		loaded    map[string]string // added by plugin "a"
		candidate map[string]string // plugin "b"'s artifact
		conflicts []string          // modules in conflict, in order
	}{
		{name: "nothing loaded", candidate: map[string]string{"example.com/greet": "v1.0.0"}},
		{name: "same version", loaded: map[string]string{"example.com/greet": "v1.0.0"}, candidate: map[string]string{"example.com/greet": "v1.0.0"}},
		{name: "another version", loaded: map[string]string{"example.com/greet": "v1.0.0"}, candidate: map[string]string{"example.com/greet": "v1.1.0"},
			conflicts: []string{"example.com/greet"}},
		{name: "a vendored copy against the module cache's", loaded: map[string]string{"example.com/greet": "v1.1.0"},
			candidate: map[string]string{"example.com/greet": "v1.1.0 => /cache/vendor/example.com/greet@v1.1.0-abc "}, conflicts: []string{"example.com/greet"}},
		{name: "the server's modules are not recorded", loaded: map[string]string{"github.com/rs/xid": "v1.6.0"},
			candidate: map[string]string{"github.com/rs/xid": "v1.7.0"}},
		{name: "several, sorted", loaded: map[string]string{"b.example/y": "v1.0.0", "a.example/x": "v1.0.0", "c.example/z": "v1.0.0"},
			candidate: map[string]string{"c.example/z": "v2.0.0", "a.example/x": "v2.0.0", "b.example/y": "v1.0.0"}, conflicts: []string{"a.example/x", "c.example/z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry(host)
			r.Add("a", tt.loaded, []string{"example.com/greet v1.0.0 h1:zip=", "example.com/greet v1.0.0/go.mod h1:mod=", "example.com/greet v1.1.0 h1:other="})
			var got []string
			for _, c := range r.Check(tt.candidate) {
				got = append(got, c.Module)
				if c.Loaded.Plugin != "a" {
					t.Errorf("conflict %s names plugin %q; want the one that loaded it", c, c.Loaded.Plugin)
				}
				if strings.Contains(c.String(), "/cache/") {
					t.Errorf("conflict %q shows a server path", c)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.conflicts, ",") {
				t.Errorf("conflicts %v; want %v", got, tt.conflicts)
			}
		})
	}
	r := NewRegistry(host)
	r.Add("a", map[string]string{"example.com/greet": "v1.0.0"}, []string{"example.com/greet v1.0.0 h1:zip=", "example.com/greet v1.0.0/go.mod h1:mod=", "example.com/greet v1.1.0 h1:other=", "example.com/other v1.0.0 h1:x="})
	r.Add("b", map[string]string{"example.com/greet": "v1.1.0"}, nil) // the first load stands
	l, ok := r.Lookup("example.com/greet")
	if !ok || l.Plugin != "a" || l.Version != "v1.0.0" || len(l.sums) != 2 {
		t.Errorf("Lookup = %+v, %v; want plugin a's v1.0.0 with its two go.sum lines", l, ok)
	}
}

func TestSameBuild(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"v1.0.0", "v1.0.0", true},
		{"v1.0.0 => /c/vendor/x (devel)", "v1.0.0 => /c/vendor/x ", true},
		{"v1.0.0 => /c/vendor/x (devel)", "v1.0.0 => /c/vendor/y ", false},
		{"v1.0.0 => /c/vendor/x ", "v1.0.0", false},
	}
	for _, tt := range tests {
		if got := sameBuild(tt.a, tt.b); got != tt.same {
			t.Errorf("sameBuild(%q, %q) = %v; want %v", tt.a, tt.b, got, tt.same)
		}
	}
}
