package engine

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeBin creates an executable file named name in a temp dir and returns its path.
func fakeBin(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func lookIn(paths map[string]string) func(string) (string, error) {
	return func(name string) (string, error) {
		if p, ok := paths[name]; ok {
			return p, nil
		}
		return "", errors.New("executable file not found in $PATH")
	}
}

func TestArgvTables(t *testing.T) {
	self := fakeBin(t, "flowgate")
	cf := fakeBin(t, "claude-flow")
	claude := fakeBin(t, "claude")
	look := lookIn(map[string]string{"claude-flow": cf, "claude": claude})
	const obj = "Build a REST API; rm -rf / $(id)"

	tests := []struct {
		name    string
		cfg     Config
		req     Request
		command string
		want    []string
	}{
		{
			name: "sim defaults", cfg: Config{Profile: ProfileSim},
			req:     Request{Objective: obj, Agents: 3},
			command: self,
			want:    []string{"engine-sim", "swarm", obj, "--max-agents", "3", "--strategy", "auto", "--mode", "centralized", "--output-format", "stream-json"},
		},
		{
			name: "sim explicit", cfg: Config{Profile: ProfileSim},
			req:     Request{Objective: obj, Agents: 3, Strategy: "parallel", Mode: "distributed"},
			command: self,
			want:    []string{"engine-sim", "swarm", obj, "--max-agents", "3", "--strategy", "parallel", "--mode", "distributed", "--output-format", "stream-json"},
		},
		{
			name: "claude-flow seed values", cfg: Config{Profile: ProfileClaudeFlowV2},
			req:     Request{Objective: obj, Agents: 7, Strategy: "auto", Mode: "distributed", Timeout: time.Minute},
			command: cf,
			want:    []string{"swarm", obj, "--max-agents", "7", "--strategy", "auto", "--mode", "distributed", "--headless", "--output-format", "stream-json"},
		},
		{
			name: "claude-flow parallel maps to --parallel", cfg: Config{Profile: ProfileClaudeFlowV2},
			req:     Request{Objective: obj, Agents: 2, Strategy: "parallel", Mode: "centralized"},
			command: cf,
			want:    []string{"swarm", obj, "--max-agents", "2", "--strategy", "auto", "--mode", "centralized", "--parallel", "--headless", "--output-format", "stream-json"},
		},
		{
			name: "claude-flow sequential is auto without --parallel", cfg: Config{Profile: ProfileClaudeFlowV2},
			req:     Request{Objective: obj, Agents: 1, Strategy: "sequential"},
			command: cf,
			want:    []string{"swarm", obj, "--max-agents", "1", "--strategy", "auto", "--mode", "centralized", "--headless", "--output-format", "stream-json"},
		},
		{
			name: "claude-flow own values", cfg: Config{Profile: ProfileClaudeFlowV2},
			req:     Request{Objective: obj, Agents: 20, Strategy: "research", Mode: "mesh"},
			command: cf,
			want:    []string{"swarm", obj, "--max-agents", "20", "--strategy", "research", "--mode", "mesh", "--headless", "--output-format", "stream-json"},
		},
		{
			name: "claude-code ignores swarm options", cfg: Config{Profile: ProfileClaudeCode},
			req:     Request{Objective: obj, Agents: 9, Strategy: "parallel", Mode: "distributed"},
			command: claude,
			want:    []string{"-p", obj, "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits"},
		},
		{
			name: "custom template",
			cfg: Config{Profile: ProfileCustom, Command: "/bin/sh", Args: []string{
				"-c", `echo "$@"`, "sh", "{objective}", "{agents}", "{strategy}", "{mode}", "{timeout}", "{workdir}", "literal {braces} ${HOME}"}},
			req:     Request{Objective: obj, Agents: 4, Strategy: "sequential", Mode: "distributed", Timeout: 1500 * time.Millisecond},
			command: "/bin/sh",
			want:    []string{"-c", `echo "$@"`, "sh", obj, "4", "sequential", "distributed", "2", "/work/t1", "literal {braces} ${HOME}"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.cfg, look, self)
			if err != nil {
				t.Fatal(err)
			}
			if p.Command() != tt.command {
				t.Errorf("Command() = %q, want %q", p.Command(), tt.command)
			}
			got, err := p.Argv(tt.req, "/work/t1")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Argv =\n %q\nwant\n %q", got, tt.want)
			}
			for _, a := range got {
				if a == "--agents" || strings.Contains(a, "npx") || strings.Contains(a, "@alpha") {
					t.Errorf("argv contains %q", a)
				}
			}
		})
	}
}

