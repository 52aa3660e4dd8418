package sim

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds on every input. The gateway validates requests with its own (smaller) limits; these keep
// a direct caller of the simulator from asking for something absurd.
const (
	maxArgs           = 256
	maxObjectiveBytes = 1 << 20
	maxDirectives     = 32
	maxAgents         = 100
	maxEvents         = 10_000_000
	maxRate           = 10_000_000
	maxHugeLine       = 64 << 20
	maxPace           = time.Hour
	maxSleep          = time.Hour
	maxSleeper        = 24 * time.Hour
	maxTimeoutSecs    = 7 * 24 * 3600
	maxExitCode       = 255
	maxShownValue     = 64
	maxProbeTarget    = 1024

	defaultEvents     = 20
	defaultPace       = 25 * time.Millisecond
	defaultSwarmAgent = 5
	defaultStrategy   = "auto"
	defaultMode       = "centralized"
	defaultSleeper    = 10 * time.Minute

	// EnvPrefix starts the environment name of every knob: FLOWGATE_SIM_<NAME>, the knob's
	// name upper-cased with dashes as underscores.
	EnvPrefix = "FLOWGATE_SIM_"
	// DirectivePrefix starts an objective word that sets a knob: sim:<name> or sim:<name>=<value>.
	DirectivePrefix = "sim:"
)

// Output styles, after the argv shape that selected them.
const (
	styleClaudeFlow = "claude-flow"
	styleClaudeCode = "claude-code"
)

var (
	// Lengths (64, 32) are checked apart: bounded repetitions compile to large programs.
	markerRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	enumRE   = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
)

// Precedence levels of a knob's value: a higher level wins.
const (
	levelEnv = iota + 1
	levelDirective
	levelFlag
)

type knobKind int

const (
	kindBool knobKind = iota
	kindInt
	kindDuration
	kindMarker
	kindPath     // a file path, absolute or relative to the working directory
	kindHostPort // host:port
)

// knob is one behaviour setting, available as --name, FLOWGATE_SIM_NAME and sim:name.
type knob struct {
	name     string
	kind     knobKind
	min, max int64 // ints; durations in nanoseconds
}

// knobs is the one list of behaviour settings; parsing, the environment, directives, the usage
// text test and the lead's documentation are all driven by it.
func knobs() []knob {
	return []knob{
		{name: "events", kind: kindInt, max: maxEvents},
		{name: "pace", kind: kindDuration, max: int64(maxPace)},
		{name: "rate", kind: kindInt, min: 1, max: maxRate},
		{name: "fail", kind: kindBool},
		{name: "is-error", kind: kindBool},
		{name: "exit-code", kind: kindInt, max: maxExitCode},
		{name: "no-result", kind: kindBool},
		{name: "hang", kind: kindBool},
		{name: "ignore-term", kind: kindBool},
		{name: "setsid-child", kind: kindBool},
		{name: "marker", kind: kindMarker},
		{name: "huge-line", kind: kindInt, max: maxHugeLine},
		{name: "stderr", kind: kindBool},
		{name: "print-env", kind: kindBool},
		{name: "print-key", kind: kindBool},
		{name: "print-key-hash", kind: kindBool},
		{name: "fake-complete", kind: kindBool},
		{name: "non-json", kind: kindBool},
		{name: "permission-denied", kind: kindBool},
		{name: "task-tool", kind: kindBool},
		{name: "sleep", kind: kindDuration, max: int64(maxSleep)},
		{name: "probe-file", kind: kindPath},
		{name: "probe-write", kind: kindPath},
		{name: "probe-connect", kind: kindHostPort},
	}
}

func findKnob(ks []knob, name string) (knob, bool) {
	for _, k := range ks {
		if k.name == name {
			return k, true
		}
	}
	return knob{}, false
}

// envName is the environment variable of a knob.
func envName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// value is a parsed knob value with where it came from.
type value struct {
	b     bool
	i     int64
	d     time.Duration
	s     string
	level int
}

// config is what one run of the simulator does.
type config struct {
	style      string
	objective  string
	agents     int
	strategy   string
	mode       string
	parallel   bool
	timeoutSec int

	events       int
	pace         time.Duration
	fail         bool
	isError      bool
	exitCode     int
	exitCodeSet  bool
	noResult     bool // print no result line (and exit 0 unless something else fails)
	hang         bool
	ignoreTerm   bool
	setsidChild  bool
	marker       string // "" = derived from cwd and pid when needed
	hugeLine     int
	stderr       bool
	printEnv     bool
	printKey     bool
	printKeyHash bool
	fakeComplete bool
	nonJSON      bool
	permDenied   bool // a Write tool_use that is denied, reported as Claude Code does
	taskTool     bool // a Task (sub-agent) tool_use among the first assistant lines
	sleep        time.Duration
	probeFile    string // try to read this file (or list this directory)
	probeWrite   string // try to create, write and remove this file
	probeConnect string // try to open a TCP connection to this host:port
}

