package auth_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/plugind/plugind/auth"
)

func token(t *testing.T, key string, method jwt.SigningMethod, exp time.Duration) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": "ada"}
	if exp != 0 {
		claims["exp"] = time.Now().Add(exp).Unix()
	}
	s, err := jwt.NewWithClaims(method, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDecide(t *testing.T) {
	a, err := auth.New(auth.Config{
		APIKeys:    []string{"global-key"},
		PluginKeys: map[string][]string{"private": {"private-key"}, "both": {"both-key"}},
		PluginJWT:  map[string]bool{"both": true},
		JWTKey:     "jwt-secret", JWTAlgo: "HS256", JWTDefault: true,
		Whitelist: []string{`^/_PLUGIN/public/`, `^/_PLUGINS`, `^/_PLUGIN/private/`},
	})
	if err != nil {
		t.Fatal(err)
	}
	good := "Bearer " + token(t, "jwt-secret", jwt.SigningMethodHS256, time.Hour)
	key := func(k string) map[string]string { return map[string]string{"X-API-Key": k} }
	bearer := func(b string) map[string]string { return map[string]string{"Authorization": b} }
	const (
		anon = auth.Anonymous
		call = auth.Caller
		op   = auth.OperatorPrincipal
	)
	tests := []struct {
		name, path string
		class      auth.Class
		plugin     string
		header     map[string]string
		want       auth.Principal
		err        error
	}{
		{"no credentials", "/_PLUGIN/hello/Hello", auth.Plugin, "hello", nil, anon, auth.ErrUnauthorized},
		{"X-API-Key", "/_PLUGIN/hello/Hello", auth.Plugin, "hello", key("global-key"), op, nil},
		{"bearer key", "/_PLUGIN/hello/Hello", auth.Plugin, "hello", bearer("Bearer global-key"), op, nil},
		{"wrong key", "/_PLUGIN/hello/Hello", auth.Plugin, "hello", key("global-keyX"), anon, auth.ErrUnauthorized},
		{"prefix of a key", "/_PLUGIN/hello/Hello", auth.Plugin, "hello", key("global"), anon, auth.ErrUnauthorized},
		{"plugin key elsewhere", "/_PLUGIN/hello/Hello", auth.Plugin, "hello", key("private-key"), anon, auth.ErrUnauthorized},
		{"plugin key", "/_PLUGIN/private/X", auth.Plugin, "private", key("private-key"), call, nil},
		{"operator key on a plugin with its own", "/_PLUGIN/private/X", auth.Plugin, "private", key("global-key"), op, nil},
		{"token on a plugin with its own keys", "/_PLUGIN/private/X", auth.Plugin, "private", bearer(good), anon, auth.ErrUnauthorized},
		{"token on a plugin with keys and jwt = true", "/_PLUGIN/both/X", auth.Plugin, "both", bearer(good), call, nil},
		{"operator route, plugin key", "/_PLUGINS", auth.Operator, "", key("private-key"), anon, auth.ErrUnauthorized},
		{"operator route, operator key", "/_PLUGINS", auth.Operator, "", key("global-key"), op, nil},
		{"operator route, token", "/_PLUGINS", auth.Operator, "", bearer(good), anon, auth.ErrUnauthorized},
		{"operator route, whitelisted", "/_PLUGINS", auth.Operator, "", nil, anon, auth.ErrUnauthorized},
		{"public route", "/healthz", auth.Public, "", nil, anon, nil},
		{"public route, operator key", "/healthz", auth.Public, "", key("global-key"), op, nil},
		{"plugin scope is case-insensitive", "/_PLUGIN/Private/X", auth.Plugin, "Private", nil, anon, auth.ErrUnauthorized},
		{"plugin key, other case", "/_PLUGIN/PRIVATE/X", auth.Plugin, "PRIVATE", key("private-key"), call, nil},
		{"JWT", "/_PLUGIN/hello/Hello", auth.Plugin, "hello", bearer(good), call, nil},
		{"JWT, other key", "/_PLUGIN/hello/Hello", auth.Plugin, "hello", bearer("Bearer " + token(t, "other", jwt.SigningMethodHS256, time.Hour)), anon, auth.ErrUnauthorized},
		{"JWT, other algorithm", "/_PLUGIN/hello/Hello", auth.Plugin, "hello", bearer("Bearer " + token(t, "jwt-secret", jwt.SigningMethodHS512, time.Hour)), anon, auth.ErrUnauthorized},
		{"JWT, expired", "/_PLUGIN/hello/Hello", auth.Plugin, "hello", bearer("Bearer " + token(t, "jwt-secret", jwt.SigningMethodHS256, -time.Minute)), anon, auth.ErrUnauthorized},
		{"JWT, no expiry", "/_PLUGIN/hello/Hello", auth.Plugin, "hello", bearer("Bearer " + token(t, "jwt-secret", jwt.SigningMethodHS256, 0)), anon, auth.ErrUnauthorized},
		{"JWT alg none", "/_PLUGIN/hello/Hello", auth.Plugin, "hello", bearer("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZGEifQ."), anon, auth.ErrUnauthorized},
		// Operator keys guard every plugin without keys of its own: the
		// whitelist waives tokens, never keys.
		{"whitelisted under operator keys", "/_PLUGIN/public/X", auth.Plugin, "public", nil, anon, auth.ErrUnauthorized},
		{"whitelisted plugin with keys", "/_PLUGIN/private/X", auth.Plugin, "private", nil, anon, auth.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.path, nil)
			r.RemoteAddr = "127.0.0.1:1234" // loopback earns nothing once credentials are configured
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			p, err := a.Decide(r, tt.class, tt.plugin)
			if p != tt.want || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Errorf("Decide = %v, %v; want %v, %v", p, err, tt.want, tt.err)
			}
			for _, v := range tt.header {
				if err != nil && len(v) > 8 && strings.Contains(err.Error(), v[len(v)-8:]) {
					t.Errorf("the error echoes a credential: %v", err)
				}
			}
		})
	}
}

