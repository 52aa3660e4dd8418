package main

import (
	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/validation"
)

// swarmEnums is what the engine profile says a swarm may ask for.
type swarmEnums interface {
	Strategies() []string
	Modes() []string
	DefaultStrategy() string
	DefaultMode() string
}

// swarmLimits is the one mapping from the configuration (config.Default's values where the
// file is silent) and the engine's enums to the validator's bounds: the validator has no
// defaults of its own.
func swarmLimits(l config.Limits, e swarmEnums) validation.Limits {
	return validation.Limits{
		MaxObjectiveChars: l.MaxObjectiveChars, MaxObjectiveBytes: l.MaxObjectiveBytes, MaxAgents: l.MaxAgents,
		MaxTimeoutSeconds: l.MaxTimeoutSeconds, DefaultAgents: l.DefaultAgents, DefaultTimeoutSeconds: l.DefaultTimeoutSeconds,
		Strategies: e.Strategies(), Modes: e.Modes(), DefaultStrategy: e.DefaultStrategy(), DefaultMode: e.DefaultMode(),
	}
}
