// Package config loads plugind's configuration, once, into a typed Config.
//
// Values come, in rising order of precedence, from built-in defaults (those
// of prestd where the key is shared), the TOML file (prest.toml, or the path
// in --config or PREST_CONF), PREST_* environment variables and command-line
// flags. Keys are prestd's: a prestd prest.toml keeps working, and keys this
// server does not know (pg.*, for example) are reported in one warning rather
// than refused. An invalid value stops start-up with an error naming the key.
//
// No other package imports viper.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Config is the whole configuration of a plugind process.
type Config struct {
	// PluginPath holds the plugin sources in PluginPath/src.
	PluginPath string    `mapstructure:"pluginpath"`
	Debug      bool      `mapstructure:"debug"`
	HTTP       HTTP      `mapstructure:"http"`
	Plugins    Plugins   `mapstructure:"plugins"`
	Lifecycle  Lifecycle `mapstructure:"lifecycle"`
	Auth       Auth      `mapstructure:"auth"`
	JWT        JWT       `mapstructure:"jwt"`
	CORS       CORS      `mapstructure:"cors"`
	HTTPS      HTTPS     `mapstructure:"https"`
	Metrics    Metrics   `mapstructure:"metrics"`
	Bus        Bus       `mapstructure:"bus"`
	Tasks      Tasks     `mapstructure:"tasks"`
	Log        Log       `mapstructure:"log"`
	Admin      Admin     `mapstructure:"admin"`
	// Middleware lists middleware plugins, applied in order, the first
	// outermost (prestd's pluginmiddlewarelist).
	Middleware []MiddlewareRef `mapstructure:"pluginmiddlewarelist"`
	// PluginConfigs are the [plugin.<name>] tables, by plugin name.
	PluginConfigs map[string]PluginConfig `mapstructure:"-"`
	// secrets are PREST_PLUGIN_ variables (the rest of the name -> value)
	// and the secrets file's tables (name -> key -> value).
	secretEnv  map[string]string
	secretFile map[string]map[string]string

	// Warnings are what Load decided that the operator should hear of at
	// start-up (debug turning JWT checking off, say), one sentence each.
	Warnings []string `mapstructure:"-"`

	// File is the configuration file that was read, or "" if none was.
	File string `mapstructure:"-"`
	// Unknown lists keys present in the file or flags that plugind does
	// not use (prestd's pg.* keys, say). They are not an error.
	Unknown []string `mapstructure:"-"`
}

// MiddlewareRef names a middleware plugin: symbol <Func>MiddlewareLoad in
// plugin <File>.
type MiddlewareRef struct {
	File string `mapstructure:"file"`
	Func string `mapstructure:"func"`
}

// PluginConfig is one [plugin.<name>] table: limits the server enforces,
// and settings it hands to the plugin.
type PluginConfig struct {
	// Settings are the plugin's own, [plugin.<name>.settings]: JSON-like
	// values, keys lower-cased (configuration keys are case-insensitive).
	Settings map[string]any `mapstructure:"settings"`
	// Timeout bounds one call: past it the client gets 504 (0: none).
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxConcurrency bounds concurrent standard-ABI calls; further
	// requests get 429 at once (0: no bound).
	MaxConcurrency int `mapstructure:"maxconcurrency"`
	// Methods, if set, are the only methods served; others get 405.
	Methods []string `mapstructure:"methods"`
	// MaxBodyBytes bounds request bodies: larger ones get 413 (0: none).
	MaxBodyBytes int64 `mapstructure:"maxbodybytes"`
	// APIKeys, if set, are the keys this plugin accepts besides the
	// operator keys (auth.apikeys).
	APIKeys []string `mapstructure:"apikeys"`
	// JWT lets a plugin with keys of its own accept tokens too.
	JWT bool `mapstructure:"jwt"`
	// CORS, if AllowOrigin is set, replaces the global CORS for this
	// plugin.
	CORS CORS `mapstructure:"cors"`
	// Isolation overrides plugins.isolation for this plugin ("": the
	// default).
	Isolation string `mapstructure:"isolation"`
	// Processes is how many children serve an isolated plugin (0: one);
	// calls go to the least busy, lifting a prestd-ABI plugin's one call
	// at a time.
	Processes int `mapstructure:"processes"`
	// Copies is how many copies of an in-process prestd-ABI plugin to
	// load (0: one), each with its own package globals, so that as many
	// calls run at once; 1 to MaxCopies, or 0 (unset): one.
	Copies int `mapstructure:"copies"`
}

