package deploycheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
	line int
}

type stage struct {
	name, base string
	instrs     []instruction
}

func parseDockerfile(t *testing.T, data []byte) (args map[string]string, stages []stage) {
	t.Helper()
	var instrs []instruction
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(line, "#") {
			continue // comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		cmd, rest, _ := strings.Cut(cur.String(), " ")
		instrs = append(instrs, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(rest), line: start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends inside a continued instruction")
	}
	args = map[string]string{}
	for _, in := range instrs {
		switch {
		case in.cmd == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			s := stage{base: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
		case len(stages) > 0:
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	return args, stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

func (s stage) one(t *testing.T, cmd string) instruction {
	t.Helper()
	l := s.all(cmd)
	if len(l) != 1 {
		t.Fatalf("stage %s: %d %s instructions, want 1", s.name, len(l), cmd)
	}
	return l[0]
}

// execForm decodes a JSON array argument (ENTRYPOINT, CMD, HEALTHCHECK CMD).
func execForm(t *testing.T, where, s string) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(s), &argv); err != nil {
		t.Fatalf("%s: not exec (JSON array) form: %s", where, s)
	}
	return argv
}

var (
	pinnedTagRE = regexp.MustCompile(`^[a-z0-9./_-]+(:v?[0-9][0-9A-Za-z._-]*)?(@sha256:[0-9a-f]{64})?$`)
	argRefRE    = regexp.MustCompile(`^\$\{?([A-Z_]+)\}?$`)
	npxRE       = regexp.MustCompile(`(^|[\s;&|(])npx\s`)
	semverRE    = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$`)
	echoRE      = regexp.MustCompile(`echo\s+("[^"]*"|'[^']*')`)
)

const (
	claudeCodePkg = "@anthropic-ai/claude-code"
	claudeFlowPkg = "claude-flow"
)

// enginePins reads scripts/engines.env, the one place that pins the engine versions.
func enginePins(t *testing.T) map[string]string {
	t.Helper()
	pins := map[string]string{}
	for i, l := range strings.Split(string(readFile(t, "scripts/engines.env")), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("scripts/engines.env:%d: not NAME=VALUE: %s", i+1, l)
		}
		pins[k] = v
	}
	for _, k := range []string{"CLAUDE_CODE_VERSION", "CLAUDE_FLOW_VERSION"} {
		if !semverRE.MatchString(pins[k]) {
			t.Fatalf("scripts/engines.env: %s=%q is not an exact version", k, pins[k])
		}
	}
	return pins
}

// npmInstall is one `npm install` of an engine in a RUN: its --prefix, its flags and the shell
// commands (split on &&) that follow it in the same RUN.
type npmInstall struct {
	prefix string
	flags  map[string]bool
	after  []string
}

// npmInstalls finds the engine installs of a stage by package name. Every npm install must skip
// package scripts, name a --prefix and pin its one package to ${CLAUDE_CODE_VERSION} or
// ${CLAUDE_FLOW_VERSION}.
func npmInstalls(t *testing.T, s stage) map[string]npmInstall {
	t.Helper()
	pinVar := map[string]string{claudeCodePkg: "CLAUDE_CODE_VERSION", claudeFlowPkg: "CLAUDE_FLOW_VERSION"}
	out := map[string]npmInstall{}
	for _, in := range s.all("RUN") {
		cmds := strings.Split(in.args, "&&")
		for i := range cmds {
			cmds[i] = strings.Join(strings.Fields(cmds[i]), " ")
		}
		for i, c := range cmds {
			if !strings.HasPrefix(c, "npm install ") && !strings.HasPrefix(c, "npm i ") {
				continue
			}
			inst := npmInstall{flags: map[string]bool{}, after: cmds[i+1:]}
			var specs []string
			f := strings.Fields(c)[2:]
			for j := 0; j < len(f); j++ {
				switch a := f[j]; {
				case a == "--prefix" && j+1 < len(f):
					inst.prefix = f[j+1]
					j++
				case strings.HasPrefix(a, "--prefix="):
					inst.prefix = strings.TrimPrefix(a, "--prefix=")
				case strings.HasPrefix(a, "-"):
					inst.flags[a] = true
				default:
					specs = append(specs, strings.Trim(a, `"'`))
				}
			}
			if !inst.flags["--ignore-scripts"] {
				t.Errorf("line %d: npm install without --ignore-scripts", in.line)
			}
			if len(specs) != 1 {
				t.Errorf("line %d: npm install of %v, want one package per install", in.line, specs)
				continue
			}
			at := strings.LastIndex(specs[0], "@")
			pkg, version := specs[0][:max(at, 0)], specs[0][at+1:]
			if v, ok := pinVar[pkg]; !ok || version != "${"+v+"}" {
				t.Errorf("line %d: npm install %s, want %s@${CLAUDE_CODE_VERSION} or %s@${CLAUDE_FLOW_VERSION}", in.line, specs[0], claudeCodePkg, claudeFlowPkg)
				continue
			}
			if !strings.HasPrefix(inst.prefix, "/") {
				t.Errorf("line %d: npm install %s without an absolute --prefix", in.line, pkg)
			}
			if _, dup := out[pkg]; dup {
				t.Errorf("line %d: %s installed twice", in.line, pkg)
			}
			out[pkg] = inst
		}
	}
	return out
}

// stageEnv is the ENV a stage sets (NAME=VALUE form, values without spaces or quotes).
func stageEnv(s stage) map[string]string {
	env := map[string]string{}
	for _, in := range s.all("ENV") {
		for _, f := range strings.Fields(in.args) {
			if k, v, ok := strings.Cut(f, "="); ok {
				env[k] = v
			}
		}
	}
	return env
}

func stageText(s stage) string {
	var b strings.Builder
	for _, in := range s.instrs {
		b.WriteString(in.args + "\n")
	}
	return b.String()
}

// pinned reports whether image names an exact version: a tag that starts with a digit (no
// latest, no bare major like "22") or a digest.
func pinned(image string) bool {
	if strings.Contains(image, "latest") || !pinnedTagRE.MatchString(image) {
		return false
	}
	_, tag, hasTag := strings.Cut(image, ":")
	hasDigest := strings.Contains(image, "@sha256:")
	if hasTag && !hasDigest {
		return strings.Count(strings.Split(tag, "-")[0], ".") >= 1
	}
	return hasTag || hasDigest
}

func TestDockerfile(t *testing.T) {
	args, stages := parseDockerfile(t, readFile(t, "Dockerfile"))
	byName := map[string]stage{}
	for _, s := range stages {
		byName[s.name] = s
	}

	t.Run("base images pinned", func(t *testing.T) {
		if len(stages) < 3 {
			t.Fatalf("%d stages, want a multi-stage build (build, engine, runtime)", len(stages))
		}
		seen := map[string]bool{}
		for _, s := range stages {
			base := s.base
			if m := argRefRE.FindStringSubmatch(base); m != nil {
				v, ok := args[m[1]]
				if !ok {
					t.Errorf("FROM %s: ARG %s has no default before the first FROM", base, m[1])
					continue
				}
				base = v
			}
			switch {
			case base == "scratch", seen[base]:
			case !pinned(base):
				t.Errorf("stage %s: base image %q is not pinned to an exact tag or digest", s.name, base)
			}
			seen[s.name] = true
		}
	})

	t.Run("static trimmed binary with version", func(t *testing.T) {
		b, ok := byName["build"]
		if !ok {
			t.Fatal("no build stage")
		}
		var env, run strings.Builder
		for _, in := range b.all("ENV") {
			env.WriteString(in.args + " ")
		}
		for _, in := range b.all("RUN") {
			run.WriteString(in.args + " ")
		}
		if !strings.Contains(env.String(), "CGO_ENABLED=0") {
			t.Error("build stage does not set CGO_ENABLED=0")
		}
		for _, want := range []string{"go build", "-trimpath", "-X main.version=${VERSION}", "-X main.commit=${COMMIT}", "./cmd/flowgate"} {
			if !strings.Contains(run.String(), want) {
				t.Errorf("build stage RUN lacks %q", want)
			}
		}
		// The -X targets must exist in package main, or the linker silently ignores them.
		mainGo := string(readFile(t, "cmd/flowgate/main.go"))
		for _, v := range []string{"version", "commit"} {
			if !regexp.MustCompile(`(?m)^\s+` + v + `\s+= "`).MatchString(mainGo) {
				t.Errorf("cmd/flowgate has no string variable %s for -X main.%s", v, v)
			}
		}
	})

	t.Run("engine versions are scripts/engines.env's", func(t *testing.T) {
		pins := enginePins(t)
		for _, name := range []string{"CLAUDE_CODE_VERSION", "CLAUDE_FLOW_VERSION"} {
			if got, ok := args[name]; !ok || got != pins[name] {
				t.Errorf("global ARG %s=%q, scripts/engines.env pins %q", name, got, pins[name])
			}
			// A stage ARG with a default of its own would shadow the pin; one without a
			// declaration leaves ${NAME} empty in that stage.
			for _, s := range stages {
				declared := false
				for _, in := range s.all("ARG") {
					if k, v, hasDefault := strings.Cut(in.args, "="); k == name {
						declared = true
						if hasDefault && v != pins[name] {
							t.Errorf("stage %s, line %d: ARG %s=%s, scripts/engines.env pins %q", s.name, in.line, name, v, pins[name])
						}
					}
				}
				if uses := strings.Contains(stageText(s), "${"+name+"}"); uses && !declared {
					t.Errorf("stage %s uses ${%s} without declaring ARG %s", s.name, name, name)
				}
			}
		}
	})

	t.Run("engine stage installs both engines, pinned, no package scripts, no npx", func(t *testing.T) {
		e, ok := byName["engine"]
		if !ok {
			t.Fatal("no engine stage")
		}
		installs := npmInstalls(t, e)
		cc, ok := installs[claudeCodePkg]
		if !ok {
			t.Fatalf("engine stage does not npm install %s@${CLAUDE_CODE_VERSION}", claudeCodePkg)
		}
		cf, ok := installs[claudeFlowPkg]
		if !ok {
			t.Fatalf("engine stage does not npm install %s@${CLAUDE_FLOW_VERSION}", claudeFlowPkg)
		}
		if cc.prefix == cf.prefix {
			t.Errorf("both engines installed under --prefix %s: each needs its own package tree", cc.prefix)
		}
		// Claude Code's native binary is its platform package, an optional dependency;
		// claude-flow's nested Claude Code must not pull those ~400 MB binaries.
		if cc.flags["--omit=optional"] {
			t.Errorf("%s installed with --omit=optional: no native binary to place", claudeCodePkg)
		}
		if !cf.flags["--omit=optional"] {
			t.Errorf("%s installed without --omit=optional", claudeFlowPkg)
		}
		// The one package script run is Claude Code's install.cjs, in its package directory.
		pkgDir := cc.prefix + "/lib/node_modules/" + claudeCodePkg
		ranInstall := false
		for i, c := range cc.after {
			if c == "node "+pkgDir+"/install.cjs" || (c == "node install.cjs" && i > 0 && slices.Contains(cc.after[:i], "cd "+pkgDir)) {
				ranInstall = true
			}
		}
		if !ranInstall {
			t.Errorf("the RUN installing %s does not run its install.cjs in %s (npm --ignore-scripts skips it: bin/claude stays a placeholder)", claudeCodePkg, pkgDir)
		}
		for _, s := range stages {
			for _, in := range s.instrs {
				if npxRE.MatchString(in.args) || strings.Contains(in.args, "@alpha") || strings.Contains(in.args, "@latest") {
					t.Errorf("line %d: %s %s", in.line, in.cmd, in.args)
				}
				if in.cmd == "ADD" && strings.Contains(in.args, "://") {
					t.Errorf("line %d: ADD of a URL", in.line)
				}
			}
		}
	})

	t.Run("default image runs both engines from the configured paths", func(t *testing.T) {
		e, ok := byName["engine"]
		f, ok2 := byName["flowgate"]
		if !ok || !ok2 {
			t.Fatal("no engine or flowgate stage")
		}
		installs := npmInstalls(t, e)
		env := stageEnv(f)
		if env["FLOWGATE_ENGINE_PROFILE"] != "claude-flow-v2" {
			t.Errorf("FLOWGATE_ENGINE_PROFILE=%q, want claude-flow-v2", env["FLOWGATE_ENGINE_PROFILE"])
		}
		for _, c := range []struct{ pkg, bin, env string }{
			{claudeFlowPkg, "claude-flow", "FLOWGATE_ENGINE_COMMAND"},
			{claudeCodePkg, "claude", "FLOWGATE_ENGINE_CLAUDE_COMMAND"},
		} {
			in, ok := installs[c.pkg]
			if !ok {
				t.Errorf("engine stage does not install %s", c.pkg)
				continue
			}
			// The gateway grants the engine read/execute on the binary's package root;
			// /opt is one of its default read paths.
			if !strings.HasPrefix(in.prefix, "/opt/") {
				t.Errorf("%s installed under %s, want a directory under /opt", c.pkg, in.prefix)
			}
			copied := false
			for _, cp := range f.all("COPY") {
				if fl := strings.Fields(cp.args); len(fl) == 3 && fl[0] == "--from=engine" && fl[1] == in.prefix && fl[2] == in.prefix {
					copied = true
				}
			}
			if !copied {
				t.Errorf("flowgate stage lacks COPY --from=engine %s %s", in.prefix, in.prefix)
			}
			if want := in.prefix + "/bin/" + c.bin; env[c.env] != want {
				t.Errorf("ENV %s=%q, want %q (npm --prefix %s)", c.env, env[c.env], want, in.prefix)
			}
		}
		// The build-time check: as the runtime user, each configured binary prints its pinned
		// version.
		user := f.one(t, "USER")
		var check string
		for _, in := range f.all("RUN") {
			if strings.Contains(in.args, "--version") {
				if in.line < user.line {
					t.Errorf("line %d: the --version check runs before USER %s (as root)", in.line, user.args)
				}
				// What the check prints on failure names the commands too: not evidence.
				check += echoRE.ReplaceAllString(in.args, "") + " "
			}
		}
		for _, c := range []struct{ env, version string }{
			{"FLOWGATE_ENGINE_CLAUDE_COMMAND", "CLAUDE_CODE_VERSION"},
			{"FLOWGATE_ENGINE_COMMAND", "CLAUDE_FLOW_VERSION"},
		} {
			runs := false
			for _, form := range []string{`$("${` + c.env + `}" --version`, "$(${" + c.env + "} --version", "$(" + env[c.env] + " --version"} {
				runs = runs || (env[c.env] != "" && strings.Contains(check, form))
			}
			if !runs {
				t.Errorf("flowgate stage does not capture $(%s --version) (%s) at build time", c.env, env[c.env])
			}
			if !strings.Contains(check, "${"+c.version+"}") {
				t.Errorf("the build-time --version check does not compare against ${%s}", c.version)
			}
		}
	})

	last := stages[len(stages)-1]
	if last.name != "flowgate" {
		t.Errorf("the default (last) stage is %q, want flowgate", last.name)
	}
	serveFlags := commandFlags(t, "serve")
	hcFlags := commandFlags(t, "healthcheck")
	for _, name := range []string{"flowgate", "flowgate-static"} {
		s, ok := byName[name]
		if !ok {
			t.Errorf("no %s stage", name)
			continue
		}
		t.Run("runtime "+name, func(t *testing.T) {
			user := s.one(t, "USER").args
			if !regexp.MustCompile(`^[1-9][0-9]*:[1-9][0-9]*$`).MatchString(user) {
				t.Errorf("USER %q: want a numeric non-root uid:gid", user)
			}
			ep := execForm(t, "ENTRYPOINT", s.one(t, "ENTRYPOINT").args)
			if len(ep) != 1 || ep[0] != "/usr/local/bin/flowgate" {
				t.Errorf("ENTRYPOINT %v, want [/usr/local/bin/flowgate]", ep)
			}
			cmd := execForm(t, "CMD", s.one(t, "CMD").args)
			if len(cmd) == 0 || cmd[0] != "serve" {
				t.Fatalf("CMD %v does not run serve", cmd)
			}
			for _, a := range cmd[1:] {
				if n := strings.TrimLeft(a, "-"); strings.HasPrefix(a, "-") && !serveFlags[n] {
					t.Errorf("CMD flag %s is not a flag of flowgate serve", a)
				}
			}
			hc := s.one(t, "HEALTHCHECK").args
			_, hcCmd, ok := strings.Cut(hc, "CMD ")
			if !ok {
				t.Fatalf("HEALTHCHECK %q has no CMD", hc)
			}
			argv := execForm(t, "HEALTHCHECK", hcCmd)
			if len(argv) < 2 || argv[0] != "/usr/local/bin/flowgate" || argv[1] != "healthcheck" {
				t.Errorf("HEALTHCHECK runs %v, want /usr/local/bin/flowgate healthcheck", argv)
			}
			for _, a := range argv[2:] {
				if n := strings.TrimLeft(a, "-"); strings.HasPrefix(a, "-") && !hcFlags[n] {
					t.Errorf("HEALTHCHECK flag %s is not a flag of flowgate healthcheck", a)
				}
			}
			for _, in := range s.all("RUN") {
				for _, tool := range []string{"curl", "wget", "apt-get install", "npm install"} {
					if strings.Contains(in.args, tool) {
						t.Errorf("runtime stage runs %s (line %d)", tool, in.line)
					}
				}
			}
			expose := map[string]bool{}
			for _, in := range s.all("EXPOSE") {
				for _, p := range strings.Fields(in.args) {
					expose[p] = true
				}
			}
			if !expose["8080"] || !expose["9090"] {
				t.Errorf("EXPOSE %v, want 8080 and 9090", keys(expose))
			}
			// ENV names the image sets must be real configuration keys.
			known := envKeys()
			for _, in := range s.all("ENV") {
				for _, f := range strings.Fields(in.args) {
					k, _, _ := strings.Cut(f, "=")
					if strings.HasPrefix(k, "FLOWGATE_") && !known[k] {
						t.Errorf("ENV %s is not a configuration key", k)
					}
				}
			}
			// /data must belong to the runtime user: a read-only root leaves it the only
			// writable place besides /tmp.
			var dataOwned bool
			for _, in := range s.all("COPY") {
				if strings.Contains(in.args, "--chown=10001:10001") && strings.HasSuffix(in.args, " /data") {
					dataOwned = true
				}
				if !strings.Contains(in.args, "--from=") {
					src := strings.Fields(in.args)[0]
					if _, err := os.Stat(filepath.Join(root(t), src)); err != nil {
						t.Errorf("COPY %s: %v", src, err)
					}
				}
			}
			if !dataOwned {
				t.Error("/data is not created owned by 10001:10001")
			}
		})
	}
}

// The deployment configurations that pin engine paths pin the image's: the image's ENV overrides
// the file, so a mismatch would be silent in the image and wrong wherever the file is used alone.
func TestDeployConfigsMatchImageEnginePaths(t *testing.T) {
	_, stages := parseDockerfile(t, readFile(t, "Dockerfile"))
	env := stageEnv(stages[len(stages)-1])
	for _, rel := range []string{"deploy/compose/flowgate.yaml", "deploy/kubernetes/flowgate.yaml"} {
		docs := yamlDocs(t, rel)
		if len(docs) != 1 {
			t.Fatalf("%s: %d YAML documents, want 1", rel, len(docs))
		}
		for key, name := range map[string]string{
			"profile":        "FLOWGATE_ENGINE_PROFILE",
			"command":        "FLOWGATE_ENGINE_COMMAND",
			"claude_command": "FLOWGATE_ENGINE_CLAUDE_COMMAND",
		} {
			if v := getString(docs[0], "engine", key); v != "" && v != env[name] {
				t.Errorf("%s: engine.%s %q, the image sets %s=%q", rel, key, v, name, env[name])
			}
		}
	}
}

func TestDockerignore(t *testing.T) {
	lines := map[string]bool{}
	for _, l := range strings.Split(string(readFile(t, ".dockerignore")), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	// State, keys and the VCS never enter the build context.
	for _, want := range []string{".git", "/data/", "**/*.key", "**/*.pem", "/flowgate", "deploy/"} {
		if !lines[want] {
			t.Errorf(".dockerignore lacks %q", want)
		}
	}
}

func TestPinnedHelper(t *testing.T) {
	for image, want := range map[string]bool{
		"golang:1.26.8-bookworm": true, "node:22.21.1-bookworm-slim": true, "busybox:1.37.0": true,
		"golang:1.26.8-bookworm@sha256:" + strings.Repeat("a", 64): true,
		"golang:latest": false, "node:22": false, "node:lts-slim": false, "redis": false, "redis:alpine": false,
		"prom/prometheus:v3.5.0": true, "nginxinc/nginx-unprivileged:1.28.0-alpine": true, "postgres:17.6-bookworm": true,
		"grafana/grafana:main": false, "busybox:stable": false,
	} {
		if got := pinned(image); got != want {
			t.Errorf("pinned(%q) = %v, want %v", image, got, want)
		}
	}
}
