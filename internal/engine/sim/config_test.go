package sim

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// knobCase sets one knob to a non-default value and says where that lands in the config.
type knobCase struct {
	name, value string
	check       func(c *config) bool
}

func knobCases() []knobCase {
	return []knobCase{
		{"events", "123", func(c *config) bool { return c.events == 123 }},
		{"pace", "7ms", func(c *config) bool { return c.pace == 7*time.Millisecond }},
		{"rate", "500", func(c *config) bool { return c.pace == 2*time.Millisecond }},
		{"fail", "", func(c *config) bool { return c.fail }},
		{"is-error", "", func(c *config) bool { return c.isError }},
		{"exit-code", "9", func(c *config) bool { return c.exitCodeSet && c.exitCode == 9 }},
		{"no-result", "", func(c *config) bool { return c.noResult }},
		{"hang", "", func(c *config) bool { return c.hang }},
		{"ignore-term", "", func(c *config) bool { return c.ignoreTerm }},
		{"setsid-child", "", func(c *config) bool { return c.setsidChild }},
		{"marker", "m-1.x_y", func(c *config) bool { return c.marker == "m-1.x_y" }},
		{"huge-line", "4096", func(c *config) bool { return c.hugeLine == 4096 }},
		{"stderr", "", func(c *config) bool { return c.stderr }},
		{"print-env", "", func(c *config) bool { return c.printEnv }},
		{"print-key", "", func(c *config) bool { return c.printKey }},
		{"print-key-hash", "", func(c *config) bool { return c.printKeyHash }},
		{"fake-complete", "", func(c *config) bool { return c.fakeComplete }},
		{"non-json", "", func(c *config) bool { return c.nonJSON }},
		{"permission-denied", "", func(c *config) bool { return c.permDenied }},
		{"task-tool", "", func(c *config) bool { return c.taskTool }},
		{"sleep", "3s", func(c *config) bool { return c.sleep == 3*time.Second }},
		{"probe-file", "/data/signing.key", func(c *config) bool { return c.probeFile == "/data/signing.key" }},
		{"probe-write", "out.txt", func(c *config) bool { return c.probeWrite == "out.txt" }},
		{"probe-connect", "127.0.0.1:5432", func(c *config) bool { return c.probeConnect == "127.0.0.1:5432" }},
	}
}

