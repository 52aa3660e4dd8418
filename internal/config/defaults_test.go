package config_test

import (
	"testing"

	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/validation"
)

// TestDefaultsAgreeWithValidation: config.Default is the one source of the swarm limits; the
// validation package's fallbacks for callers without a configuration (the CLI) must be the
// same numbers, or a swarm would get different defaults depending on who validated it.
func TestDefaultsAgreeWithValidation(t *testing.T) {
	c := config.Default().Limits
	v := validation.Limits{}.WithDefaults()
	for _, f := range []struct {
		name        string
		config, val int
	}{
		{"limits.max_objective_chars", c.MaxObjectiveChars, v.MaxObjectiveChars},
		{"limits.max_objective_bytes", c.MaxObjectiveBytes, v.MaxObjectiveBytes},
		{"limits.max_agents", c.MaxAgents, v.MaxAgents},
		{"limits.default_agents", c.DefaultAgents, v.DefaultAgents},
		{"limits.max_timeout_seconds", c.MaxTimeoutSeconds, v.MaxTimeoutSeconds},
		{"limits.default_timeout_seconds", c.DefaultTimeoutSeconds, v.DefaultTimeoutSeconds},
	} {
		if f.config != f.val {
			t.Errorf("%s: config.Default says %d, validation falls back to %d", f.name, f.config, f.val)
		}
	}
}
