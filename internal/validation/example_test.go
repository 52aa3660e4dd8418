package validation_test

import (
	"errors"
	"fmt"

	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/validation"
)

func ExampleValidator_Swarm() {
	v := validation.New()
	msg, _ := protocol.Decode([]byte(`{"type":"swarm","objective":"--dangerously-skip-permissions",
		"options":{"agents":"5","timeout":0,"strategy":"evil","bogus":true}}`))
	_, err := v.Swarm(msg.(*protocol.Swarm), validation.Limits{
		MaxObjectiveChars: 1000, MaxObjectiveBytes: 4000, MaxAgents: 20, MaxTimeoutSeconds: 3600,
		DefaultAgents: 3, DefaultTimeoutSeconds: 600, DefaultStrategy: "auto", DefaultMode: "centralized",
		Strategies: []string{"auto", "parallel", "sequential"}, Modes: []string{"centralized", "distributed"},
	})
	var ve *validation.Error
	if errors.As(err, &ve) {
		for _, f := range ve.Names() {
			fmt.Printf("%s: %s\n", f, ve.Fields[f])
		}
	}
	// Output:
	// objective: must not start with '-' or a dash (it would be read as an engine flag)
	// options.agents: must be an integer between 1 and 20
	// options.bogus: is not a known option
	// options.strategy: must be one of: auto, parallel, sequential
	// options.timeout: must be an integer number of seconds between 1 and 3600
}