// sleeperConfig is the internal "sleeper" subcommand: the setsid grandchild.
type sleeperConfig struct {
	marker     string
	duration   time.Duration
	ignoreTerm bool
	readyFD    int // 0 = none
}

// usageError is a bad argv, environment value or directive: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string        { return e.msg }
func (e *usageError) Is(target error) bool { return target == ErrUsage }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelp asks Main to print the usage text and succeed.
var errHelp = &usageError{msg: "help requested"}

// shown bounds and quotes a caller-supplied string for an error message.
func shown(s string) string {
	if len(s) > maxShownValue {
		cut := maxShownValue
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return strconv.Quote(s)
}

// parseKnob checks raw against k; src names where it came from (--events, sim:events,
// FLOWGATE_SIM_EVENTS) for the error message.
func parseKnob(k knob, raw string, hasValue bool, src string, level int) (value, error) {
	v := value{level: level}
	if k.kind == kindBool {
		if !hasValue {
			v.b = true
			return v, nil
		}
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return v, usagef("invalid value %s for %s: want true or false", shown(raw), src)
		}
		v.b = b
		return v, nil
	}
	if !hasValue {
		return v, usagef("%s needs a value", src)
	}
	switch k.kind {
	case kindInt:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < k.min || n > k.max {
			return v, usagef("invalid value %s for %s: want an integer from %d to %d", shown(raw), src, k.min, k.max)
		}
		v.i = n
	case kindDuration:
		d, err := time.ParseDuration(raw)
		if err != nil || d < time.Duration(k.min) || d > time.Duration(k.max) {
			return v, usagef("invalid value %s for %s: want a duration such as 25ms, 2s or 0, at most %s", shown(raw), src, time.Duration(k.max))
		}
		v.d = d
	case kindMarker:
		if len(raw) > 64 || !markerRE.MatchString(raw) {
			return v, usagef("invalid value %s for %s: want 1 to 64 characters of A-Z a-z 0-9 . _ -", shown(raw), src)
		}
		v.s = raw
	case kindPath, kindHostPort:
		if raw == "" || len(raw) > maxProbeTarget || strings.IndexFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			return v, usagef("invalid value %s for %s: want 1 to %d bytes without spaces or control characters", shown(raw), src, maxProbeTarget)
		}
		if _, port, err := net.SplitHostPort(raw); k.kind == kindHostPort && (err != nil || port == "") {
			return v, usagef("invalid value %s for %s: want host:port", shown(raw), src)
		}
		v.s = raw
	}
	return v, nil
}

