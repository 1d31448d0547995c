// Package auth decides whether a request may proceed: API keys, set
// globally or per plugin, compared in constant time, and prestd's JWT
// (HMAC, jwt.key/jwt.algo, with a whitelist of public paths).
//
// A request is authenticated when it carries, in X-API-Key or as an
// Authorization bearer, a key of its scope (the plugin's own keys where
// the plugin has some, the global keys otherwise), or a valid JWT when
// JWT is on. Paths matching the whitelist need nothing. Keys and tokens
// are never logged or echoed.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// ErrUnauthorized is every refusal; the reason (never a credential) is in
// the wrapping error's message.
var ErrUnauthorized = errors.New("unauthorized")

// Config is what the Authenticator checks against.
type Config struct {
	APIKeys    []string            // global keys
	PluginKeys map[string][]string // a plugin's own keys replace the global ones
	JWTKey     string              // "" turns JWT off
	JWTAlgo    string              // HS256, HS384 or HS512
	JWTDefault bool                // prestd's jwt.default: JWT on when a key is set
	Whitelist  []string            // regular expressions of public paths
}

// Authenticator checks requests. It is safe for concurrent use.
type Authenticator struct {
	global    [][32]byte
	plugin    map[string][][32]byte
	any       [][32]byte // every key: Enabled
	jwtKey    []byte
	parser    *jwt.Parser
	whitelist []*regexp.Regexp
}

// New compiles cfg.
func New(cfg Config) (*Authenticator, error) {
	a := &Authenticator{plugin: make(map[string][][32]byte)}
	for _, k := range cfg.APIKeys {
		if k != "" {
			a.global = append(a.global, sha256.Sum256([]byte(k)))
		}
	}
	a.any = append(a.any, a.global...)
	for name, keys := range cfg.PluginKeys {
		for _, k := range keys {
			if k != "" {
				h := sha256.Sum256([]byte(k))
				a.plugin[strings.ToLower(name)] = append(a.plugin[strings.ToLower(name)], h)
				a.any = append(a.any, h)
			}
		}
	}
	if cfg.JWTKey != "" && cfg.JWTDefault {
		a.jwtKey = []byte(cfg.JWTKey)
		a.parser = jwt.NewParser(jwt.WithValidMethods([]string{cfg.JWTAlgo}), jwt.WithExpirationRequired())
	}
	for _, w := range cfg.Whitelist {
		re, err := regexp.Compile(w)
		if err != nil {
			return nil, fmt.Errorf("jwt.whitelist %q: %w", w, err)
		}
		a.whitelist = append(a.whitelist, re)
	}
	return a, nil
}

// Enabled reports whether any request needs credentials.
func (a *Authenticator) Enabled() bool {
	return len(a.any) > 0 || a.parser != nil
}

// Check authenticates r for plugin ("" for routes of no plugin's).
// Plugin scopes are case-insensitive, as configuration keys are: the keys
// of [plugin.report] guard /_PLUGIN/Report/... too. Routes of no plugin
// accept the global keys (and tokens) only: a plugin's key opens its
// plugin, not the server's listing, tasks or event stream.
func (a *Authenticator) Check(r *http.Request, plugin string) error {
	keys, scoped := a.plugin[strings.ToLower(plugin)]
	if !scoped {
		keys = a.global
	}
	if len(keys) == 0 && a.parser == nil {
		return nil // nothing configured for this scope
	}
	for _, re := range a.whitelist {
		if re.MatchString(r.URL.Path) {
			return nil
		}
	}
	key := r.Header.Get("X-API-Key")
	bearer, hasBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if key == "" && hasBearer {
		key = bearer
	}
	if key == "" {
		return fmt.Errorf("%w: no credentials (send X-API-Key or Authorization: Bearer)", ErrUnauthorized)
	}
	if matches(keys, key) {
		return nil
	}
	if a.parser != nil && hasBearer && strings.Count(bearer, ".") == 2 {
		if _, err := a.parser.Parse(bearer, func(*jwt.Token) (any, error) { return a.jwtKey, nil }); err == nil {
			return nil
		} else if errors.Is(err, jwt.ErrTokenExpired) {
			return fmt.Errorf("%w: the token has expired", ErrUnauthorized)
		}
		return fmt.Errorf("%w: invalid token", ErrUnauthorized)
	}
	return fmt.Errorf("%w: invalid credentials", ErrUnauthorized)
}

// matches compares key with every one of keys in constant time: the time
// taken says nothing about which key, or how much of one, matched.
func matches(keys [][32]byte, key string) bool {
	h := sha256.Sum256([]byte(key))
	found := 0
	for _, k := range keys {
		found |= subtle.ConstantTimeCompare(k[:], h[:])
	}
	return found == 1
}
