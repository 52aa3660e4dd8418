package engine

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Profile names accepted in engine.profile.
const (
	ProfileSim          = "sim"
	ProfileClaudeFlowV2 = "claude-flow-v2"
	ProfileClaudeCode   = "claude-code"
	ProfileCustom       = "custom"
)

// SimSubcommand is the flowgate subcommand that runs the bundled simulated engine.
const SimSubcommand = "engine-sim"

// Placeholders of a custom argv template. Each one, used as a whole template element, becomes
// exactly one argv element.
const (
	PlaceholderObjective = "{objective}"
	PlaceholderAgents    = "{agents}"
	PlaceholderStrategy  = "{strategy}"
	PlaceholderMode      = "{mode}"
	PlaceholderTimeout   = "{timeout}"
	PlaceholderWorkdir   = "{workdir}"
)

// Bounds on what a profile accepts. Validation enforces the configured (smaller) limits and
// fills in the configured defaults; these are the last line of defence so a bug upstream
// cannot hand an engine an absurd argv. There is no engine-side default: a request reaches
// the engine complete.
const (
	MaxAgents         = 100
	MaxObjectiveBytes = 16 << 10
	MaxTimeout        = 24 * time.Hour
	maxTemplateArgs   = 256
	maxTemplateArg    = 4096
)

// Sentinel errors of Argv; callers branch on them (a validation bug, not an engine failure).
var (
	ErrInvalidObjective = errors.New("engine: invalid objective")
	ErrInvalidOption    = errors.New("engine: invalid option")
)

// Request is the validated part of a swarm request that reaches the engine.
type Request struct {
	Objective string
	Agents    int // 1..MaxAgents; validation fills in limits.default_agents
	Strategy  string
	Mode      string // "" = the profile's default
	Timeout   time.Duration
}

// Config selects and parameterises a profile (engine.profile, engine.command, engine.args and
// the real engines' keys of DESIGN §14).
type Config struct {
	Profile string   // sim | claude-flow-v2 | claude-code | custom
	Command string   // absolute path; "" = the profile's default name looked up in PATH at start
	Args    []string // argv template, custom only
	// ClaudeCommand is the Claude Code binary claude-flow-v2 runs: absolute, or "" = claude
	// looked up in PATH at start. Its directory goes first on the engine's PATH.
	ClaudeCommand string
	// AnthropicBaseURL becomes ANTHROPIC_BASE_URL for claude-code and claude-flow-v2.
	AnthropicBaseURL string
	// PermissionMode is Claude Code's --permission-mode (claude-code); "" = acceptEdits.
	PermissionMode string
	// MaxRetries is CLAUDE_CODE_MAX_RETRIES for claude-code and claude-flow-v2.
	MaxRetries int
}

// Permission modes of Claude Code (engine.permission_mode).
const (
	PermissionDefault     = "default"
	PermissionAcceptEdits = "acceptEdits"
	PermissionBypass      = "bypassPermissions"
	PermissionPlan        = "plan"
)

// enum maps a value a client may send to the constant the engine receives. The emitted strings
// live in this file, so nothing a client sends is ever copied into argv.
type enum struct {
	name  string   // accepted request value
	flags []string // argv emitted for it (may be empty)
	value string   // constant for the {strategy}/{mode} placeholder and the engine's own flag
}

// Profile is a resolved engine profile. It is immutable and safe for concurrent use.
type Profile struct {
	name       string
	command    string
	strategies []enum
	modes      []enum
	env        []string
	argv       func(p *Profile, req Request, strategy, mode enum, workdir string) []string
	template   []string // custom only
	permission string   // claude-code: --permission-mode
	claude     string   // claude-flow-v2: the Claude Code binary it runs
	// skipsPermissions: the engine runs Claude Code without permission prompts
	// (bypassPermissions, or claude-flow's --dangerously-skip-permissions), which Claude Code
	// refuses as root unless told it is sandboxed.
	skipsPermissions bool
	promisesResult   bool
}

