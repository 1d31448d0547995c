package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/spf13/viper"
)

// pluginKeys are the keys a [plugin.<name>] table may hold.
var pluginKeys = []string{"settings", "timeout", "maxconcurrency", "methods", "maxbodybytes", "apikeys", "jwt", "cors", "isolation", "processes", "copies"}

// loadPlugins reads the [plugin.<name>] tables and the plugin secrets.
func (c *Config) loadPlugins(v *viper.Viper, env map[string]string) error {
	c.PluginConfigs = make(map[string]PluginConfig)
	for name := range v.GetStringMap("plugin") {
		sub := v.Sub("plugin." + name)
		if sub == nil {
			return fmt.Errorf("config: plugin.%s must be a table", name)
		}
		for _, k := range sub.AllKeys() {
			top, _, _ := strings.Cut(k, ".")
			if !slices.Contains(pluginKeys, top) {
				return fmt.Errorf("config: plugin.%s.%s is not a plugin key (%s); the plugin's own settings go in [plugin.%s.settings]", name, k, strings.Join(pluginKeys, ", "), name)
			}
		}
		if err := bareDurations(v, "plugin."+name+".", reflect.TypeFor[PluginConfig]()); err != nil {
			return err
		}
		var pc PluginConfig
		if err := sub.Unmarshal(&pc); err != nil {
			return fmt.Errorf("config: plugin.%s: %w", name, &decodeError{err: err})
		}
		c.PluginConfigs[name] = pc
	}

	c.secretEnv = make(map[string]string)
	for k, val := range env {
		if rest, ok := strings.CutPrefix(k, "PREST_PLUGIN_"); ok && val != "" {
			c.secretEnv[rest] = val
		}
	}
	if c.Plugins.SecretsFile != "" {
		f := viper.New()
		f.SetConfigFile(c.Plugins.SecretsFile)
		f.SetConfigType("toml")
		if err := f.ReadInConfig(); err != nil {
			return fmt.Errorf("config: plugins.secretsfile %s: %w", c.Plugins.SecretsFile, err)
		}
		c.secretFile = make(map[string]map[string]string)
		for name := range f.AllSettings() {
			table := f.GetStringMapString(name)
			if len(table) == 0 {
				return fmt.Errorf("config: plugins.secretsfile: [%s] must be a table of strings", name)
			}
			c.secretFile[name] = table
		}
	}
	return nil
}

// Plugin returns the [plugin.<name>] table of name (zero if none).
func (c Config) Plugin(name string) PluginConfig {
	return c.PluginConfigs[strings.ToLower(name)]
}

// Isolation is where plugin name runs: its [plugin.<name>] isolation, or
// plugins.isolation.
func (c Config) Isolation(name string) string {
	if i := c.Plugin(name).Isolation; i != "" {
		return i
	}
	return c.Plugins.Isolation
}

// Secrets returns plugin name's secrets, keys lower-cased: the secrets
// file's [name] table, overridden by environment variables. NAME below is
// the plugin name upper-cased with '-' as '_':
//
//   - PREST_PLUGIN_<NAME>__<KEY> (two underscores): the name ends at the
//     first double underscore, so the variable belongs to one plugin only.
//   - PREST_PLUGIN_<NAME>_<KEY>, the older form, is read too, but it is
//     ambiguous when one plugin's NAME followed by '_' begins another's
//     (PREST_PLUGIN_A_B_KEY fits plugin "a" and plugin "a_b"): CheckSecretEnv
//     refuses such a variable at start-up. It never holds "__".
//
// The double-underscore form wins over the older one for the same key.
func (c Config) Secrets(name string) map[string]string {
	out := make(map[string]string)
	for k, v := range c.secretFile[strings.ToLower(name)] {
		out[strings.ToLower(k)] = v
	}
	env := EnvName(name)
	for k, v := range c.secretEnv {
		if key, ok := oldFormKey(k, env); ok {
			out[key] = v
		}
	}
	for k, v := range c.secretEnv {
		if n, key, ok := newForm(k); ok && n == env {
			out[key] = v
		}
	}
	return out
}

// EnvName is plugin name as it appears in PREST_PLUGIN_<NAME>__<KEY>.
func EnvName(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// newForm splits NAME__KEY (the variable without PREST_PLUGIN_).
func newForm(v string) (name, key string, ok bool) {
	name, key, ok = strings.Cut(v, "__")
	if !ok || name == "" || key == "" {
		return "", "", false
	}
	return name, strings.ToLower(key), true
}

// oldFormKey is the key NAME_KEY (the variable without PREST_PLUGIN_)
// gives the plugin whose NAME is env, if it is one of its.
func oldFormKey(v, env string) (string, bool) {
	if strings.Contains(v, "__") {
		return "", false
	}
	key, ok := strings.CutPrefix(v, env+"_")
	if !ok || key == "" {
		return "", false
	}
	return strings.ToLower(key), true
}

// CheckSecretEnv refuses PREST_PLUGIN_ variables that would reach more
// than one of the plugins names: an older-form variable that fits two
// plugins, or any variable for two plugins whose names differ only in
// case or in '-' against '_'. The server calls it with the plugins it
// finds at start-up.
func (c Config) CheckSecretEnv(names []string) error {
	vars := slices.Sorted(maps.Keys(c.secretEnv))
	names = slices.Sorted(slices.Values(names))
	byEnv := make(map[string]string) // NAME -> first plugin of that NAME
	for _, name := range names {
		env := EnvName(name)
		other, seen := byEnv[env]
		if !seen {
			byEnv[env] = name
			continue
		}
		for _, v := range vars {
			n, _, isNew := newForm(v)
			if _, isOld := oldFormKey(v, env); (isNew && n == env) || isOld {
				return fmt.Errorf("config: plugins %q and %q both read PREST_PLUGIN_%s: rename one of them, or give their secrets in plugins.secretsfile", other, name, v)
			}
		}
	}
	for _, v := range vars {
		var claims []string
		for _, name := range names {
			if key, ok := oldFormKey(v, EnvName(name)); ok {
				claims = append(claims, fmt.Sprintf("%q of plugin %q", key, name))
			}
		}
		if len(claims) > 1 {
			return fmt.Errorf("config: PREST_PLUGIN_%s is ambiguous: it is %s; name the plugin with a double underscore before the key (PREST_PLUGIN_<NAME>__<KEY>)",
				v, strings.Join(claims, " and "))
		}
	}
	return nil
}
