package isolate

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/plugind/plugind/loader"
)

// TestChildEnv: a serial child (prestd's handlers only) runs on one P,
// unless the operator set GOMAXPROCS, which reaches every child as set.
func TestChildEnv(t *testing.T) {
	legacy := loader.HandlerInfo{Symbol: "GETHelloHandler", ABI: loader.ABILegacy}
	standard := loader.HandlerInfo{Symbol: "GETEchoHandler", ABI: loader.ABIStandard}
	tests := []struct {
		name     string
		handlers []loader.HandlerInfo
		operator string // GOMAXPROCS in the server's environment; "" unset
		want     string // the child's GOMAXPROCS; "" none
	}{
		{"prestd's handlers only", []loader.HandlerInfo{legacy}, "", "1"},
		{"a standard handler too", []loader.HandlerInfo{legacy, standard}, "", ""},
		{"standard handlers", []loader.HandlerInfo{standard}, "", ""},
		{"no handlers", nil, "", ""},
		{"the operator's, serial", []loader.HandlerInfo{legacy}, "3", "3"},
		{"the operator's, standard", []loader.HandlerInfo{standard}, "2", "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.operator != "" {
				t.Setenv("GOMAXPROCS", tt.operator)
			} else {
				t.Setenv("GOMAXPROCS", "") // restored after the test
				unsetenv(t, "GOMAXPROCS")
			}
			m := &model{handlers: tt.handlers}
			env := childEnv("p", "/s", "/c", m.serial())
			var got []string
			for _, kv := range env {
				if v, ok := strings.CutPrefix(kv, "GOMAXPROCS="); ok {
					got = append(got, v)
				}
			}
			var want []string
			if tt.want != "" {
				want = []string{tt.want}
			}
			if !slices.Equal(got, want) {
				t.Errorf("the child's GOMAXPROCS %q, want %q (env %q)", got, want, env)
			}
		})
	}
}

// unsetenv unsets key for the rest of t, after t.Setenv has recorded
// the value to restore.
func unsetenv(t *testing.T, key string) {
	t.Helper()
	if err := os.Unsetenv(key); err != nil {
		t.Fatal(err)
	}
}