// seed enums: what the seed's clients send; every profile accepts them.
func seedStrategies() []enum {
	return []enum{
		{name: "auto", value: "auto"},
		{name: "parallel", value: "parallel"},
		{name: "sequential", value: "sequential"},
	}
}

func seedModes() []enum {
	return []enum{
		{name: "centralized", value: "centralized"},
		{name: "distributed", value: "distributed"},
	}
}

// New resolves cfg into a Profile. lookPath finds a profile's default command in PATH (nil =
// exec.LookPath); self is the absolute path of the running flowgate binary (the sim default).
func New(cfg Config, lookPath func(string) (string, error), self string) (*Profile, error) {
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	p := &Profile{name: cfg.Profile}
	var defaultName string
	switch cfg.Profile {
	case ProfileSim:
		p.strategies, p.modes = seedStrategies(), seedModes()
		p.argv = simArgv
		p.promisesResult = true // it speaks Claude Code's stream-json, result line included
	case ProfileClaudeFlowV2:
		defaultName = "claude-flow"
		p.strategies, p.modes = claudeFlowStrategies(), claudeFlowModes()
		p.env = append([]string{"CLAUDE_FLOW_NON_INTERACTIVE=true"}, claudeEnv(cfg)...)
		p.argv = claudeFlowArgv
		// claude-flow --headless always runs `claude --dangerously-skip-permissions`.
		p.skipsPermissions, p.promisesResult = true, true
	case ProfileClaudeCode:
		defaultName = "claude"
		p.strategies, p.modes = seedStrategies(), seedModes()
		p.env = claudeEnv(cfg)
		p.argv = claudeCodeArgv
		p.permission = cfg.PermissionMode
		if p.permission == "" {
			p.permission = PermissionAcceptEdits
		}
		switch p.permission {
		case PermissionDefault, PermissionAcceptEdits, PermissionPlan:
		case PermissionBypass:
			p.skipsPermissions = true
		default:
			return nil, fmt.Errorf("engine.permission_mode: unknown mode %q (want default, acceptEdits, bypassPermissions or plan)", truncate(cfg.PermissionMode, 32))
		}
		p.promisesResult = true
	case ProfileCustom:
		p.strategies, p.modes = seedStrategies(), seedModes()
		p.argv = customArgv
		tmpl, err := checkTemplate(cfg.Args)
		if err != nil {
			return nil, err
		}
		p.template = tmpl
	case "":
		return nil, errors.New("engine.profile: required (sim, claude-flow-v2, claude-code or custom)")
	default:
		return nil, fmt.Errorf("engine.profile: unknown profile %q (want sim, claude-flow-v2, claude-code or custom)", truncate(cfg.Profile, 64))
	}
	if cfg.Profile != ProfileCustom && len(cfg.Args) > 0 {
		return nil, fmt.Errorf("engine.args: only the custom profile takes an argv template (profile %s)", cfg.Profile)
	}

	cmd := cfg.Command
	switch {
	case cmd != "":
		// An explicit command is never looked up: a relative path would depend on the
		// server's working directory or PATH at the time of each spawn.
	case cfg.Profile == ProfileSim:
		if self == "" {
			return nil, errors.New("engine.command: the sim profile needs the path of the flowgate binary")
		}
		cmd = self
	case cfg.Profile == ProfileCustom:
		return nil, errors.New("engine.command: required for the custom profile")
	default:
		found, err := lookPath(defaultName)
		if err != nil {
			return nil, fmt.Errorf("engine.command: %s not found in PATH; install it or set engine.command to its absolute path: %w", defaultName, err)
		}
		cmd = found
	}
	resolved, err := checkCommand("engine.command", cmd)
	if err != nil {
		return nil, err
	}
	p.command = resolved

	if cfg.Profile == ProfileClaudeFlowV2 {
		// claude-flow exits 0 and says nothing useful when claude is missing: refuse to start
		// instead of running tasks that cannot work.
		claude := cfg.ClaudeCommand
		if claude == "" {
			found, err := lookPath("claude")
			if err != nil {
				return nil, fmt.Errorf("engine.claude_command: claude (Claude Code, which claude-flow runs) not found in PATH; install it or set engine.claude_command to its absolute path: %w", err)
			}
			claude = found
		}
		if p.claude, err = checkCommand("engine.claude_command", claude); err != nil {
			return nil, err
		}
	} else if cfg.ClaudeCommand != "" {
		return nil, fmt.Errorf("engine.claude_command: only the claude-flow-v2 profile runs Claude Code on its own (profile %s)", cfg.Profile)
	}
	return p, nil
}