// parse turns argv (without the engine-sim word), the objective's directives and the
// environment into a config. Precedence: flag > objective directive > environment > default.
func parse(args []string, getenv func(string) string) (*config, error) {
	if len(args) > maxArgs {
		return nil, usagef("too many arguments (%d, at most %d)", len(args), maxArgs)
	}
	ks := knobs()
	set := make(map[string]value, len(ks))
	put := func(name string, v value) {
		if old, ok := set[name]; !ok || v.level >= old.level {
			set[name] = v
		}
	}

	cfg := &config{strategy: defaultStrategy, mode: defaultMode}
	var positional []string
	var printObjective *string
	agentsSet := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if a == "" || a[0] != '-' || a == "-" {
			positional = append(positional, a)
			continue
		}
		var name string
		switch {
		case strings.HasPrefix(a, "--"):
			name = a[2:]
		case a == "-p" || a == "-h" || strings.HasPrefix(a, "-p="):
			name = a[1:]
		default:
			return nil, usagef("unknown flag %s", shown(a))
		}
		name, raw, hasValue := strings.Cut(name, "=")
		flag := "--" + name
		if len(name) == 1 {
			flag = "-" + name
		}
		takeValue := func() (string, error) {
			if hasValue {
				return raw, nil
			}
			if i+1 >= len(args) {
				return "", usagef("flag %s needs a value", flag)
			}
			i++
			return args[i], nil
		}
		boolValue := func() (bool, error) {
			if !hasValue {
				return true, nil
			}
			b, err := strconv.ParseBool(raw)
			if err != nil {
				return false, usagef("invalid value %s for %s: want true or false", shown(raw), flag)
			}
			return b, nil
		}
		var err error
		switch name {
		case "h", "help":
			return nil, errHelp
		case "p", "print":
			if printObjective != nil {
				return nil, usagef("flag %s given twice", flag)
			}
			var obj string
			if obj, err = takeValue(); err != nil {
				return nil, err
			}
			printObjective = &obj
		case "agents", "max-agents":
			var s string
			if s, err = takeValue(); err != nil {
				return nil, err
			}
			n, perr := strconv.Atoi(s)
			if perr != nil || n < 1 || n > maxAgents {
				return nil, usagef("invalid value %s for %s: want an integer from 1 to %d", shown(s), flag, maxAgents)
			}
			cfg.agents, agentsSet = n, true
		case "strategy", "mode":
			var s string
			if s, err = takeValue(); err != nil {
				return nil, err
			}
			if len(s) > 32 || !enumRE.MatchString(s) {
				return nil, usagef("invalid value %s for %s: want a lower-case word of at most 32 characters", shown(s), flag)
			}
			if name == "strategy" {
				cfg.strategy = s
			} else {
				cfg.mode = s
			}
		case "timeout":
			var s string
			if s, err = takeValue(); err != nil {
				return nil, err
			}
			n, perr := strconv.Atoi(s)
			if perr != nil || n < 0 || n > maxTimeoutSecs {
				return nil, usagef("invalid value %s for %s: want seconds from 0 to %d", shown(s), flag, maxTimeoutSecs)
			}
			cfg.timeoutSec = n
		case "output-format":
			var s string
			if s, err = takeValue(); err != nil {
				return nil, err
			}
			if s != "stream-json" {
				return nil, usagef("unsupported %s %s: the simulator only writes stream-json", flag, shown(s))
			}
		case "parallel":
			if cfg.parallel, err = boolValue(); err != nil {
				return nil, err
			}
		case "headless", "verbose":
			if _, err = boolValue(); err != nil {
				return nil, err
			}
		default:
			k, ok := findKnob(ks, name)
			if !ok || len(name) == 1 {
				return nil, usagef("unknown flag %s", shown("--"+name))
			}
			if k.kind != kindBool && !hasValue {
				if raw, err = takeValue(); err != nil {
					return nil, err
				}
				hasValue = true
			}
			v, err := parseKnob(k, raw, hasValue, flag, levelFlag)
			if err != nil {
				return nil, err
			}
			put(k.name, v)
		}
	}

	switch {
	case printObjective != nil:
		if len(positional) > 0 {
			return nil, usagef("unexpected argument after -p <objective> (the objective is one argument)")
		}
		cfg.style, cfg.objective = styleClaudeCode, *printObjective
	case len(positional) == 0:
		return nil, usagef(`missing command: want "swarm <objective>" or "-p <objective>"`)
	case positional[0] != "swarm":
		return nil, usagef(`unknown command: want "swarm <objective>", "-p <objective>" or "sleeper"`)
	case len(positional) == 1:
		return nil, usagef("swarm needs an objective")
	case len(positional) > 2:
		return nil, usagef("unexpected argument after swarm <objective> (the objective is one argument)")
	default:
		cfg.style, cfg.objective = styleClaudeFlow, positional[1]
	}
	if err := checkObjective(cfg.objective); err != nil {
		return nil, err
	}
	if !agentsSet {
		cfg.agents = defaultSwarmAgent
		if cfg.style == styleClaudeCode {
			cfg.agents = 1
		}
	}

	if err := parseDirectives(ks, cfg.objective, put); err != nil {
		return nil, err
	}
	if getenv != nil {
		for _, k := range ks {
			name := envName(k.name)
			raw := getenv(name)
			if raw == "" {
				continue
			}
			v, err := parseKnob(k, raw, true, name, levelEnv)
			if err != nil {
				return nil, err
			}
			put(k.name, v)
		}
	}
	if err := applyKnobs(cfg, set); err != nil {
		return nil, err
	}
	return cfg, nil
}

func checkObjective(obj string) error {
	switch {
	case strings.TrimSpace(obj) == "":
		return usagef("the objective is empty")
	case len(obj) > maxObjectiveBytes:
		return usagef("the objective is longer than %d bytes", maxObjectiveBytes)
	case obj[0] == '-':
		return usagef("the objective may not start with '-'")
	}
	return nil
}

