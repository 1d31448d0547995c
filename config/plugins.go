package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/viper"
)

// pluginKeys are the keys a [plugin.<name>] table may hold.
var pluginKeys = []string{"settings", "timeout", "maxconcurrency", "methods", "maxbodybytes", "apikeys", "jwt", "cors"}

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

// Secrets returns plugin name's secrets, keys lower-cased: the secrets
// file's [name] table, overridden by PREST_PLUGIN_<NAME>_<KEY> variables
// (NAME upper-cased, '-' as '_'). A variable also matches a plugin whose
// name is a prefix of another's: PREST_PLUGIN_A_B_KEY is "b_key" for
// plugin "a" and "key" for plugin "a_b".
func (c Config) Secrets(name string) map[string]string {
	out := make(map[string]string)
	for k, v := range c.secretFile[strings.ToLower(name)] {
		out[strings.ToLower(k)] = v
	}
	prefix := strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_"
	for k, v := range c.secretEnv {
		if key, ok := strings.CutPrefix(k, prefix); ok && key != "" {
			out[strings.ToLower(key)] = v
		}
	}
	return out
}