// claudeEnv is the environment Claude Code gets under both real-engine profiles.
func claudeEnv(cfg Config) []string {
	env := []string{
		// The binaries are pinned and pre-installed: an engine must not rewrite itself.
		"DISABLE_AUTOUPDATER=1",
		// No telemetry, error reporting or /api/hello probes: an engine talks to the API only.
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		// Claude Code retries a 401 ten times by default (three minutes holding a slot).
		"CLAUDE_CODE_MAX_RETRIES=" + strconv.Itoa(max(cfg.MaxRetries, 0)),
	}
	if cfg.AnthropicBaseURL != "" {
		env = append(env, "ANTHROPIC_BASE_URL="+cfg.AnthropicBaseURL)
	}
	return env
}

func claudeFlowStrategies() []enum {
	// claude-flow has no "parallel" or "sequential" strategy: it has --parallel, and runs
	// sequentially without it. Both seed values therefore let claude-flow pick its strategy
	// (auto) and differ only in that flag.
	return []enum{
		{name: "auto", value: "auto"},
		{name: "parallel", value: "auto", flags: []string{"--parallel"}},
		{name: "sequential", value: "auto"},
		{name: "research", value: "research"},
		{name: "development", value: "development"},
		{name: "analysis", value: "analysis"},
		{name: "testing", value: "testing"},
		{name: "optimization", value: "optimization"},
		{name: "maintenance", value: "maintenance"},
	}
}

func claudeFlowModes() []enum {
	return []enum{
		{name: "centralized", value: "centralized"},
		{name: "distributed", value: "distributed"},
		{name: "hierarchical", value: "hierarchical"},
		{name: "mesh", value: "mesh"},
		{name: "hybrid", value: "hybrid"},
	}
}

// simArgv: <self> engine-sim swarm <objective> --max-agents N --strategy S --mode M
// --output-format stream-json.
func simArgv(_ *Profile, req Request, s, m enum, _ string) []string {
	return []string{SimSubcommand, "swarm", req.Objective,
		"--max-agents", strconv.Itoa(req.Agents),
		"--strategy", s.value,
		"--mode", m.value,
		"--output-format", "stream-json"}
}

// claudeFlowArgv: claude-flow swarm <objective> --max-agents N --strategy S --mode M
// [--parallel] --headless --output-format stream-json. The timeout is enforced by the gateway
// and not passed (claude-flow's --timeout is in minutes and would only race the gateway's).
func claudeFlowArgv(_ *Profile, req Request, s, m enum, _ string) []string {
	argv := []string{"swarm", req.Objective,
		"--max-agents", strconv.Itoa(req.Agents),
		"--strategy", s.value,
		"--mode", m.value}
	argv = append(argv, s.flags...)
	return append(argv, "--headless", "--output-format", "stream-json")
}

// claudeCodeArgv: claude -p <objective> --output-format stream-json --verbose
// --permission-mode M. Claude Code has no notion of agents, strategy or mode: they are
// validated against the seed enums (so seed clients keep working) and not passed. Without a
// permission mode every file-writing or Bash tool is denied in -p mode.
func claudeCodeArgv(p *Profile, req Request, _, _ enum, _ string) []string {
	return []string{"-p", req.Objective, "--output-format", "stream-json", "--verbose",
		"--permission-mode", p.permission}
}