// MaxCopies bounds [plugin.<name>] copies: each copy is a build and a
// .so in memory for good. It mirrors build.MaxCopies; config does not
// import the build pipeline.
const MaxCopies = 64

// HTTP configures the listener.
type HTTP struct {
	Host string `mapstructure:"host"`
	Port int    `mapstructure:"port"`
	// Timeout is prestd's http.timeout, in seconds: the default of
	// ReadTimeout and WriteTimeout.
	Timeout           int           `mapstructure:"timeout"`
	ReadHeaderTimeout time.Duration `mapstructure:"readheadertimeout"`
	ReadTimeout       time.Duration `mapstructure:"readtimeout"`
	WriteTimeout      time.Duration `mapstructure:"writetimeout"`
	IdleTimeout       time.Duration `mapstructure:"idletimeout"`
	// KeepAlive turns HTTP keep-alive on.
	KeepAlive      bool  `mapstructure:"keepalive"`
	MaxHeaderBytes int   `mapstructure:"maxheaderbytes"`
	MaxBodyBytes   int64 `mapstructure:"maxbodybytes"`
	// SecurityHeaders adds nosniff, frame, referrer and CSP headers (and
	// HSTS under TLS) to every response.
	SecurityHeaders bool `mapstructure:"securityheaders"`
	// CSP is the Content-Security-Policy of responses.
	CSP string `mapstructure:"csp"`
	// Gzip compresses responses of at least GzipMinBytes for clients that
	// accept it.
	Gzip         bool `mapstructure:"gzip"`
	GzipMinBytes int  `mapstructure:"gzipminbytes"`
	// TrustedProxies are the CIDRs (or addresses) of the load balancers
	// whose X-Forwarded-For and Forwarded headers name the client; none
	// by default: the peer is the client. See TrustedProxyPrefixes.
	TrustedProxies []string `mapstructure:"trustedproxies"`
}

// TrustedProxyPrefixes is TrustedProxies parsed (Validate has checked
// them); a bare address is a prefix of its full length.
func (h HTTP) TrustedProxyPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(h.TrustedProxies))
	for _, s := range h.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Auth configures API keys, and which routes stay open for probes.
type Auth struct {
	// APIKeys are accepted in X-API-Key or Authorization: Bearer. A
	// plugin's own [plugin.<name>] apikeys replace them for that plugin.
	APIKeys []string `mapstructure:"apikeys"`
	// Probes and Metrics require auth too when true.
	Probes  bool `mapstructure:"probes"`
	Metrics bool `mapstructure:"metrics"`
}

// JWT is prestd's JWT configuration: with a key, requests need a valid
// token (Authorization: Bearer) unless their path matches the whitelist.
type JWT struct {
	Key       string   `mapstructure:"key"`
	Algo      string   `mapstructure:"algo"`
	Default   bool     `mapstructure:"default"`
	Whitelist []string `mapstructure:"whitelist"`
}

// CORS is prestd's CORS configuration. plugind answers CORS only when
// AllowOrigin is set.
type CORS struct {
	AllowOrigin      []string `mapstructure:"alloworigin"`
	AllowMethods     []string `mapstructure:"allowmethods"`
	AllowHeaders     []string `mapstructure:"allowheaders"`
	AllowCredentials bool     `mapstructure:"allowcredentials"`
}

// HTTPS is prestd's TLS configuration.
type HTTPS struct {
	Mode bool   `mapstructure:"mode"`
	Cert string `mapstructure:"cert"`
	Key  string `mapstructure:"key"`
}

// Bus configures the message bus.
type Bus struct {
	// Events serves GET /_EVENTS, a Server-Sent Events stream of bus
	// traffic, for debugging (behind auth like every route).
	Events bool `mapstructure:"events"`
	// MaxStreams bounds the open event streams, /_EVENTS and the admin
	// page's /_ADMIN/events together; more get 503.
	MaxStreams int `mapstructure:"maxstreams"`
	// WriteTimeout bounds each write to either kind of stream: a client
	// that stops reading is dropped.
	WriteTimeout time.Duration `mapstructure:"writetimeout"`
}

// Tasks configures plugins' background tasks.
type Tasks struct {
	// Store is "bolt" (a file in Dir, one process's) or "postgres" (a
	// database at DSN, shared by replicas).
	Store     string        `mapstructure:"store"`
	DSN       string        `mapstructure:"dsn"`
	Dir       string        `mapstructure:"dir"` // default <pluginpath>/.plugind/tasks
	Workers   int           `mapstructure:"workers"`
	Queue     int           `mapstructure:"queue"`
	Timeout   time.Duration `mapstructure:"timeout"`
	Retention time.Duration `mapstructure:"retention"`
	// MaxFinished caps the finished tasks kept; the oldest go first.
	MaxFinished int `mapstructure:"maxfinished"`
	// Lease: with postgres, a replica that dies has its tasks recorded
	// interrupted within it.
	Lease time.Duration `mapstructure:"lease"`
}

