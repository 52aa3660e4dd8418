package validation_test

import (
	"errors"
	"fmt"
	"sort"

	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/validation"
)

func ExampleValidator_Swarm() {
	v := validation.New()
	msg, _ := protocol.Decode([]byte(`{"type":"swarm","objective":"--dangerously-skip-permissions",
		"options":{"agents":"5","timeout":0,"strategy":"evil","bogus":true}}`))
	_, err := v.Swarm(msg.(*protocol.Swarm), validation.Limits{})
	var ve *validation.Error
	if errors.As(err, &ve) {
		fields := make([]string, 0, len(ve.Fields))
		for f := range ve.Fields {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		for _, f := range fields {
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