func customArgv(p *Profile, req Request, s, m enum, workdir string) []string {
	argv := make([]string, 0, len(p.template))
	for _, el := range p.template {
		switch el {
		case PlaceholderObjective:
			el = req.Objective
		case PlaceholderAgents:
			el = strconv.Itoa(req.Agents)
		case PlaceholderStrategy:
			el = s.value
		case PlaceholderMode:
			el = m.value
		case PlaceholderTimeout:
			el = strconv.FormatInt(int64((req.Timeout+time.Second-1)/time.Second), 10)
		case PlaceholderWorkdir:
			el = workdir
		}
		argv = append(argv, el)
	}
	return argv
}

var placeholders = []string{PlaceholderObjective, PlaceholderAgents, PlaceholderStrategy,
	PlaceholderMode, PlaceholderTimeout, PlaceholderWorkdir}

// checkTemplate enforces the one-placeholder-one-element rule: a placeholder inside a larger
// element ("--task={objective}") is refused rather than expanded, so no reader of the config
// has to wonder whether an objective could split into several arguments or merge into a flag.
func checkTemplate(args []string) ([]string, error) {
	if len(args) > maxTemplateArgs {
		return nil, fmt.Errorf("engine.args: %d elements, at most %d", len(args), maxTemplateArgs)
	}
	for i, el := range args {
		if len(el) > maxTemplateArg {
			return nil, fmt.Errorf("engine.args[%d]: longer than %d bytes", i, maxTemplateArg)
		}
		if strings.IndexByte(el, 0) >= 0 {
			return nil, fmt.Errorf("engine.args[%d]: contains a NUL byte", i)
		}
		if isPlaceholder(el) {
			continue
		}
		for _, ph := range placeholders {
			if strings.Contains(el, ph) {
				return nil, fmt.Errorf("engine.args[%d]: placeholder %s must be a whole element, not part of %q", i, ph, truncate(el, 64))
			}
		}
		if looksLikePlaceholder(el) {
			return nil, fmt.Errorf("engine.args[%d]: unknown placeholder %q (want one of %s)", i, el, strings.Join(placeholders, " "))
		}
	}
	return append([]string(nil), args...), nil
}

func isPlaceholder(s string) bool {
	for _, ph := range placeholders {
		if s == ph {
			return true
		}
	}
	return false
}

// looksLikePlaceholder catches typos such as {objectiv}: a whole element of the form {word}.
func looksLikePlaceholder(s string) bool {
	if len(s) < 3 || s[0] != '{' || s[len(s)-1] != '}' {
		return false
	}
	for _, c := range s[1 : len(s)-1] {
		if (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// checkCommand requires an absolute, existing, executable regular file. The path is resolved
// once, here; symlinks are kept as configured (an operator pointing at a versioned symlink
// expects the upgrade to apply on restart, which is when this runs again).
func checkCommand(key, cmd string) (string, error) {
	if !filepath.IsAbs(cmd) {
		return "", fmt.Errorf("%s: %q is not an absolute path", key, truncate(cmd, 256))
	}
	cmd = filepath.Clean(cmd)
	fi, err := os.Stat(cmd)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s: %s is not a regular file", key, cmd)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s: %s is not executable", key, cmd)
	}
	return cmd, nil
}

// Name is the profile name (engine.profile).
func (p *Profile) Name() string { return p.name }

// Command is the absolute path of the engine binary, resolved at New.
func (p *Profile) Command() string { return p.command }

// Strategies lists the accepted strategy values, default first.
func (p *Profile) Strategies() []string { return names(p.strategies) }

// Modes lists the accepted mode values, default first.
func (p *Profile) Modes() []string { return names(p.modes) }

// DefaultStrategy is used when a request names none.
func (p *Profile) DefaultStrategy() string { return p.strategies[0].name }

// DefaultMode is used when a request names none.
func (p *Profile) DefaultMode() string { return p.modes[0].name }

// Env returns the profile's own fixed variables as NAME=value.
func (p *Profile) Env() []string { return append([]string(nil), p.env...) }

// ClaudeCommand is the Claude Code binary claude-flow-v2 runs ("" for other profiles).
func (p *Profile) ClaudeCommand() string { return p.claude }

// Binaries are the executables the engine runs: engine.command, and engine.claude_command
// for claude-flow-v2.
func (p *Profile) Binaries() []string {
	if p.claude != "" {
		return []string{p.command, p.claude}
	}
	return []string{p.command}
}

// PermissionMode is the --permission-mode the claude-code profile passes ("" otherwise).
func (p *Profile) PermissionMode() string { return p.permission }

// SkipsPermissions reports that Claude Code runs without permission prompts under this
// profile; it then only runs as root when told it is sandboxed (IS_SANDBOX=1), which the
// executor does only when the sandbox is in force.
func (p *Profile) SkipsPermissions() bool { return p.skipsPermissions }

// PromisesResult reports that the engine ends with a stream-json result line: exiting 0
// without one is a failure, not a success (claude-flow exits 0 whatever happened).
func (p *Profile) PromisesResult() bool { return p.promisesResult }

func names(es []enum) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.name
	}
	return out
}

