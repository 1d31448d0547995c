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

func TestCheck(t *testing.T) {
	a, err := auth.New(auth.Config{
		APIKeys:    []string{"global-key"},
		PluginKeys: map[string][]string{"private": {"private-key"}},
		JWTKey:     "jwt-secret", JWTAlgo: "HS256", JWTDefault: true,
		Whitelist: []string{`^/_PLUGIN/public/`},
	})
	if err != nil {
		t.Fatal(err)
	}
	good := token(t, "jwt-secret", jwt.SigningMethodHS256, time.Hour)
	tests := []struct {
		name, path, plugin string
		header             map[string]string
		ok                 bool
	}{
		{"no credentials", "/_PLUGIN/hello/Hello", "hello", nil, false},
		{"X-API-Key", "/_PLUGIN/hello/Hello", "hello", map[string]string{"X-API-Key": "global-key"}, true},
		{"bearer key", "/_PLUGIN/hello/Hello", "hello", map[string]string{"Authorization": "Bearer global-key"}, true},
		{"wrong key", "/_PLUGIN/hello/Hello", "hello", map[string]string{"X-API-Key": "global-keyX"}, false},
		{"prefix of a key", "/_PLUGIN/hello/Hello", "hello", map[string]string{"X-API-Key": "global"}, false},
		{"plugin key elsewhere", "/_PLUGIN/hello/Hello", "hello", map[string]string{"X-API-Key": "private-key"}, false},
		{"plugin key", "/_PLUGIN/private/X", "private", map[string]string{"X-API-Key": "private-key"}, true},
		{"global key on a plugin with its own", "/_PLUGIN/private/X", "private", map[string]string{"X-API-Key": "global-key"}, false},
		{"admin with a plugin key", "/_PLUGINS", "", map[string]string{"X-API-Key": "private-key"}, false},
		{"admin with the global key", "/_PLUGINS", "", map[string]string{"X-API-Key": "global-key"}, true},
		{"plugin scope is case-insensitive", "/_PLUGIN/Private/X", "Private", nil, false},
		{"plugin key, other case", "/_PLUGIN/PRIVATE/X", "PRIVATE", map[string]string{"X-API-Key": "private-key"}, true},
		{"JWT", "/_PLUGIN/hello/Hello", "hello", map[string]string{"Authorization": "Bearer " + good}, true},
		{"JWT, other key", "/_PLUGIN/hello/Hello", "hello", map[string]string{"Authorization": "Bearer " + token(t, "other", jwt.SigningMethodHS256, time.Hour)}, false},
		{"JWT, other algorithm", "/_PLUGIN/hello/Hello", "hello", map[string]string{"Authorization": "Bearer " + token(t, "jwt-secret", jwt.SigningMethodHS512, time.Hour)}, false},
		{"JWT, expired", "/_PLUGIN/hello/Hello", "hello", map[string]string{"Authorization": "Bearer " + token(t, "jwt-secret", jwt.SigningMethodHS256, -time.Minute)}, false},
		{"JWT, no expiry", "/_PLUGIN/hello/Hello", "hello", map[string]string{"Authorization": "Bearer " + token(t, "jwt-secret", jwt.SigningMethodHS256, 0)}, false},
		{"JWT alg none", "/_PLUGIN/hello/Hello", "hello", map[string]string{"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZGEifQ."}, false},
		{"whitelisted", "/_PLUGIN/public/X", "public", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.path, nil)
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			err := a.Check(r, tt.plugin)
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, auth.ErrUnauthorized) {
				t.Errorf("Check = %v, want ok=%v", err, tt.ok)
			}
			for _, v := range tt.header {
				if err != nil && len(v) > 8 && strings.Contains(err.Error(), v[len(v)-8:]) {
					t.Errorf("the error echoes a credential: %v", err)
				}
			}
		})
	}
}

func TestNothingConfigured(t *testing.T) {
	a, _ := auth.New(auth.Config{JWTAlgo: "HS256", JWTDefault: true})
	if a.Enabled() || a.Check(httptest.NewRequest("GET", "/x", nil), "x") != nil {
		t.Error("without keys or a JWT key, everything should pass")
	}
	// prestd's jwt.default = false turns JWT off even with a key.
	a, _ = auth.New(auth.Config{JWTKey: "k", JWTAlgo: "HS256", JWTDefault: false})
	if a.Enabled() {
		t.Error("jwt.default = false did not turn JWT off")
	}
}
