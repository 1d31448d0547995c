package sdk_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/sdk"
)

func TestValues(t *testing.T) {
	v := sdk.Values{
		"s": "text", "i": int64(3), "f": 2.0, "half": 2.5, "is": "7", "b": true, "bs": "false",
		"d": "1.5s", "list": []any{"a", "b"}, "mixed": []any{"a", 1},
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"string", v.String("s", "def"), "text"},
		{"string missing", v.String("nope", "def"), "def"},
		{"string of another type", v.String("i", "def"), "def"},
		{"int64", v.Int("i", -1), 3},
		{"whole float", v.Int("f", -1), 2},
		{"fractional float", v.Int("half", -1), -1},
		{"int in a string", v.Int("is", -1), 7},
		{"bool", v.Bool("b", false), true},
		{"bool in a string", v.Bool("bs", true), false},
		{"duration", v.Duration("d", 0), 1500 * time.Millisecond},
		{"bad duration", v.Duration("s", time.Second), time.Second},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if got := v.Strings("list", nil); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Strings = %q", got)
	}
	if got := v.Strings("mixed", []string{"def"}); !slices.Equal(got, []string{"def"}) {
		t.Errorf("Strings of a mixed list = %q", got)
	}
}

func TestContext(t *testing.T) {
	logs := &plugintest.Log{}
	ctx := sdk.NewContext(context.Background(), &sdk.Env{
		Plugin: "p", RequestID: "r1", Vars: map[string]string{"func": "F"},
		Settings: map[string]any{"k": "v"}, Secrets: map[string]string{"token": "t"},
		Log: zerolog.New(logs).With().Str("plugin", "p").Logger(),
	})
	if sdk.Plugin(ctx) != "p" || sdk.RequestID(ctx) != "r1" || sdk.Vars(ctx)["func"] != "F" || sdk.Settings(ctx).String("k", "") != "v" {
		t.Error("the context does not carry the env")
	}
	if s, ok := sdk.Secret(ctx, "TOKEN"); !ok || s != "t" {
		t.Errorf("Secret = %q, %v", s, ok)
	}
	sdk.Logger(ctx).Info().Msg("hi")
	if len(logs.Events(map[string]any{"plugin": "p", "request_id": "r1", "message": "hi"})) != 1 {
		t.Errorf("logger fields: %s", logs)
	}
	// Outside plugind (a plugin's own unit test) everything is empty, not nil-panicking.
	bare := context.Background()
	if sdk.Plugin(bare) != "" || sdk.Settings(bare).String("k", "d") != "d" {
		t.Error("a bare context is not empty")
	}
	sdk.Logger(bare).Info().Msg("dropped")
	if _, ok := sdk.Secret(bare, "token"); ok {
		t.Error("a bare context has secrets")
	}
}

// ownContext is a server's request context that answers sdk.EnvKey
// itself, as plugind's does, instead of a context.WithValue.
type ownContext struct {
	context.Context
	env *sdk.Env
}

func (c ownContext) Value(key any) any {
	if _, ok := key.(sdk.EnvKey); ok {
		return c.env
	}
	return c.Context.Value(key)
}

func TestVars(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want map[string]string
	}{
		{"the map given", sdk.NewContext(context.Background(), &sdk.Env{Vars: map[string]string{"file": "f", "func": "F", "x": "y"}}),
			map[string]string{"file": "f", "func": "F", "x": "y"}},
		{"made from File and Func", sdk.NewContext(context.Background(), &sdk.Env{File: "hello", Func: "Hello"}),
			map[string]string{"file": "hello", "func": "Hello"}},
		{"a context answering EnvKey", ownContext{context.Background(), &sdk.Env{Plugin: "p", File: "p", Func: "G"}},
			map[string]string{"file": "p", "func": "G"}},
		{"outside a request", sdk.NewContext(context.Background(), &sdk.Env{Plugin: "p"}), nil},
		{"a nil env", ownContext{context.Background(), nil}, nil},
		{"a bare context", context.Background(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sdk.Vars(tc.ctx)
			if !maps.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Fatalf("Vars = %v, want %v", got, tc.want)
			}
			if got == nil {
				return
			}
			// A plugin may write to the map it was given without changing
			// what the next call returns when the map is made per call.
			got["file"] = "changed"
			if again := sdk.Vars(tc.ctx)["file"]; tc.name != "the map given" && again != tc.want["file"] {
				t.Errorf("after a write to the first map, Vars()[file] = %q, want %q", again, tc.want["file"])
			}
		})
	}
}

// TestFingerprint checks that the fingerprint is the package's source
// as it is on disk, every non-test file of it: a constant, or a
// fingerprint that missed a file, would not notice an edit.
func TestFingerprint(t *testing.T) {
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	files := 0
	for _, n := range names { // Glob sorts
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s\n%s", n, data)
		files++
	}
	if want := hex.EncodeToString(h.Sum(nil)); files < 3 || sdk.Fingerprint() != want {
		t.Errorf("Fingerprint = %s, want %s: the sha256 of the %d source files, names and contents", sdk.Fingerprint(), want, files)
	}
}