// parseDirectives reads sim:<name>[=<value>] words of the objective.
func parseDirectives(ks []knob, objective string, put func(string, value)) error {
	n := 0
	for _, word := range strings.Fields(objective) {
		rest, ok := strings.CutPrefix(word, DirectivePrefix)
		if !ok {
			continue
		}
		if n++; n > maxDirectives {
			return usagef("too many %s directives in the objective (at most %d)", DirectivePrefix, maxDirectives)
		}
		name, raw, hasValue := strings.Cut(rest, "=")
		src := DirectivePrefix + name
		k, ok := findKnob(ks, name)
		if !ok {
			return usagef("unknown directive %s in the objective", shown(src))
		}
		v, err := parseKnob(k, raw, hasValue, src, levelDirective)
		if err != nil {
			return err
		}
		put(k.name, v)
	}
	return nil
}

// applyKnobs copies the winning value of every knob into cfg, after defaults.
func applyKnobs(cfg *config, set map[string]value) error {
	cfg.events = defaultEvents
	cfg.pace = defaultPace
	pace, hasPace := set["pace"]
	rate, hasRate := set["rate"]
	switch {
	case hasPace && hasRate && pace.level == rate.level:
		return usagef("pace and rate are alternatives: set one of them")
	case hasRate && (!hasPace || rate.level > pace.level):
		cfg.pace = time.Second / time.Duration(rate.i)
	case hasPace:
		cfg.pace = pace.d
	}
	for name, v := range set {
		switch name {
		case "events":
			cfg.events = int(v.i)
		case "fail":
			cfg.fail = v.b
		case "is-error":
			cfg.isError = v.b
		case "exit-code":
			cfg.exitCode, cfg.exitCodeSet = int(v.i), true
		case "no-result":
			cfg.noResult = v.b
		case "hang":
			cfg.hang = v.b
		case "ignore-term":
			cfg.ignoreTerm = v.b
		case "setsid-child":
			cfg.setsidChild = v.b
		case "marker":
			cfg.marker = v.s
		case "huge-line":
			cfg.hugeLine = int(v.i)
		case "stderr":
			cfg.stderr = v.b
		case "print-env":
			cfg.printEnv = v.b
		case "print-key":
			cfg.printKey = v.b
		case "print-key-hash":
			cfg.printKeyHash = v.b
		case "fake-complete":
			cfg.fakeComplete = v.b
		case "non-json":
			cfg.nonJSON = v.b
		case "permission-denied":
			cfg.permDenied = v.b
		case "task-tool":
			cfg.taskTool = v.b
		case "sleep":
			cfg.sleep = v.d
		case "probe-file":
			cfg.probeFile = v.s
		case "probe-write":
			cfg.probeWrite = v.s
		case "probe-connect":
			cfg.probeConnect = v.s
		}
	}
	return nil
}

// parseSleeper reads the sleeper subcommand's flags (args excludes "sleeper").
func parseSleeper(args []string) (*sleeperConfig, error) {
	if len(args) > maxArgs {
		return nil, usagef("too many arguments")
	}
	sc := &sleeperConfig{duration: defaultSleeper}
	ks := knobs()
	markerKnob, _ := findKnob(ks, "marker")
	durKnob := knob{name: "duration", kind: kindDuration, max: int64(maxSleeper)}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, raw, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") {
			return nil, usagef("sleeper: unexpected argument %s", shown(a))
		}
		flag := "--" + name
		take := func() (string, error) {
			if hasValue {
				return raw, nil
			}
			if i+1 >= len(args) {
				return "", usagef("sleeper: flag %s needs a value", flag)
			}
			i++
			return args[i], nil
		}
		switch name {
		case "help":
			return nil, errHelp
		case "marker", "duration", "ready-fd":
			s, err := take()
			if err != nil {
				return nil, err
			}
			switch name {
			case "marker":
				v, err := parseKnob(markerKnob, s, true, flag, levelFlag)
				if err != nil {
					return nil, err
				}
				sc.marker = v.s
			case "duration":
				v, err := parseKnob(durKnob, s, true, flag, levelFlag)
				if err != nil {
					return nil, err
				}
				sc.duration = v.d
			default:
				n, err := strconv.Atoi(s)
				if err != nil || n < 3 || n > 255 {
					return nil, usagef("invalid value %s for %s: want a file descriptor from 3 to 255", shown(s), flag)
				}
				sc.readyFD = n
			}
		case "ignore-term":
			b := true
			if hasValue {
				var err error
				if b, err = strconv.ParseBool(raw); err != nil {
					return nil, usagef("invalid value %s for %s: want true or false", shown(raw), flag)
				}
			}
			sc.ignoreTerm = b
		default:
			return nil, usagef("sleeper: unknown flag %s", shown(a))
		}
	}
	if sc.marker == "" {
		return nil, usagef("sleeper: --marker is required")
	}
	return sc, nil
}

