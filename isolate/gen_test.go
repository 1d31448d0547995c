package isolate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugind/plugind/loader"
)

// TestGenerate reads sources as the in-process loader would accept or
// refuse them, and writes a main that binds what they declare.
func TestGenerate(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    []string // in the generated main
		wantErr error
	}{
		{name: "prestd globals and both legacy shapes", src: `package main
var HTTPVars map[string]string
var URLQuery map[string][]string
func GETAHandler() (ret string) { return }
func GETBHandler() (string, int) { return "", 0 }`,
			want: []string{`"GETAHandler": func() (string, int) { return GETAHandler(), 0 }`, `"GETBHandler": GETBHandler`, "HTTPVars: &HTTPVars", "URLQuery: &URLQuery"}},
		{name: "standard handler and hooks", src: `package main
import ("context"; "net/http")
var Settings map[string]interface{}
func Init(ctx context.Context) error { return nil }
func Close(ctx context.Context) error { return nil }
func Health(ctx context.Context) error { return nil }
func POSTXHandler(w http.ResponseWriter, r *http.Request) {}`,
			want: []string{`"POSTXHandler": POSTXHandler`, "Settings: &Settings", "return Init(ctx)", "Close: Close", "Health: Health"}},
		{name: "Init with settings", src: `package main
import "context"
func Init(ctx context.Context, s map[string]any) error { return nil }`,
			want: []string{"Init: Init,"}},
		{name: "a global of the wrong type", src: `package main
var HTTPVars map[string]any`, wantErr: loader.ErrSignature},
		{name: "a hook of the wrong type", src: `package main
func Close() {}`, wantErr: loader.ErrSignature},
		{name: "its own main", src: `package main
func main() {}`, wantErr: loader.ErrSignature},
		{name: "not package main", src: `package hello`, wantErr: loader.ErrSignature},
		{name: "syntax error", src: `package main
func (`, wantErr: loader.ErrBuild},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "p.go")
			if err := os.WriteFile(file, []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := parse(loader.Source{Name: "p", Kind: loader.KindFile, Files: []string{file}})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v; want %v", err, tt.wantErr)
				}
				var le *loader.Error
				if !errors.As(err, &le) || strings.Contains(le.Msg+le.Output, filepath.Dir(file)) {
					t.Errorf("the client-safe text names a server path: %+v", le)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out, err := generate(m)
			if err != nil {
				t.Fatal(err)
			}
			flat := strings.Join(strings.Fields(string(out)), " ")
			for _, w := range tt.want {
				if !strings.Contains(flat, strings.Join(strings.Fields(w), " ")) {
					t.Errorf("generated main lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