func lookup(es []enum, name string) (enum, bool) {
	for _, e := range es {
		if e.name == name {
			return e, true
		}
	}
	return enum{}, false
}

// Argv returns argv[1:] for req. Strategy and mode are looked up in the profile's tables and the
// table's constants are emitted; an empty value means the default, anything else not in the
// table is ErrInvalidOption. The objective becomes exactly one element and must not look like
// a flag. Errors never contain the objective.
func (p *Profile) Argv(req Request, workdir string) ([]string, error) {
	if err := checkObjective(req.Objective); err != nil {
		return nil, err
	}
	if req.Agents < 1 || req.Agents > MaxAgents {
		return nil, fmt.Errorf("%w: agents %d not in 1..%d", ErrInvalidOption, req.Agents, MaxAgents)
	}
	if req.Timeout < 0 || req.Timeout > MaxTimeout {
		return nil, fmt.Errorf("%w: timeout %s not in 0..%s", ErrInvalidOption, req.Timeout, MaxTimeout)
	}
	if req.Strategy == "" {
		req.Strategy = p.DefaultStrategy()
	}
	if req.Mode == "" {
		req.Mode = p.DefaultMode()
	}
	s, ok := lookup(p.strategies, req.Strategy)
	if !ok {
		return nil, fmt.Errorf("%w: strategy %q is not one of %s", ErrInvalidOption, truncate(req.Strategy, 32), strings.Join(p.Strategies(), ", "))
	}
	m, ok := lookup(p.modes, req.Mode)
	if !ok {
		return nil, fmt.Errorf("%w: mode %q is not one of %s", ErrInvalidOption, truncate(req.Mode, 32), strings.Join(p.Modes(), ", "))
	}
	if strings.IndexByte(workdir, 0) >= 0 {
		return nil, fmt.Errorf("%w: workdir contains a NUL byte", ErrInvalidOption)
	}
	return p.argv(p, req, s, m, workdir), nil
}

// checkObjective is defence in depth behind request validation: an objective that starts with
// "-" would be parsed as a flag by every engine (--dangerously-skip-permissions).
func checkObjective(o string) error {
	switch {
	case o == "":
		return fmt.Errorf("%w: empty", ErrInvalidObjective)
	case len(o) > MaxObjectiveBytes:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidObjective, MaxObjectiveBytes)
	case o[0] == '-':
		return fmt.Errorf("%w: starts with a dash", ErrInvalidObjective)
	case strings.IndexByte(o, 0) >= 0:
		return fmt.Errorf("%w: contains a NUL byte", ErrInvalidObjective)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
