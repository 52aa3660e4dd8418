package sim

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func checkJSONString(t *testing.T, s string) {
	t.Helper()
	got := appendJSONString(nil, s)
	if !json.Valid(got) {
		t.Fatalf("invalid JSON for %q: %s", s, got)
	}
	var mine, std string
	if err := json.Unmarshal(got, &mine); err != nil {
		t.Fatal(err)
	}
	ref, _ := json.Marshal(s)
	if err := json.Unmarshal(ref, &std); err != nil {
		t.Fatal(err)
	}
	if mine != std {
		t.Fatalf("appendJSONString(%q) decodes to %q, encoding/json to %q", s, mine, std)
	}
	if strings.ContainsAny(string(got), "\n\r\u2028\u2029") {
		t.Fatalf("encoded string contains a line break: %q", got)
	}
}

func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", `"quoted" \ back`, "\x00\x01\x1f\x7f", "\n\r\t\b\f",
		"日本語 🚀", "bad \xff\xfe utf8 \xe2\x82", "\u2028\u2029", "</script>&<>"} {
		checkJSONString(t, s)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("hello")
	f.Add("\"\\\n\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) { checkJSONString(t, s) })
}

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