func TestEveryKnobThreeWays(t *testing.T) {
	t.Parallel()
	cases := knobCases()
	if len(cases) != len(knobs()) {
		t.Fatalf("%d cases for %d knobs", len(cases), len(knobs()))
	}
	def, err := parse([]string{"swarm", "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, kc := range cases {
		if kc.check(def) {
			t.Fatalf("%s: the default already passes the check", kc.name)
		}
		flag, directive, envValue := "--"+kc.name, "sim:"+kc.name, "true"
		if kc.value != "" {
			flag += "=" + kc.value
			directive += "=" + kc.value
			envValue = kc.value
		}
		ways := map[string]struct {
			args []string
			env  map[string]string
		}{
			"flag":          {[]string{"swarm", "x", flag}, nil},
			"flag first":    {[]string{flag, "swarm", "x"}, nil},
			"directive":     {[]string{"swarm", "do " + directive + " now"}, nil},
			"-p directive":  {[]string{"-p", directive + " first"}, nil},
			"env":           {[]string{"swarm", "x"}, map[string]string{envName(kc.name): envValue}},
			"flag as value": {append([]string{"swarm", "x"}, strings.SplitN(flag, "=", 2)...), nil},
		}
		for way, w := range ways {
			if way == "flag as value" && kc.value == "" {
				continue
			}
			c, err := parse(w.args, envFunc(w.env))
			if err != nil {
				t.Fatalf("%s by %s: %v", kc.name, way, err)
			}
			if !kc.check(c) {
				t.Fatalf("%s by %s: not applied: %+v", kc.name, way, c)
			}
		}
	}
}

func TestEnvNames(t *testing.T) {
	t.Parallel()
	want := map[string]string{"events": "FLOWGATE_SIM_EVENTS", "is-error": "FLOWGATE_SIM_IS_ERROR",
		"exit-code": "FLOWGATE_SIM_EXIT_CODE", "huge-line": "FLOWGATE_SIM_HUGE_LINE", "setsid-child": "FLOWGATE_SIM_SETSID_CHILD"}
	for k, v := range want {
		if got := envName(k); got != v {
			t.Errorf("envName(%s) = %s, want %s", k, got, v)
		}
	}
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		events    int
		pace      time.Duration
		fail      bool
		exitCode  int
		hasExitCd bool
	}{
		{name: "defaults", args: []string{"swarm", "x"}, events: 20, pace: 25 * time.Millisecond},
		{name: "env", args: []string{"swarm", "x"}, env: map[string]string{"FLOWGATE_SIM_EVENTS": "5", "FLOWGATE_SIM_PACE": "0", "FLOWGATE_SIM_FAIL": "1"}, events: 5, fail: true},
		{name: "directive beats env", args: []string{"swarm", "x sim:events=6 sim:fail=false sim:pace=1ms"}, env: map[string]string{"FLOWGATE_SIM_EVENTS": "5", "FLOWGATE_SIM_PACE": "0", "FLOWGATE_SIM_FAIL": "1"}, events: 6, pace: time.Millisecond},
		{name: "flag beats directive", args: []string{"swarm", "x sim:events=6 sim:fail", "--events", "7", "--fail=false"}, env: map[string]string{"FLOWGATE_SIM_EVENTS": "5"}, events: 7, pace: 25 * time.Millisecond},
		{name: "flag before objective", args: []string{"--events", "8", "swarm", "x sim:events=6"}, events: 8, pace: 25 * time.Millisecond},
		{name: "last flag wins", args: []string{"swarm", "x", "--events", "8", "--events", "9"}, events: 9, pace: 25 * time.Millisecond},
		{name: "last directive wins", args: []string{"swarm", "sim:events=8 x sim:events=9"}, events: 9, pace: 25 * time.Millisecond},
		{name: "rate directive beats pace env", args: []string{"swarm", "x sim:rate=100"}, env: map[string]string{"FLOWGATE_SIM_PACE": "0"}, events: 20, pace: 10 * time.Millisecond},
		{name: "pace flag beats rate directive", args: []string{"swarm", "x sim:rate=100", "--pace", "3ms"}, events: 20, pace: 3 * time.Millisecond},
		{name: "rate flag beats pace env", args: []string{"swarm", "x", "--rate", "1000"}, env: map[string]string{"FLOWGATE_SIM_PACE": "1s"}, events: 20, pace: time.Millisecond},
		{name: "exit code env", args: []string{"swarm", "x"}, env: map[string]string{"FLOWGATE_SIM_EXIT_CODE": "4"}, events: 20, pace: 25 * time.Millisecond, exitCode: 4, hasExitCd: true},
		{name: "empty env is unset", args: []string{"swarm", "x"}, env: map[string]string{"FLOWGATE_SIM_EVENTS": ""}, events: 20, pace: 25 * time.Millisecond},
		{name: "case-sensitive directive", args: []string{"swarm", "SIM:fail Sim:events=3 xsim:fail"}, events: 20, pace: 25 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parse(tt.args, envFunc(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.events != tt.events || c.pace != tt.pace || c.fail != tt.fail || c.exitCode != tt.exitCode || c.exitCodeSet != tt.hasExitCd {
				t.Fatalf("got events %d pace %v fail %v exit %d/%v", c.events, c.pace, c.fail, c.exitCode, c.exitCodeSet)
			}
		})
	}
}

func TestEngineFlags(t *testing.T) {
	t.Parallel()
	c, err := parse([]string{"swarm", "obj", "--max-agents=7", "--strategy", "development", "--mode=hybrid", "--parallel", "--timeout", "120", "--headless", "--verbose", "--output-format=stream-json"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.style != styleClaudeFlow || c.objective != "obj" || c.agents != 7 || c.strategy != "development" || c.mode != "hybrid" || !c.parallel || c.timeoutSec != 120 {
		t.Fatalf("%+v", c)
	}
	c, err = parse([]string{"-p", "obj --events 3", "--verbose"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.style != styleClaudeCode || c.objective != "obj --events 3" || c.agents != 1 || c.events != defaultEvents {
		t.Fatalf("objective words were read as flags: %+v", c)
	}
	c, err = parse([]string{"-p=obj"}, nil)
	if err != nil || c.objective != "obj" {
		t.Fatalf("-p=obj: %+v %v", c, err)
	}
}

func TestParseSleeper(t *testing.T) {
	t.Parallel()
	sc, err := parseSleeper([]string{"--marker", "abc", "--duration=2s", "--ignore-term", "--ready-fd", "3"})
	if err != nil {
		t.Fatal(err)
	}
	if sc.marker != "abc" || sc.duration != 2*time.Second || !sc.ignoreTerm || sc.readyFD != 3 {
		t.Fatalf("%+v", sc)
	}
	if sc, err = parseSleeper([]string{"--marker=m"}); err != nil || sc.duration != defaultSleeper || sc.ignoreTerm {
		t.Fatalf("%+v %v", sc, err)
	}
	if _, err := parseSleeper([]string{"--marker", "m", "stray"}); !errors.Is(err, ErrUsage) {
		t.Fatalf("stray argument: %v", err)
	}
}

func TestSnippetBounded(t *testing.T) {
	t.Parallel()
	s := snippet(strings.Repeat("日本\n", 100))
	if strings.ContainsRune(s, '\n') || len([]rune(s)) != snippetRunes+3 {
		t.Fatalf("snippet %q", s)
	}
	if got := shown(strings.Repeat("é", 100)); len(got) > maxShownValue+8 {
		t.Fatalf("shown is not bounded: %d bytes", len(got))
	}
}