func TestEnumsAndEnv(t *testing.T) {
	self := fakeBin(t, "flowgate")
	look := lookIn(map[string]string{"claude-flow": fakeBin(t, "claude-flow"), "claude": fakeBin(t, "claude")})
	seedS := []string{"auto", "parallel", "sequential"}
	seedM := []string{"centralized", "distributed"}
	tests := []struct {
		profile string
		cmd     string
		args    []string
		strat   []string
		modes   []string
		env     []string
	}{
		{ProfileSim, "", nil, seedS, seedM, nil},
		{ProfileClaudeFlowV2, "", nil,
			[]string{"auto", "parallel", "sequential", "research", "development", "analysis", "testing", "optimization", "maintenance"},
			[]string{"centralized", "distributed", "hierarchical", "mesh", "hybrid"},
			[]string{"CLAUDE_FLOW_NON_INTERACTIVE=true", "DISABLE_AUTOUPDATER=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "CLAUDE_CODE_MAX_RETRIES=0"}},
		{ProfileClaudeCode, "", nil, seedS, seedM, []string{"DISABLE_AUTOUPDATER=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "CLAUDE_CODE_MAX_RETRIES=0"}},
		{ProfileCustom, "/bin/sh", []string{"-c", "true"}, seedS, seedM, nil},
	}
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			p, err := New(Config{Profile: tt.profile, Command: tt.cmd, Args: tt.args}, look, self)
			if err != nil {
				t.Fatal(err)
			}
			if p.Name() != tt.profile {
				t.Errorf("Name() = %q", p.Name())
			}
			if !slices.Equal(p.Strategies(), tt.strat) || !slices.Equal(p.Modes(), tt.modes) {
				t.Errorf("enums = %q %q", p.Strategies(), p.Modes())
			}
			if p.DefaultStrategy() != "auto" || p.DefaultMode() != "centralized" {
				t.Errorf("defaults = %q %q", p.DefaultStrategy(), p.DefaultMode())
			}
			if !slices.Equal(p.Env(), tt.env) {
				t.Errorf("Env() = %q, want %q", p.Env(), tt.env)
			}
			// Returned slices are copies.
			p.Strategies()[0] = "x"
			p.Env()
			if p.Strategies()[0] != "auto" {
				t.Error("Strategies() exposes internal state")
			}
		})
	}
}

func TestArgvRejects(t *testing.T) {
	self := fakeBin(t, "flowgate")
	cf := fakeBin(t, "claude-flow")
	p, err := New(Config{Profile: ProfileClaudeFlowV2, Command: cf, ClaudeCommand: fakeBin(t, "claude")}, nil, self)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := New(Config{Profile: ProfileSim}, nil, self)
	if err != nil {
		t.Fatal(err)
	}
	secret := "top secret objective"
	tests := []struct {
		name string
		p    *Profile
		req  Request
		want error
	}{
		{"empty objective", p, Request{}, ErrInvalidObjective},
		{"flag objective", p, Request{Objective: "--dangerously-skip-permissions"}, ErrInvalidObjective},
		{"dash objective", p, Request{Objective: "-p"}, ErrInvalidObjective},
		{"nul objective", p, Request{Objective: "a\x00b"}, ErrInvalidObjective},
		{"huge objective", p, Request{Objective: strings.Repeat("a", MaxObjectiveBytes+1)}, ErrInvalidObjective},
		{"unknown strategy", p, Request{Objective: secret, Strategy: "auto; rm"}, ErrInvalidOption},
		{"sim lacks claude-flow strategy", sim, Request{Objective: secret, Strategy: "research"}, ErrInvalidOption},
		{"sim lacks claude-flow mode", sim, Request{Objective: secret, Mode: "mesh"}, ErrInvalidOption},
		{"case matters", p, Request{Objective: secret, Mode: "Mesh"}, ErrInvalidOption},
		{"negative agents", p, Request{Objective: secret, Agents: -1}, ErrInvalidOption},
		{"no agents: no engine-side default", p, Request{Objective: secret}, ErrInvalidOption},
		{"too many agents", p, Request{Objective: secret, Agents: MaxAgents + 1}, ErrInvalidOption},
		{"negative timeout", p, Request{Objective: secret, Timeout: -time.Second}, ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.p.Argv(tt.req, "/w")
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "dangerously") {
				t.Errorf("error leaks the objective: %v", err)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	self := fakeBin(t, "flowgate")
	dir := t.TempDir()
	notExec := filepath.Join(dir, "notexec")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	noLook := lookIn(nil)
	tests := []struct {
		name string
		cfg  Config
		self string
		key  string
	}{
		{"unknown profile", Config{Profile: "npx-claude-flow"}, self, "engine.profile"},
		{"empty profile", Config{}, self, "engine.profile"},
		{"relative command", Config{Profile: ProfileClaudeFlowV2, Command: "claude-flow"}, self, "engine.command"},
		{"dot relative command", Config{Profile: ProfileCustom, Command: "./engine"}, self, "engine.command"},
		{"missing command", Config{Profile: ProfileClaudeCode, Command: filepath.Join(dir, "nope")}, self, "engine.command"},
		{"directory command", Config{Profile: ProfileClaudeCode, Command: dir}, self, "engine.command"},
		{"not executable", Config{Profile: ProfileClaudeCode, Command: notExec}, self, "engine.command"},
		{"not in PATH", Config{Profile: ProfileClaudeFlowV2}, self, "engine.command"},
		{"lookPath relative result", Config{Profile: ProfileClaudeCode}, self, "engine.command"},
		{"custom needs command", Config{Profile: ProfileCustom, Args: []string{"{objective}"}}, self, "engine.command"},
		{"sim needs self", Config{Profile: ProfileSim}, "", "engine.command"},
		{"sim relative self", Config{Profile: ProfileSim}, "flowgate", "engine.command"},
		{"args on non-custom", Config{Profile: ProfileSim, Args: []string{"x"}}, self, "engine.args"},
		{"embedded placeholder", Config{Profile: ProfileCustom, Command: "/bin/sh", Args: []string{"--task={objective}"}}, self, "engine.args"},
		{"embedded placeholder suffix", Config{Profile: ProfileCustom, Command: "/bin/sh", Args: []string{"{objective}x"}}, self, "engine.args"},
		{"placeholder typo", Config{Profile: ProfileCustom, Command: "/bin/sh", Args: []string{"{objectiv}"}}, self, "engine.args"},
		{"nul in template", Config{Profile: ProfileCustom, Command: "/bin/sh", Args: []string{"a\x00"}}, self, "engine.args"},
		{"claude missing for claude-flow", Config{Profile: ProfileClaudeFlowV2, Command: self}, self, "engine.claude_command"},
		{"relative claude_command", Config{Profile: ProfileClaudeFlowV2, Command: self, ClaudeCommand: "claude"}, self, "engine.claude_command"},
		{"claude_command not a file", Config{Profile: ProfileClaudeFlowV2, Command: self, ClaudeCommand: dir}, self, "engine.claude_command"},
		{"claude_command on claude-code", Config{Profile: ProfileClaudeCode, Command: self, ClaudeCommand: self}, self, "engine.claude_command"},
		{"unknown permission mode", Config{Profile: ProfileClaudeCode, Command: self, PermissionMode: "yolo"}, self, "engine.permission_mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			look := noLook
			if tt.name == "lookPath relative result" {
				look = lookIn(map[string]string{"claude": "bin/claude"})
			}
			_, err := New(tt.cfg, look, tt.self)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if !strings.HasPrefix(err.Error(), tt.key) {
				t.Errorf("error %q does not name %s", err, tt.key)
			}
		})
	}
}

func TestDefaultCommandLookup(t *testing.T) {
	cf := fakeBin(t, "claude-flow")
	claude := fakeBin(t, "claude")
	var asked []string
	look := func(name string) (string, error) {
		asked = append(asked, name)
		return map[string]string{"claude-flow": cf, "claude": claude}[name], nil
	}
	p, err := New(Config{Profile: ProfileClaudeFlowV2}, look, "/unused")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(asked, []string{"claude-flow", "claude"}) || p.Command() != cf || p.ClaudeCommand() != claude {
		t.Errorf("looked up %q, command %q, claude %q", asked, p.Command(), p.ClaudeCommand())
	}
	// An explicit command is never looked up.
	asked = nil
	if _, err := New(Config{Profile: ProfileClaudeFlowV2, Command: cf, ClaudeCommand: claude}, look, ""); err != nil || asked != nil {
		t.Errorf("explicit command: err %v, looked up %q", err, asked)
	}
}

func TestPackageRootAndInspect(t *testing.T) {
	// An npm global install: bin/tool -> ../lib/node_modules/@scope/tool/bin/tool.js, a
	// #!/usr/bin/env node script whose package reads its own package.json.
	prefix := t.TempDir()
	pkg := filepath.Join(prefix, "lib", "node_modules", "@scope", "tool")
	for _, d := range []string{filepath.Join(pkg, "bin"), filepath.Join(pkg, "node_modules", "dep"), filepath.Join(prefix, "bin"), filepath.Join(prefix, "node", "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(pkg, "package.json"), `{"name":"@scope/tool"}`, 0o644)
	write(filepath.Join(pkg, "node_modules", "dep", "package.json"), `{"name":"dep"}`, 0o644)
	write(filepath.Join(pkg, "bin", "tool.js"), "#!/usr/bin/env -S node --no-warnings\nconsole.log(1)\n", 0o755)
	write(filepath.Join(prefix, "node", "bin", "node"), "", 0o755)
	bin := filepath.Join(prefix, "bin", "tool")
	if err := os.Symlink("../lib/node_modules/@scope/tool/bin/tool.js", bin); err != nil {
		t.Fatal(err)
	}
	in := Inspect(bin, filepath.Join(prefix, "node", "bin")+":/usr/bin")
	if in.Root != pkg || in.Resolved != filepath.Join(pkg, "bin", "tool.js") || in.Interpreter != filepath.Join(prefix, "node", "bin", "node") {
		t.Errorf("Inspect = %+v, want root %s", in, pkg)
	}
	// A file of a nested dependency belongs to that dependency's package.
	if got := PackageRoot(filepath.Join(pkg, "node_modules", "dep", "index.js")); got != filepath.Join(pkg, "node_modules", "dep") {
		t.Errorf("nested root = %s", got)
	}
	// Outside any package: the file's directory.
	if got := PackageRoot("/usr/bin/true"); got != "/usr/bin" {
		t.Errorf("PackageRoot(/usr/bin/true) = %s", got)
	}
	// A native binary has no interpreter.
	if in := Inspect(filepath.Join(prefix, "node", "bin", "node"), "/usr/bin"); in.Interpreter != "" {
		t.Errorf("interpreter of an empty file: %q", in.Interpreter)
	}
}