// Log configures the process's log.
type Log struct {
	// Format is LogAuto (console on a terminal, else JSON), LogConsole
	// or LogJSON.
	Format string `mapstructure:"format"`
}

// Log formats.
const (
	LogAuto    = "auto"
	LogConsole = "console"
	LogJSON    = "json"
)

// Admin configures the /_ADMIN/ web page.
type Admin struct {
	// Enabled serves the page, an operator route (plugind dev turns it
	// on).
	Enabled bool `mapstructure:"enabled"`
	// PProf serves the runtime's profiles under /_ADMIN/pprof/, an
	// operator route, whether the page is on or not.
	PProf bool `mapstructure:"pprof"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Enabled bool   `mapstructure:"enabled"`
	Path    string `mapstructure:"path"`
}

// Plugins configures how plugins are built and loaded.
type Plugins struct {
	// Build is "auto" (build plugins on demand with the go command) or
	// "off" (prebuilt mode: never run the go command or a C compiler;
	// serve only what `plugind build` put in the cache, which may be
	// read-only).
	Build string `mapstructure:"build"`
	// CacheDir receives built artifacts; default PluginPath/.plugind.
	CacheDir string `mapstructure:"cachedir"`
	// ModuleDir is the Go module plugins are built in, so that they share
	// the server's dependency versions. Default: the server's own source
	// tree, found from the working directory or the executable.
	ModuleDir string `mapstructure:"moduledir"`
	// Go is the go command used to build plugins.
	Go string `mapstructure:"go"`
	// BuildTimeout bounds one plugin build.
	BuildTimeout time.Duration `mapstructure:"buildtimeout"`
	// BuildWait bounds how long a request waits for a build (then 503).
	// It must be less than HTTP.WriteTimeout; unset, it is 5/6 of it.
	BuildWait time.Duration `mapstructure:"buildwait"`
	// Reload is "on-change" (rebuild and swap in a plugin when its source
	// changes) or "off" (load once, as prestd). Default: on-change in
	// debug mode, off otherwise.
	Reload string `mapstructure:"reload"`
	// WarmUp compiles the standard library in plugin mode at start-up,
	// in the background, so the first build takes a second, not 40.
	WarmUp bool `mapstructure:"warmup"`
	// Prebuild builds and loads every discovered plugin at start-up.
	Prebuild bool `mapstructure:"prebuild"`
	// LoadCheckTimeout bounds the child process that opens each new
	// artifact before the server does (0 disables the check).
	LoadCheckTimeout time.Duration `mapstructure:"loadchecktimeout"`
	// CacheMaxMB bounds the artifact cache; the least recently used
	// artifacts are deleted at start-up.
	CacheMaxMB int64 `mapstructure:"cachemaxmb"`
	// MemoryBudgetMB bounds the artifacts loaded into the process (Go
	// cannot unload them); 0 means none. Exceeding it logs a warning, or
	// with RefuseOverBudget refuses further versions.
	MemoryBudgetMB   int64 `mapstructure:"memorybudgetmb"`
	RefuseOverBudget bool  `mapstructure:"refuseoverbudget"`
	// LegacyWait bounds how long a call waits for a legacy-ABI plugin
	// busy with another call (they are serialised) before it gets 503.
	LegacyWait time.Duration `mapstructure:"legacywait"`
	// SecretsFile is a TOML file of plugin secrets: [<name>] key = "...".
	SecretsFile string `mapstructure:"secretsfile"`
	// Isolation is where plugins run: "inprocess" (a .so in the server),
	// "process" (an executable of their own, see package isolate) or
	// "auto" (in a process where .so plugins cannot load).
	Isolation string `mapstructure:"isolation"`
}

// Build values.
const (
	BuildAuto = "auto"
	BuildOff  = "off"
)

// Isolation values.
const (
	IsolationInProcess = "inprocess"
	IsolationProcess   = "process"
	IsolationAuto      = "auto"
)

// Reload values.
const (
	ReloadOnChange = "on-change"
	ReloadOff      = "off"
)

// Lifecycle configures start-up and shutdown.
type Lifecycle struct {
	// StartupRequestPauseTimeout bounds how long a request that arrives
	// while the server starts waits for it (then 503).
	StartupRequestPauseTimeout time.Duration `mapstructure:"startupRequestPauseTimeout"`
	// ServerShutdownDelay is how long the server keeps serving after a
	// shutdown signal, with /readyz failing, so load balancers drain it.
	ServerShutdownDelay time.Duration `mapstructure:"serverShutdownDelay"`
	// ServerShutdownTimeout bounds how long in-flight requests may run
	// after that.
	ServerShutdownTimeout time.Duration `mapstructure:"serverShutdownTimeout"`
}

// SrcDir is the directory plugin sources are read from.
func (c Config) SrcDir() string { return filepath.Join(c.PluginPath, "src") }

// Addr is the listen address.
func (c Config) Addr() string {
	return fmt.Sprintf("%s:%d", c.HTTP.Host, c.HTTP.Port)
}

// defaults are prestd's where the key is shared. Every key plugind reads
// has a default here: viper only maps environment variables onto keys it
// knows.
var defaults = map[string]any{
	"pluginpath":                           "./lib",
	"debug":                                false,
	"http.host":                            "0.0.0.0",
	"http.port":                            3000,
	"plugins.build":                        BuildAuto,
	"plugins.cachedir":                     "",
	"plugins.moduledir":                    "",
	"plugins.go":                           "go",
	"plugins.buildtimeout":                 "5m",
	"plugins.buildwait":                    "0s", // 5/6 of http.writetimeout: 50 s of prestd's 60
	"plugins.reload":                       "",
	"plugins.warmup":                       true,
	"plugins.prebuild":                     false,
	"plugins.loadchecktimeout":             "10s",
	"plugins.cachemaxmb":                   1024,
	"plugins.memorybudgetmb":               512,
	"plugins.refuseoverbudget":             false,
	"plugins.legacywait":                   "30s",
	"plugins.secretsfile":                  "",
	"plugins.isolation":                    IsolationInProcess,
	"lifecycle.servershutdowntimeout":      "20s",
	"lifecycle.startuprequestpausetimeout": "5s",
	"lifecycle.servershutdowndelay":        "0s",
	"http.timeout":                         60,
	"http.readheadertimeout":               "10s",
	"http.readtimeout":                     "0s",
	"http.writetimeout":                    "0s",
	"http.idletimeout":                     "120s",
	"http.keepalive":                       true,
	"http.maxheaderbytes":                  1 << 20,
	"http.maxbodybytes":                    10 << 20,
	"http.securityheaders":                 true,
	"http.csp":                             "default-src 'none'; frame-ancestors 'none'",
	"http.gzip":                            true,
	"http.gzipminbytes":                    1024,
	"auth.apikeys":                         []string{},
	"auth.probes":                          false,
	"auth.metrics":                         false,
	"jwt.key":                              "",
	"jwt.algo":                             "HS256",
	"jwt.default":                          false, // prestd 2.x
	"jwt.whitelist":                        []string{`^/auth$`},
	"cors.alloworigin":                     []string{},
	"cors.allowmethods":                    []string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"},
	"cors.allowheaders":                    []string{"Content-Type"},
	"cors.allowcredentials":                true,
	"https.mode":                           false,
	"https.cert":                           "/etc/certs/cert.crt",
	"https.key":                            "/etc/certs/cert.key",
	"metrics.enabled":                      true,
	"bus.events":                           false,
	"admin.enabled":                        false,
	"admin.pprof":                          false,
	"tasks.store":                          "bolt",
	"tasks.dsn":                            "",
	"tasks.lease":                          "15s",
	"bus.maxstreams":                       16,
	"bus.writetimeout":                     "10s",
	"http.trustedproxies":                  []string{},
	"tasks.dir":                            "",
	"tasks.workers":                        4,
	"tasks.queue":                          64,
	"tasks.timeout":                        "10m",
	"tasks.retention":                      "1h",
	"tasks.maxfinished":                    1000,
	"metrics.path":                         "/metrics",
	"log.format":                           LogAuto,
}

// env lists the environment variables of each key, first match wins.
// Keys not listed here get PREST_<KEY> with dots as underscores.
var envNames = map[string][]string{
	"http.port": {"PREST_HTTP_PORT", "PORT"},
}

// flagKeys maps command-line flags onto keys.
var flagKeys = map[string]string{
	"pluginpath": "pluginpath",
	"host":       "http.host",
	"port":       "http.port",
	"debug":      "debug",
}

// AddFlags registers the flags Load understands on fs.
func AddFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "configuration file (default ./prest.toml; env PREST_CONF)")
	fs.String("pluginpath", "", "plugin directory, sources in <pluginpath>/src (env PREST_PLUGINPATH)")
	fs.String("host", "", "listen host (env PREST_HTTP_HOST)")
	fs.Int("port", 0, "listen port (env PREST_HTTP_PORT or PORT)")
	fs.Bool("debug", false, "debug mode: verbose logs, compiler output in error bodies (env PREST_DEBUG)")
}

// LoadOption changes what Load makes of the configuration.
type LoadOption func(*loadOptions)

type loadOptions struct {
	dev bool
}

// ForDev is plugind dev's configuration: debug, hot reload (on-change)
// and the admin page on, whatever the file, environment or flags say,
// and console logs unless log.format says "json".
func ForDev() LoadOption { return func(o *loadOptions) { o.dev = true } }

// Load reads the configuration. fs may be nil; environ is os.Environ()
// in production.
func Load(fs *pflag.FlagSet, environ []string, opts ...LoadOption) (Config, error) {
	var o loadOptions
	for _, opt := range opts {
		opt(&o)
	}
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	getenv := func(k string) string { return env[k] }
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	// Variables are resolved here and set as overrides, rather than by
	// viper.AutomaticEnv, so that Load reads the environment it is given.
	for k := range defaults {
		names, ok := envNames[k]
		if !ok {
			names = []string{"PREST_" + strings.ToUpper(strings.ReplaceAll(k, ".", "_"))}
		}
		for _, n := range names {
			if val := getenv(n); val != "" {
				v.Set(k, val)
				break
			}
		}
	}
	if fs != nil {
		for name, key := range flagKeys {
			if f := fs.Lookup(name); f != nil && f.Changed {
				v.Set(key, f.Value.String())
			}
		}
	}

	file, explicit := getenv("PREST_CONF"), false
	if fs != nil {
		if f := fs.Lookup("config"); f != nil && f.Changed {
			file = f.Value.String()
		}
	}
	if file != "" {
		explicit = true
	} else {
		file = "./prest.toml"
	}
	v.SetConfigFile(file)
	v.SetConfigType("toml")
	var cfg Config
	if err := v.ReadInConfig(); err != nil {
		if explicit || !errors.Is(err, os.ErrNotExist) {
			return cfg, fmt.Errorf("config file %s: %w", file, err)
		}
	} else {
		cfg.File = file
	}
	if o.dev {
		v.Set("debug", true)
		v.Set("plugins.reload", ReloadOnChange)
		v.Set("admin.enabled", true)
		v.Set("admin.pprof", true)
		if strings.EqualFold(v.GetString("log.format"), LogAuto) {
			v.Set("log.format", LogConsole)
		}
	}

	if err := bareDurations(v, "", reflect.TypeFor[Config]()); err != nil {
		return cfg, err
	}
	if err := v.Unmarshal(&cfg); err != nil {
		return cfg, &decodeError{err: err}
	}
	if err := cfg.loadPlugins(v, env); err != nil {
		return cfg, err
	}
	if cfg.Plugins.Reload == "" {
		cfg.Plugins.Reload = ReloadOff
		if cfg.Debug {
			cfg.Plugins.Reload = ReloadOnChange
		}
	}
	if cfg.Debug && cfg.JWT.Default && cfg.JWT.Key != "" {
		// prestd skips its JWT middleware in debug mode; so does plugind,
		// but says so.
		cfg.JWT.Default = false
		cfg.Warnings = append(cfg.Warnings, "debug is on: JWT checking is off (as in prestd); turn debug off to check tokens")
	}
	if cfg.HTTP.ReadTimeout == 0 {
		cfg.HTTP.ReadTimeout = time.Duration(cfg.HTTP.Timeout) * time.Second
	}
	if cfg.HTTP.WriteTimeout == 0 {
		cfg.HTTP.WriteTimeout = time.Duration(cfg.HTTP.Timeout) * time.Second
	}
	if cfg.Plugins.BuildWait == 0 {
		// A margin under the write timeout, so that the 503 of a request
		// that waited for a build is written before the connection is cut.
		cfg.Plugins.BuildWait = cfg.HTTP.WriteTimeout * 5 / 6
	}
	if cfg.Tasks.Dir == "" && cfg.Plugins.Build == BuildOff && cfg.Tasks.Store != "postgres" {
		// The default lies in the plugin path, which prebuilt mode
		// never writes to (it may be read-only, as in an image). A
		// PostgreSQL store needs no directory.
		return cfg, errors.New(`config: tasks.dir must be set with plugins.build = "off" and tasks.store = "bolt": the default, <pluginpath>/.plugind/tasks, is in the plugin directory, which prebuilt mode never writes to; point it at a writable directory (env PREST_TASKS_DIR)`)
	}
	if cfg.Tasks.Dir == "" {
		cfg.Tasks.Dir = filepath.Join(cfg.PluginPath, ".plugind", "tasks")
	}
	if cfg.Plugins.CacheDir == "" {
		cfg.Plugins.CacheDir = filepath.Join(cfg.PluginPath, ".plugind")
	}
	for _, k := range v.AllKeys() {
		if _, ok := defaults[k]; !ok && !strings.HasPrefix(k, "plugin.") && k != "pluginmiddlewarelist" {
			cfg.Unknown = append(cfg.Unknown, k)
		}
	}
	slices.Sort(cfg.Unknown)
	return cfg, cfg.Validate()
}

// Validate reports the first invalid value, naming its key.
func (c Config) Validate() error {
	switch {
	case c.PluginPath == "":
		return errors.New("config: pluginpath must not be empty")
	case c.HTTP.Port < 0 || c.HTTP.Port > 65535:
		return fmt.Errorf("config: http.port %d is out of range 0-65535", c.HTTP.Port)
	case c.Plugins.Build != BuildAuto && c.Plugins.Build != BuildOff:
		return fmt.Errorf("config: plugins.build must be %q or %q, got %q", BuildAuto, BuildOff, c.Plugins.Build)
	case c.Plugins.Go == "":
		return errors.New("config: plugins.go must name the go command")
	// The HTTP timeouts before plugins.buildwait: unset, buildwait is
	// derived from them, and a bad http.timeout must be reported as
	// itself, not as the buildwait it produced.
	case c.HTTP.Timeout <= 0:
		return fmt.Errorf("config: http.timeout must be a positive number of seconds, got %d", c.HTTP.Timeout)
	case c.HTTP.ReadHeaderTimeout <= 0 || c.HTTP.ReadTimeout <= 0 || c.HTTP.WriteTimeout <= 0 || c.HTTP.IdleTimeout <= 0:
		return fmt.Errorf("config: http.readheadertimeout, readtimeout, writetimeout and idletimeout must be positive (slow clients must be cut off), got %s, %s, %s, %s",
			c.HTTP.ReadHeaderTimeout, c.HTTP.ReadTimeout, c.HTTP.WriteTimeout, c.HTTP.IdleTimeout)
	case c.Plugins.BuildTimeout <= 0:
		return fmt.Errorf("config: plugins.buildtimeout must be positive, got %s", c.Plugins.BuildTimeout)
	case c.Plugins.BuildWait <= 0:
		return fmt.Errorf("config: plugins.buildwait must be positive, got %s", c.Plugins.BuildWait)
	case c.HTTP.WriteTimeout > 0 && c.Plugins.BuildWait >= c.HTTP.WriteTimeout:
		// The server would cut the connection before the 503 is written.
		return fmt.Errorf("config: plugins.buildwait (%s) must be less than http.writetimeout (%s, from http.timeout unless set): a request waiting for a build would lose its connection before its 503",
			c.Plugins.BuildWait, c.HTTP.WriteTimeout)
	case c.Plugins.Reload != ReloadOnChange && c.Plugins.Reload != ReloadOff:
		return fmt.Errorf("config: plugins.reload must be %q or %q, got %q", ReloadOnChange, ReloadOff, c.Plugins.Reload)
	case c.Plugins.LoadCheckTimeout < 0:
		return fmt.Errorf("config: plugins.loadchecktimeout must not be negative, got %s", c.Plugins.LoadCheckTimeout)
	case c.Plugins.CacheMaxMB <= 0:
		return fmt.Errorf("config: plugins.cachemaxmb must be positive, got %d", c.Plugins.CacheMaxMB)
	case c.Plugins.MemoryBudgetMB < 0:
		return fmt.Errorf("config: plugins.memorybudgetmb must not be negative, got %d", c.Plugins.MemoryBudgetMB)
	case c.Plugins.LegacyWait <= 0:
		return fmt.Errorf("config: plugins.legacywait must be positive, got %s", c.Plugins.LegacyWait)
	case !slices.Contains([]string{IsolationInProcess, IsolationProcess, IsolationAuto}, c.Plugins.Isolation):
		return fmt.Errorf("config: plugins.isolation must be %q, %q or %q, got %q", IsolationInProcess, IsolationProcess, IsolationAuto, c.Plugins.Isolation)
	case c.HTTP.MaxHeaderBytes <= 0:
		return fmt.Errorf("config: http.maxheaderbytes must be positive, got %d", c.HTTP.MaxHeaderBytes)
	case c.HTTP.MaxBodyBytes <= 0:
		return fmt.Errorf("config: http.maxbodybytes must be positive, got %d", c.HTTP.MaxBodyBytes)
	case c.HTTP.GzipMinBytes < 0:
		return fmt.Errorf("config: http.gzipminbytes must not be negative, got %d", c.HTTP.GzipMinBytes)
	case c.JWT.Key != "" && !slices.Contains([]string{"HS256", "HS384", "HS512"}, c.JWT.Algo):
		return fmt.Errorf("config: jwt.algo must be HS256, HS384 or HS512, got %q", c.JWT.Algo)
	case c.HTTPS.Mode && (c.HTTPS.Cert == "" || c.HTTPS.Key == ""):
		return errors.New("config: https.mode needs https.cert and https.key")
	case c.Log.Format != LogAuto && c.Log.Format != LogConsole && c.Log.Format != LogJSON:
		return fmt.Errorf("config: log.format must be %q, %q or %q, got %q", LogAuto, LogConsole, LogJSON, c.Log.Format)
	case c.Metrics.Enabled && !strings.HasPrefix(c.Metrics.Path, "/"):
		return fmt.Errorf("config: metrics.path must start with /, got %q", c.Metrics.Path)
	case c.Lifecycle.StartupRequestPauseTimeout < 0 || c.Lifecycle.ServerShutdownDelay < 0:
		return fmt.Errorf("config: lifecycle.startupRequestPauseTimeout and serverShutdownDelay must not be negative")
	case c.Tasks.Workers <= 0 || c.Tasks.Queue < 0:
		return fmt.Errorf("config: tasks.workers must be positive and tasks.queue not negative, got %d and %d", c.Tasks.Workers, c.Tasks.Queue)
	case c.Tasks.Timeout < 0 || c.Tasks.Retention <= 0:
		return fmt.Errorf("config: tasks.timeout must not be negative and tasks.retention must be positive, got %s and %s", c.Tasks.Timeout, c.Tasks.Retention)
	case c.Tasks.MaxFinished <= 0:
		return fmt.Errorf("config: tasks.maxfinished must be positive, got %d", c.Tasks.MaxFinished)
	case c.Tasks.Store != "bolt" && c.Tasks.Store != "postgres":
		return fmt.Errorf("config: tasks.store must be \"bolt\" or \"postgres\", got %q", c.Tasks.Store)
	case c.Tasks.Store == "postgres" && c.Tasks.DSN == "":
		return errors.New("config: tasks.store = \"postgres\" needs tasks.dsn (env PREST_TASKS_DSN)")
	case c.Tasks.Lease < time.Second:
		return fmt.Errorf("config: tasks.lease must be at least 1s, got %s", c.Tasks.Lease)
	case c.Lifecycle.ServerShutdownTimeout < 0:
		return fmt.Errorf("config: lifecycle.serverShutdownTimeout must not be negative, got %s", c.Lifecycle.ServerShutdownTimeout)
	case c.Bus.MaxStreams <= 0 || c.Bus.WriteTimeout <= 0:
		return fmt.Errorf("config: bus.maxstreams and bus.writetimeout must be positive, got %d and %s", c.Bus.MaxStreams, c.Bus.WriteTimeout)
	}
	if err := checkOrigins("cors.alloworigin", c.CORS.AllowOrigin); err != nil {
		return err
	}
	if err := checkKeys("auth.apikeys", c.Auth.APIKeys); err != nil {
		return err
	}
	for i, p := range c.HTTP.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			return fmt.Errorf("config: http.trustedproxies[%d] must be a CIDR or an address, got %q", i, p)
		}
	}
	for i, m := range c.Middleware {
		if !validName(m.File) || !validName(m.Func) || strings.Contains(m.Func, "-") {
			return fmt.Errorf("config: pluginmiddlewarelist[%d] needs file and func names (letters, digits, '_'), got file %q func %q", i, m.File, m.Func)
		}
	}
	for _, w := range c.JWT.Whitelist {
		if _, err := regexp.Compile(w); err != nil {
			return fmt.Errorf("config: jwt.whitelist: %q is not a regular expression: %w", w, err)
		}
	}
	for name, p := range c.PluginConfigs {
		key := "plugin." + name
		switch {
		case !validName(name):
			return fmt.Errorf("config: [%s]: %q is not a plugin name", key, name)
		case p.Timeout < 0:
			return fmt.Errorf("config: %s.timeout must not be negative, got %s", key, p.Timeout)
		case p.MaxConcurrency < 0:
			return fmt.Errorf("config: %s.maxconcurrency must not be negative, got %d", key, p.MaxConcurrency)
		case p.MaxBodyBytes < 0:
			return fmt.Errorf("config: %s.maxbodybytes must not be negative, got %d", key, p.MaxBodyBytes)
		case p.Isolation != "" && !slices.Contains([]string{IsolationInProcess, IsolationProcess, IsolationAuto}, p.Isolation):
			return fmt.Errorf("config: %s.isolation must be %q, %q or %q, got %q", key, IsolationInProcess, IsolationProcess, IsolationAuto, p.Isolation)
		case p.Processes < 0:
			return fmt.Errorf("config: %s.processes must not be negative, got %d", key, p.Processes)
		case p.Copies < 0 || p.Copies > MaxCopies:
			return fmt.Errorf("config: %s.copies must be between 1 and %d, or 0 for one copy (as when unset), got %d: each copy of a prestd-ABI plugin is a build and a library loaded for good", key, MaxCopies, p.Copies)
		}
		if err := checkOrigins(key+".cors.alloworigin", p.CORS.AllowOrigin); err != nil {
			return err
		}
		if err := checkKeys(key+".apikeys", p.APIKeys); err != nil {
			return err
		}
		for _, m := range p.Methods {
			if m == "" || strings.ToUpper(m) != m || strings.ContainsFunc(m, func(r rune) bool { return r < 'A' || r > 'Z' }) {
				return fmt.Errorf("config: %s.methods: %q is not an upper-case HTTP method", key, m)
			}
		}
	}
	return nil
}

// validName mirrors the loader's plugin name rule; config cannot import
// the loader.
// checkKeys reports an empty API key: it could never be sent, and the
// authenticator skips it, so apikeys = [""] (or an unset variable in a
// list) would leave a route as open as no keys at all while the file
// reads as guarded.
func checkKeys(key string, keys []string) error {
	for i, k := range keys {
		if strings.TrimSpace(k) == "" {
			return fmt.Errorf("config: %s[%d] is empty: an API key must not be blank", key, i)
		}
	}
	return nil
}

// checkOrigins reports the first of origins that CORS could never match:
// a browser's Origin header is scheme://host[:port], with no path, not
// even "/", so "app.example" or "https://app.example/" would be accepted
// and then refuse every request. "*" (any origin), "null" and one "*"
// inside the host (https://*.example.com), as rs/cors matches them, are
// valid.
func checkOrigins(key string, origins []string) error {
	for i, o := range origins {
		if o == "*" || o == "null" {
			continue
		}
		u, err := url.Parse(strings.Replace(o, "*", "x", 1))
		if err != nil || strings.Count(o, "*") > 1 ||
			u.Scheme == "" || u.Host == "" || u.Opaque != "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#") {
			return fmt.Errorf("config: %s[%d] must be an origin, scheme://host[:port] with no path (not even a trailing /), or \"*\", got %q", key, i, o)
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// bareDurations reports the first duration key of t, a struct read from
// v under prefix, that v holds as a bare number other than 0. TOML gives
// buildtimeout = 300 as an integer, which decodes to 300 nanoseconds
// (a string without a unit is refused by the decoder, but a number is
// not); http.timeout, prestd's, is the one timeout in seconds.
func bareDurations(v *viper.Viper, prefix string, t reflect.Type) error {
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		switch {
		case f.Type == reflect.TypeFor[time.Duration]():
			val := reflect.ValueOf(v.Get(key))
			switch val.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
				reflect.Float32, reflect.Float64:
				if !val.IsZero() {
					return fmt.Errorf("config: %s must be a duration with a unit, as a string (\"%vs\" for %v seconds), got the bare number %v", key, val, val, val)
				}
			}
		case f.Type.Kind() == reflect.Struct:
			if err := bareDurations(v, key+".", f.Type); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeError flattens mapstructure's multi-line report ("decoding failed
// due to the following error(s):" and one line per key) into one line
// that starts with the key.
type decodeError struct{ err error }

func (e *decodeError) Unwrap() error { return e.err }

func (e *decodeError) Error() string {
	var lines []string
	for _, line := range strings.Split(e.err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "decoding failed") {
			continue
		}
		lines = append(lines, line)
	}
	return "config: " + strings.Join(lines, "; ")
}