const usageText = `usage: flowgate engine-sim swarm <objective> [engine flags] [sim flags]
       flowgate engine-sim -p <objective> [engine flags] [sim flags]
       flowgate engine-sim sleeper --marker M [--duration D] [--ignore-term]   (internal)

A SIMULATED engine: it needs no network and no API key and runs no tools. It writes
Claude-Code / claude-flow shaped stream-json on stdout, one JSON object per line: system/init,
agent_spawn per agent, a body of assistant text, assistant tool_use, user tool_result and
task_progress events, and a final result. Every assistant line carries its message's id and
simulated token usage (a message of several content blocks is printed as one line per block,
each with the same id and usage, as Claude Code does); the result carries the usage summed over
messages, total_cost_usd at list prices, num_turns and permission_denials. The same objective and
flags give the same events; only timestamps (emittedAtNs, duration_ms) and the
environment-dependent fields vary.

Engine flags (what the gateway's engine profiles pass):
  --max-agents N, --agents N    agents to simulate, 1-100 (default 5; 1 with -p)
  --strategy S, --mode M        lower-case words, reported in system/init
                                (default auto, centralized)
  --parallel, --headless, --verbose
  --timeout SECS                accepted and reported, not enforced (0-604800)
  --output-format stream-json   the only supported format

Simulation knobs. Each is also the environment variable FLOWGATE_SIM_<NAME> (upper-case,
dashes as underscores: FLOWGATE_SIM_EXIT_CODE=3) and a word sim:<name>[=<value>] in the
objective ("write a poem sim:fail sim:pace=0"). Precedence: flag > objective > environment >
default. Boolean knobs take an optional =true|false.
  --events N         body events, 0-10000000 (default 20)
  --pace D           delay between events, Go duration, 0-1h; 0 = unpaced (default 25ms)
  --rate R           events per second, 1-10000000 (instead of --pace)
  --fail             stop half way, result is_error:true, exit 1
  --is-error         complete, result is_error:true, exit 0
  --exit-code N      exit with N (0-255) whatever the result says
  --no-result        run normally but print no result line (exit 0 unless another knob fails)
  --hang             emit system/init, then block until killed
  --ignore-term      ignore SIGTERM for the whole run (SIGKILL still works)
  --setsid-child     start "<self> engine-sim sleeper" in a new session and report it as
                     {"type":"sim_grandchild","pid":N,"marker":M}
  --marker M         marker of the grandchild's argv (default from cwd and pid)
  --huge-line BYTES  one non-JSON line of BYTES 'x' (at most 64 MiB)
  --stderr           also write warning lines to stderr
  --print-env        emit {"type":"sim_env","env":{...}} with the whole environment
  --print-key        echo ANTHROPIC_API_KEY in an event, a plain line and a stderr line
  --print-key-hash   emit {"type":"sim_key","sha256":"<hex>","present":true|false}: which key
                     the engine got, without the key
  --fake-complete    emit gateway-reserved event types (task_complete, error, ...), then fail
  --non-json         interleave plain text lines
  --permission-denied  before the body and beyond --events: an assistant Write tool_use,
                     Claude Code's {"type":"system","subtype":"permission_denied",...} and an
                     error tool_result; the result lists the denial in permission_denials
  --task-tool        before the agent_spawn events and beyond --events: an assistant tool_use
                     of the Task (sub-agent) tool, subagent_type general-purpose, and its
                     tool_result
  --sleep D          sleep D before exiting, 0-1h
  --probe-file P     try to read the file (or list the directory) P and emit
                     {"type":"sim_probe","probe":"file","target":P,"ok":true|false,"error":...}
                     without any of its content: what the sandbox lets an engine see
  --probe-write P    the same for creating, writing and removing the new file P
  --probe-connect A  the same for a TCP connection to host:port A (5s timeout)

Exit status: 0 success, 1 simulated failure, N with --exit-code, 2 usage error,
143 SIGTERM or cancellation, 130 SIGINT, 141 stdout closed.
`
