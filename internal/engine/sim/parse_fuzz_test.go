package sim

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary objectives and one arbitrary argument through the argv, directive
// and environment decoders: they either accept or return a bounded usage error, never panic.
func FuzzParse(f *testing.F) {
	f.Add("write a poem sim:fail sim:pace=0", "--events=3", "5")
	f.Add("sim:events=99999999999999999999", "--rate", "0")
	f.Add("x sim:marker=a/b", "--exit-code=-1", "1h")
	f.Fuzz(func(t *testing.T, objective, arg, env string) {
		for _, args := range [][]string{{"swarm", objective, arg}, {"-p", objective, arg}, {arg, "swarm", objective}} {
			c, err := parse(args, envFunc(map[string]string{"FLOWGATE_SIM_EVENTS": env, "FLOWGATE_SIM_PACE": env}))
			if err != nil {
				if !errors.Is(err, ErrUsage) || len(err.Error()) > 400 {
					t.Fatalf("parse(%q): %v", args, err)
				}
				continue
			}
			// The objective is an argument as given, or the value of -p: in {arg, "swarm",
			// objective} an arg of "-p" takes "swarm" itself as the objective.
			allowed := []string{objective, arg}
			if name, v, ok := strings.Cut(strings.TrimLeft(arg, "-"), "="); ok && (name == "p" || name == "print") {
				allowed = append(allowed, v)
			}
			if slices.Contains([]string{"-p", "--p", "--print"}, arg) && args[0] == arg {
				allowed = append(allowed, "swarm")
			}
			if !slices.Contains(allowed, c.objective) {
				t.Fatalf("parse(%q): objective %q changed to %q", args, objective, c.objective)
			}
			if c.events < 0 || c.events > maxEvents || c.pace < 0 || c.pace > maxPace || c.hugeLine > maxHugeLine ||
				c.sleep > maxSleep || c.agents < 1 || c.agents > maxAgents || c.exitCode > maxExitCode {
				t.Fatalf("out of bounds config from %q: %+v", args, c)
			}
		}
	})
}
