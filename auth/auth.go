// Package auth decides who may call what. Every route belongs to one
// access Class; Decide takes the class, the plugin a plugin route
// addresses and the request's credentials, and returns the caller's
// Principal or a refusal. The whole policy is the table in Decide's
// comment and the one switch that implements it.
//
// Credentials are API keys (global ones, called operator keys, and a
// plugin's own) sent in X-API-Key or as an Authorization bearer, compared
// in constant time, and prestd's JWT (HMAC, jwt.key/jwt.algo, exp
// required). Keys and tokens are never logged or echoed.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// ErrUnauthorized is a refusal the right credentials would lift (401);
// ErrForbidden one that no credential sent from here lifts (403). The
// reason, never a credential, is in the wrapping error's message.
var (
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
)

// Class is who may call a route.
type Class int

const (
	// Public routes (the probes, and the metrics unless auth.metrics) are
	// open to anyone.
	Public Class = iota
	// Operator routes (the listing, tasks, events, the admin page) need an
	// operator key. With no credentials configured at all they are open
	// to clients on the loopback interface only.
	Operator
	// Plugin routes (/_PLUGIN/{file}/{func}) need the plugin's own keys or
	// an operator key where the plugin has keys, else an operator key or a
	// token where either is configured.
	Plugin
)

func (c Class) String() string {
	switch c {
	case Public:
		return "public"
	case Operator:
		return "operator"
	case Plugin:
		return "plugin"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Principal is who a request was let in as.
type Principal int

const (
	// Anonymous callers sent no credential the route needed.
	Anonymous Principal = iota
	// Caller is let in by a plugin key or a token: it may call plugins,
	// nothing more.
	Caller
	// Local is a client on the loopback interface of a server with no
	// credentials configured: it may call the server's own routes, but is
	// not told what only operators are (a local reverse proxy that adds no
	// forwarding header would make every client local).
	Local
	// OperatorPrincipal sent an operator key. Operators see
	// plugin-written error text and hook errors.
	OperatorPrincipal
)

// Config is what the Authenticator checks against.
type Config struct {
	APIKeys    []string            // operator keys: every route
	PluginKeys map[string][]string // a plugin's own keys: that plugin's routes
	// PluginJWT names plugins with keys of their own that accept tokens
	// too ([plugin.NAME] jwt = true). Plugins without keys always do.
	PluginJWT  map[string]bool
	JWTKey     string // "" turns JWT off
	JWTAlgo    string // HS256, HS384 or HS512
	JWTDefault bool   // prestd's jwt.default: JWT on when a key is set
	// Whitelist holds regular expressions of plugin paths that need no
	// token. They open plugin routes only, and only where no key guards
	// them: a whitelist waives the token, never a key.
	Whitelist []string
}

// Authenticator decides requests. It is safe for concurrent use.
type Authenticator struct {
	operator   [][32]byte
	plugin     map[string][][32]byte
	pluginJWT  map[string]bool
	configured bool // any credential at all
	jwtKey     []byte
	parser     *jwt.Parser
	whitelist  []*regexp.Regexp
}

// New compiles cfg.
func New(cfg Config) (*Authenticator, error) {
	a := &Authenticator{plugin: make(map[string][][32]byte), pluginJWT: make(map[string]bool)}
	for _, k := range cfg.APIKeys {
		if k != "" {
			a.operator = append(a.operator, sha256.Sum256([]byte(k)))
		}
	}
	for name, keys := range cfg.PluginKeys {
		name = strings.ToLower(name) // plugin scopes are case-insensitive, as configuration keys are
		for _, k := range keys {
			if k != "" {
				a.plugin[name] = append(a.plugin[name], sha256.Sum256([]byte(k)))
			}
		}
	}
	for name, on := range cfg.PluginJWT {
		a.pluginJWT[strings.ToLower(name)] = on
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
	a.configured = len(a.operator) > 0 || len(a.plugin) > 0 || a.parser != nil
	return a, nil
}

// Enabled reports whether any credential is configured.
func (a *Authenticator) Enabled() bool { return a.configured }

// JWT reports whether tokens are checked.
func (a *Authenticator) JWT() bool { return a.parser != nil }

// credentials is what a request carries.
type credentials struct {
	key    string // X-API-Key, else the bearer
	bearer string
}

func credentialsOf(r *http.Request) credentials {
	// "X-Api-Key" is X-API-Key's canonical form: Get with it does not
	// canonicalise (allocating) on every request.
	c := credentials{key: r.Header.Get("X-Api-Key")}
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		c.bearer = b
		if c.key == "" {
			c.key = b
		}
	}
	return c
}

// Decide lets r in as a Principal, or refuses it. plugin is the plugin a
// Plugin route addresses (valid, as parsed from the path).
//
//	class     configured                  accepted
//	Public    -                           anyone
//	Operator  nothing at all              loopback clients (not forwarded); others 403
//	Operator  anything                    operator keys
//	Plugin    plugin has keys             its keys, operator keys; tokens if [plugin.NAME] jwt
//	Plugin    no plugin keys; operator    operator keys, tokens
//	          keys or JWT
//	Plugin    neither                     anyone
//
// A whitelisted path waives the token on a Plugin route with no keys in
// scope: it never opens a route that keys guard, nor an Operator route.
// Operators are recognised on every class, so that an operator key on a
// public route still earns the operator's view.
func (a *Authenticator) Decide(r *http.Request, class Class, plugin string) (Principal, error) {
	c := credentialsOf(r)
	if c.key != "" && matches(a.operator, c.key) {
		return OperatorPrincipal, nil
	}
	switch class {
	case Public:
		return Anonymous, nil
	case Operator:
		switch {
		case !a.configured && local(r):
			return Local, nil
		case !a.configured:
			return Anonymous, fmt.Errorf("%w: the server's own routes answer only on the loopback interface until auth.apikeys is set", ErrForbidden)
		case len(a.operator) == 0:
			return Anonymous, fmt.Errorf("%w: the server's own routes need an operator key, and auth.apikeys sets none", ErrUnauthorized)
		case c.key == "":
			return Anonymous, fmt.Errorf("%w: no credentials (send an operator key in X-API-Key or Authorization: Bearer)", ErrUnauthorized)
		}
		return Anonymous, fmt.Errorf("%w: the server's own routes need an operator key", ErrUnauthorized)
	}
	// Plugin.
	name := strings.ToLower(plugin)
	keys, scoped := a.plugin[name]
	tokens := a.parser != nil && (!scoped || a.pluginJWT[name])
	if !scoped && len(a.operator) == 0 && !tokens {
		return Anonymous, nil // nothing guards this plugin
	}
	if !scoped && len(a.operator) == 0 && a.whitelisted(r.URL.Path) {
		return Anonymous, nil // the whitelist waives the token
	}
	if c.key == "" {
		return Anonymous, fmt.Errorf("%w: no credentials (send X-API-Key or Authorization: Bearer)", ErrUnauthorized)
	}
	if scoped && matches(keys, c.key) {
		return Caller, nil
	}
	if tokens && c.bearer != "" && strings.Count(c.bearer, ".") == 2 {
		_, err := a.parser.Parse(c.bearer, func(*jwt.Token) (any, error) { return a.jwtKey, nil })
		switch {
		case err == nil:
			return Caller, nil
		case errors.Is(err, jwt.ErrTokenExpired):
			return Anonymous, fmt.Errorf("%w: the token has expired", ErrUnauthorized)
		}
		return Anonymous, fmt.Errorf("%w: invalid token", ErrUnauthorized)
	}
	return Anonymous, fmt.Errorf("%w: invalid credentials", ErrUnauthorized)
}

func (a *Authenticator) whitelisted(path string) bool {
	for _, re := range a.whitelist {
		if re.MatchString(path) {
			return true
		}
	}
	return false
}

// local reports whether r comes straight from the loopback interface: not
// through a proxy, which would make every client look local.
func local(r *http.Request) bool {
	if r.Header.Get("X-Forwarded-For") != "" || r.Header.Get("Forwarded") != "" {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
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