// TestWhitelistWithoutKeys: with tokens only, the whitelist opens plugin
// paths and nothing else.
func TestWhitelistWithoutKeys(t *testing.T) {
	a, _ := auth.New(auth.Config{JWTKey: "k", JWTAlgo: "HS256", JWTDefault: true, Whitelist: []string{`^/_PLUGIN/public/`, `^/_PLUGINS`}})
	for _, tt := range []struct {
		path  string
		class auth.Class
		err   error
	}{
		{"/_PLUGIN/public/X", auth.Plugin, nil},
		{"/_PLUGIN/other/X", auth.Plugin, auth.ErrUnauthorized},
		{"/_PLUGINS", auth.Operator, auth.ErrUnauthorized},
	} {
		_, err := a.Decide(httptest.NewRequest("GET", tt.path, nil), tt.class, "public")
		if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
			t.Errorf("%s: %v, want %v", tt.path, err, tt.err)
		}
	}
}

func TestNothingConfigured(t *testing.T) {
	a, _ := auth.New(auth.Config{JWTAlgo: "HS256", JWTDefault: true})
	if a.Enabled() {
		t.Error("without keys or a JWT key, nothing is configured")
	}
	for _, tt := range []struct {
		name    string
		remote  string
		header  string
		class   auth.Class
		want    auth.Principal
		wantErr error
	}{
		{"plugin, remote", "192.0.2.1:1", "", auth.Plugin, auth.Anonymous, nil},
		{"public, remote", "192.0.2.1:1", "", auth.Public, auth.Anonymous, nil},
		{"operator, loopback", "127.0.0.1:1", "", auth.Operator, auth.Local, nil},
		{"operator, loopback v6", "[::1]:1", "", auth.Operator, auth.Local, nil},
		{"operator, remote", "192.0.2.1:1", "", auth.Operator, auth.Anonymous, auth.ErrForbidden},
		{"operator, through a local proxy", "127.0.0.1:1", "203.0.113.9", auth.Operator, auth.Anonymous, auth.ErrForbidden},
	} {
		r := httptest.NewRequest("GET", "/x", nil)
		r.RemoteAddr = tt.remote
		if tt.header != "" {
			r.Header.Set("X-Forwarded-For", tt.header)
		}
		p, err := a.Decide(r, tt.class, "x")
		if p != tt.want || !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
			t.Errorf("%s: %v, %v; want %v, %v", tt.name, p, err, tt.want, tt.wantErr)
		}
	}
	// prestd's jwt.default = false turns JWT off even with a key.
	a, _ = auth.New(auth.Config{JWTKey: "k", JWTAlgo: "HS256", JWTDefault: false})
	if a.Enabled() {
		t.Error("jwt.default = false did not turn JWT off")
	}
}
