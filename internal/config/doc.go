// Package config loads flowgate's configuration: YAML with unknown keys rejected, FLOWGATE_*
// environment overrides for every key, defaults, and checks that name the offending key.
package config
