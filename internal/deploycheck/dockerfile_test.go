package deploycheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
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
)

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

	t.Run("engine pinned, no install scripts, no npx", func(t *testing.T) {
		e, ok := byName["engine"]
		if !ok {
			t.Fatal("no engine stage")
		}
		var version string
		for _, in := range e.all("ARG") {
			if k, v, _ := strings.Cut(in.args, "="); k == "CLAUDE_FLOW_VERSION" {
				version = v
			}
		}
		if !semverRE.MatchString(version) {
			t.Errorf("CLAUDE_FLOW_VERSION default %q is not an exact version", version)
		}
		run := e.one(t, "RUN").args
		for _, want := range []string{"npm install", "--ignore-scripts", `claude-flow@${CLAUDE_FLOW_VERSION}`} {
			if !strings.Contains(run, want) {
				t.Errorf("engine stage RUN lacks %q", want)
			}
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
