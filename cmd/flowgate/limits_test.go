package main

import (
	"testing"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/ratelimit"
	"github.com/flowgate/flowgate/internal/secrets"
)

// TestSwarmLimitsComplete: config.Default with every engine profile gives the validator
// complete bounds (it refuses incomplete ones: it has no defaults of its own), and the numbers
// are config.Default's.
func TestSwarmLimitsComplete(t *testing.T) {
	l := config.Default().Limits
	for _, c := range []engine.Config{
		{Profile: engine.ProfileSim, Command: "/bin/true"},
		{Profile: engine.ProfileClaudeFlowV2, Command: "/bin/true", ClaudeCommand: "/bin/true"},
		{Profile: engine.ProfileClaudeCode, Command: "/bin/true", PermissionMode: engine.PermissionAcceptEdits},
		{Profile: engine.ProfileCustom, Command: "/bin/true", Args: []string{"{objective}"}},
	} {
		t.Run(c.Profile, func(t *testing.T) {
			p, err := engine.New(c, nil, "/bin/true")
			if err != nil {
				t.Fatal(err)
			}
			lim := swarmLimits(l, p)
			if err := lim.Check(); err != nil {
				t.Fatal(err)
			}
			if lim.MaxAgents != l.MaxAgents || lim.DefaultAgents != l.DefaultAgents || lim.MaxObjectiveBytes != l.MaxObjectiveBytes ||
				lim.MaxObjectiveChars != l.MaxObjectiveChars || lim.MaxTimeoutSeconds != l.MaxTimeoutSeconds ||
				lim.DefaultTimeoutSeconds != l.DefaultTimeoutSeconds || lim.DefaultStrategy != p.DefaultStrategy() {
				t.Fatalf("swarmLimits = %+v; not config.Default's limits %+v", lim, l)
			}
		})
	}
}

// TestLibraryDefaultsMatchConfig: the rate limiter, the secrets cache and the audit recorder
// keep documented zero-value defaults (they are used as libraries by tests and tools), but
// the gateway always passes the configured value; this keeps the two from disagreeing.
func TestLibraryDefaultsMatchConfig(t *testing.T) {
	c := config.Default()
	for _, tt := range []struct {
		key          string
		config, pkgs any
	}{
		{"limits.limiter_max_entries", c.Limits.LimiterMaxEntries, ratelimit.DefaultMaxEntries},
		{"secrets.cache_ttl", c.Secrets.CacheTTL, secrets.DefaultCacheTTL},
		{"secrets.max_stale", c.Secrets.MaxStale, secrets.DefaultMaxStale},
		{"secrets.cache_size", c.Secrets.CacheSize, secrets.DefaultMaxEntries},
		{"audit.checkpoint_interval", c.Audit.CheckpointInterval, audit.DefaultCheckpointInterval},
	} {
		if tt.config != tt.pkgs {
			t.Errorf("%s: config.Default says %v, the package falls back to %v", tt.key, tt.config, tt.pkgs)
		}
	}
}
