package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/proctest"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/executor/sandbox"
)

var modes = []sandbox.Mode{sandbox.PIDNS, sandbox.PGroup}

func self(t testing.TB) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// shProfile is a custom profile running script with /bin/sh; $1 is the objective.
func shProfile(t testing.TB, script string) *engine.Profile {
	t.Helper()
	p, err := engine.New(engine.Config{Profile: engine.ProfileCustom, Command: "/bin/sh",
		Args: []string{"-c", script, "sh", "{objective}"}}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newExecutor(t *testing.T, mode sandbox.Mode, p *engine.Profile, mod ...func(*Options)) *Executor {
	t.Helper()
	opts := Options{
		Profile:     p,
		WorkdirRoot: filepath.Join(t.TempDir(), "tasks"),
		KillGrace:   300 * time.Millisecond,
		Sandbox:     mode,
		InitPath:    self(t),
		// Scripts run this test binary as helper engines (Landlock is on by default).
		ReadPaths: []string{filepath.Dir(self(t))},
		Logger:    testLogger(t),
	}
	for _, m := range mod {
		m(&opts)
	}
	ex, err := New(opts)
	if errors.Is(err, sandbox.ErrUnavailable) {
		t.Skipf("pid namespaces unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if ex.SandboxMode() != mode {
		t.Fatalf("sandbox mode %s, want %s", ex.SandboxMode(), mode)
	}
	return ex
}

type line struct {
	text      string
	truncated bool
}

// collector records output; onLine, if set, sees every line as it arrives.
type collector struct {
	mu       sync.Mutex
	out, err []line
	onLine   func(stream, text string)
}

func (c *collector) add(stream string, dst *[]line, b []byte, truncated bool) {
	c.mu.Lock()
	*dst = append(*dst, line{string(b), truncated})
	c.mu.Unlock()
	if c.onLine != nil {
		c.onLine(stream, string(b))
	}
}
func (c *collector) Stdout(b []byte, tr bool) { c.add("stdout", &c.out, b, tr) }
func (c *collector) Stderr(b []byte, tr bool) { c.add("stderr", &c.err, b, tr) }

func (c *collector) stdout() []string { return texts(c, c.out) }
func (c *collector) stderr() []string { return texts(c, c.err) }
func texts(c *collector, ls []line) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s []string
	for _, l := range ls {
		s = append(s, l.text)
	}
	return s
}

// cancelOn returns a collector that cancels when a line containing want arrives (n times).
func cancelOn(cancel context.CancelFunc, want string, n int) *collector {
	var mu sync.Mutex
	seen := 0
	return &collector{onLine: func(_, text string) {
		if strings.Contains(text, want) {
			mu.Lock()
			seen++
			if seen == n {
				cancel()
			}
			mu.Unlock()
		}
	}}
}

func newMarker() string { return proctest.Marker() }

func survivors(mark string) []int { return proctest.Survivors(mark) }

// noSurvivors fails if anything of the task is still there, and cleans up so one failure does
// not leak processes into later tests.
func noSurvivors(t *testing.T, mark string) {
	t.Helper()
	if left := survivors(mark); len(left) > 0 {
		for _, pid := range left {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			t.Errorf("survivor pid %d: %q", pid, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func spec(id, objective string) Spec {
	return Spec{TaskID: id, Tenant: "acme", Request: engine.Request{Objective: objective, Agents: 2}}
}

func TestCancelLeavesNoSurvivors(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			mark := newMarker()
			bin := self(t)
			// Children, a grandchild through a subshell, and a background sleeper.
			script := fmt.Sprintf(`%[1]s helper-sleep "$1" & (%[1]s helper-sleep "$1" & wait) & sleep 300 & echo started; wait`, bin)
			ex := newExecutor(t, mode, shProfile(t, script))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			out := cancelOn(cancel, "helper-sleep ready", 2)
			res, err := ex.Run(ctx, spec("t1", mark), out)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("result %+v", res)
			noSurvivors(t, mark)
			// The engine (sh) dies of the SIGTERM; the helpers ignore it and are SIGKILLed
			// as leftovers as soon as the engine is gone, without waiting for the grace.
			if res.Signal != "SIGTERM" || res.ExitCode != 143 {
				t.Errorf("result %+v, want SIGTERM/143", res)
			}
		})
	}
}

func TestCancelPoliteEngineGetsSIGTERM(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			mark := newMarker()
			ex := newExecutor(t, mode, shProfile(t, `echo ready; exec sleep 300`), func(o *Options) { o.KillGrace = time.Minute })
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			res, err := ex.Run(ctx, spec("t1", mark), cancelOn(cancel, "ready", 1))
			if err != nil {
				t.Fatal(err)
			}
			if res.Signal != "SIGTERM" || res.ExitCode != 143 {
				t.Errorf("result %+v, want SIGTERM/143", res)
			}
			// It ended long before the grace: no clock assert, but the grace was a minute.
			if d := res.EndedAt.Sub(res.StartedAt); d > 30*time.Second {
				t.Errorf("took %s", d)
			}
			noSurvivors(t, mark)
		})
	}
}

func TestTimeoutLeavesNoSurvivors(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			mark := newMarker()
			script := fmt.Sprintf(`%[1]s helper-sleep "$1" & sleep 300 & %[1]s helper-sleep --setsid "$1" & wait`, self(t))
			ex := newExecutor(t, mode, shProfile(t, script))
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			res, err := ex.Run(ctx, spec("t1", mark), &collector{})
			if err != nil {
				t.Fatal(err)
			}
			if ctx.Err() == nil {
				t.Fatal("Run returned before the deadline")
			}
			t.Logf("result %+v", res)
			noSurvivors(t, mark)
		})
	}
}

// A setsid'd grandchild that ignores SIGTERM and whose parent exits at once: reparented away
// from the engine, in its own session and process group. PIDNS mode kills it with the
// namespace; PGroup mode still catches it because the supervisor is a child subreaper (the
// orphan is reparented to the supervisor, not to the host's init) and walks its tree.
func TestSetsidGrandchildIgnoringSIGTERM(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			mark := newMarker()
			script := fmt.Sprintf(`(%[1]s helper-sleep --setsid "$1" </dev/null &) ; echo spawned; exec sleep 300`, self(t))
			ex := newExecutor(t, mode, shProfile(t, script))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			res, err := ex.Run(ctx, spec("t1", mark), cancelOn(cancel, "helper-sleep ready", 1))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("result %+v", res)
			noSurvivors(t, mark)
		})
	}
}

// Even when the engine exits by itself, nothing it started may outlive it.
func TestEngineExitKillsLeftovers(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			mark := newMarker()
			script := fmt.Sprintf(`%[1]s helper-sleep --setsid "$1" </dev/null >/dev/null & %[1]s helper-sleep "$1" >/dev/null & sleep 0.3; exit 7`, self(t))
			ex := newExecutor(t, mode, shProfile(t, script))
			res, err := ex.Run(t.Context(), spec("t1", mark), &collector{})
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != 7 || res.Signal != "" {
				t.Errorf("result %+v, want exit 7", res)
			}
			noSurvivors(t, mark)
		})
	}
}

func TestEngineIgnoringSIGTERMIsKilled(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			mark := newMarker()
			ex := newExecutor(t, mode, shProfile(t, `trap "" TERM; echo ready; while :; do sleep 0.05; done`))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			res, err := ex.Run(ctx, spec("t1", mark), cancelOn(cancel, "ready", 1))
			if err != nil {
				t.Fatal(err)
			}
			if res.Signal != "SIGKILL" || res.ExitCode != 137 {
				t.Errorf("result %+v, want SIGKILL/137", res)
			}
			noSurvivors(t, mark)
		})
	}
}

// The engine runs with no core dumps (soft and hard limit 0), no_new_privs and stdin from
// /dev/null.
func TestEngineProcessAttributes(t *testing.T) {
	script := `grep -i "core file" /proc/self/limits; grep NoNewPrivs /proc/self/status; readlink /proc/self/fd/0`
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			// /proc: in pgroup mode Landlock grants none (it would be the host's).
			ex := newExecutor(t, mode, shProfile(t, script), func(o *Options) { o.ReadPaths = append(o.ReadPaths, "/proc") })
			c := &collector{}
			if _, err := ex.Run(t.Context(), spec("t1", "x"), c); err != nil {
				t.Fatal(err)
			}
			out := strings.Join(c.stdout(), "\n")
			if !strings.Contains(strings.Join(strings.Fields(out), " "), "Max core file size 0 0 bytes") ||
				!strings.Contains(out, "NoNewPrivs:\t1") || !strings.Contains(out, "/dev/null") {
				t.Errorf("output:\n%s", out)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	ex := newExecutor(t, sandbox.PIDNS, shProfile(t, `echo out; echo err >&2; exit 42`))
	c := &collector{}
	res, err := ex.Run(t.Context(), spec("t1", "x"), c)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 42 || res.Signal != "" || res.OutputLimitExceeded || res.StartedAt.IsZero() || res.EndedAt.Before(res.StartedAt) {
		t.Errorf("result %+v", res)
	}
	if !slices.Equal(c.stdout(), []string{"out"}) || !slices.Equal(c.stderr(), []string{"err"}) {
		t.Errorf("stdout %q stderr %q", c.stdout(), c.stderr())
	}
}

func TestEnvironmentIsExactlyTheAllowlist(t *testing.T) {
	t.Setenv("FLOWGATE_TEST_CANARY", "canary-value-must-not-leak")
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-server-global-key-must-not-leak")
	t.Setenv("PASS_ME", "passed value")
	t.Setenv("LANG", "de_DE.UTF-8")
	t.Setenv("TZ", "")
	t.Setenv("HOME", "/root/server-home")
	const key = "sk-ant-api03-tenantkey-AAAA"
	for _, mode := range modes {
		t.Run(string(mode)+"/env", func(t *testing.T) {
			p, err := engine.New(engine.Config{Profile: engine.ProfileCustom, Command: "/usr/bin/env"}, nil, "")
			if err != nil {
				t.Fatal(err)
			}
			ex := newExecutor(t, mode, p, func(o *Options) { o.PassEnv = []string{"PASS_ME", "NOT_SET_ANYWHERE"} })
			c := &collector{}
			s := spec("task-env", "x")
			s.APIKey = key
			if _, err := ex.Run(t.Context(), s, c); err != nil {
				t.Fatal(err)
			}
			got := c.stdout()
			slices.Sort(got)
			workdir := filepath.Join(ex.root, "task-env")
			want := []string{
				"ANTHROPIC_API_KEY=[REDACTED]",
				"HOME=" + workdir,
				"LANG=de_DE.UTF-8",
				"PASS_ME=passed value",
				"PATH=" + DefaultPath,
				"TMPDIR=" + filepath.Join(workdir, "tmp"),
				"TZ=UTC",
			}
			if !slices.Equal(got, want) {
				t.Errorf("environment\n %q\nwant\n %q", got, want)
			}
		})
	}
	t.Run("claude-flow-v2 profile variables and key value", func(t *testing.T) {
		bin := self(t)
		claude := fakeClaude(t)
		p, err := engine.New(engine.Config{Profile: engine.ProfileClaudeFlowV2, Command: bin, ClaudeCommand: claude, MaxRetries: 2}, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		ex := newExecutor(t, sandbox.PIDNS, p)
		c := &collector{}
		s := spec("task-cf", "objective")
		s.APIKey = key
		if _, err := ex.Run(t.Context(), s, c); err != nil {
			t.Fatal(err)
		}
		var got struct {
			Args   []string
			Env    []string
			KeySHA string
		}
		if out := c.stdout(); len(out) != 1 || json.Unmarshal([]byte(out[0]), &got) != nil {
			t.Fatalf("stdout %q", out)
		}
		names := []string{}
		for _, kv := range got.Env {
			n, _, _ := strings.Cut(kv, "=")
			names = append(names, n)
		}
		slices.Sort(names)
		wantNames := []string{"ANTHROPIC_API_KEY", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "CLAUDE_CODE_MAX_RETRIES", "CLAUDE_FLOW_NON_INTERACTIVE", "DISABLE_AUTOUPDATER", "HOME", "LANG", "PATH", "TMPDIR", "TZ"}
		if ex.LandlockABI() > 0 {
			// claude-flow runs claude --dangerously-skip-permissions: allowed as root only
			// when the engine is told it is sandboxed, and only when it is.
			wantNames = append(wantNames, "IS_SANDBOX")
			slices.Sort(wantNames)
		}
		if !slices.Equal(names, wantNames) {
			t.Errorf("variables %q, want %q", names, wantNames)
		}
		// claude first, so that claude-flow finds the configured one.
		if !slices.Contains(got.Env, "CLAUDE_FLOW_NON_INTERACTIVE=true") || !slices.Contains(got.Env, "CLAUDE_CODE_MAX_RETRIES=2") ||
			!slices.Contains(got.Env, "PATH="+filepath.Dir(claude)+":"+filepath.Dir(bin)+":"+DefaultPath) {
			t.Errorf("env %q", got.Env)
		}
		sum := sha256.Sum256([]byte(key))
		if got.KeySHA != hex.EncodeToString(sum[:]) {
			t.Error("engine did not get the tenant's key")
		}
		for _, a := range got.Args {
			if strings.Contains(a, key) {
				t.Error("key in argv")
			}
		}
	})
}

func TestPassEnvRefused(t *testing.T) {
	cf, err := engine.New(engine.Config{Profile: engine.ProfileClaudeFlowV2, Command: "/bin/sh", ClaudeCommand: fakeClaude(t)}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, names := range [][]string{
		{"PATH"}, {"HOME"}, {"TMPDIR"}, {"LANG"}, {"TZ"}, {"ANTHROPIC_API_KEY"}, {"A=B"}, {""}, {"1X"}, {"X Y"},
		{"CLAUDE_FLOW_NON_INTERACTIVE"}, {"IS_SANDBOX"}, {"CLAUDE_CODE_MAX_RETRIES"}, {"FLOWGATE_MASTER_KEY"}, {"AWS_SECRET_ACCESS_KEY"}, {"OK", "OK"},
	} {
		_, err := New(Options{Profile: cf, WorkdirRoot: t.TempDir(), PassEnv: names, InitPath: self(t)})
		if err == nil || !strings.HasPrefix(err.Error(), "engine.env") {
			t.Errorf("%q: err %v", names, err)
		}
	}
}

func TestOptionsErrors(t *testing.T) {
	p := shProfile(t, "true")
	file := filepath.Join(t.TempDir(), "file")
	_ = os.WriteFile(file, nil, 0o600)
	for _, tt := range []struct {
		opts Options
		key  string
	}{
		{Options{Profile: p, WorkdirRoot: "relative"}, "engine.workdir_root"},
		{Options{Profile: p, WorkdirRoot: file}, "engine.workdir_root"},
		{Options{Profile: p, WorkdirRoot: t.TempDir(), KillGrace: -1}, "engine.kill_grace"},
		{Options{Profile: p, WorkdirRoot: t.TempDir(), MaxLineBytes: 1}, "engine.max_line_bytes"},
		{Options{Profile: p, WorkdirRoot: t.TempDir(), MaxOutputBytes: -1}, "engine.max_output_bytes"},
		{Options{Profile: p, WorkdirRoot: t.TempDir(), MaxStarting: -1}, "engine.max_starting"},
		{Options{Profile: p, WorkdirRoot: t.TempDir(), Sandbox: "vm", InitPath: self(t)}, "engine.sandbox"},
		{Options{Profile: p, WorkdirRoot: t.TempDir(), InitPath: "flowgate"}, "engine.sandbox"},
	} {
		if _, err := New(tt.opts); err == nil || !strings.HasPrefix(err.Error(), tt.key) {
			t.Errorf("err %v, want %s", err, tt.key)
		}
	}
}

func TestRedactsKeysInStdoutAndStderr(t *testing.T) {
	for _, key := range []string{"sk-ant-api03-Tenant_Key-0123456789", "opaque-tenant-secret/+=42"} {
		t.Run(key[:6], func(t *testing.T) {
			script := `echo "key=$ANTHROPIC_API_KEY!"; echo "stderr:$ANTHROPIC_API_KEY" >&2
				echo "foreign sk-ant-admin01-Other_Key-zz9 end"; echo "foreign sk-ant-oops" >&2; echo "plain sk-ant- line"`
			ex := newExecutor(t, sandbox.PIDNS, shProfile(t, script))
			c := &collector{}
			s := spec("t1", "x")
			s.APIKey = key
			if _, err := ex.Run(t.Context(), s, c); err != nil {
				t.Fatal(err)
			}
			wantOut := []string{"key=[REDACTED]!", "foreign [REDACTED] end", "plain sk-ant- line"}
			wantErr := []string{"stderr:[REDACTED]", "foreign [REDACTED]"}
			if !slices.Equal(c.stdout(), wantOut) || !slices.Equal(c.stderr(), wantErr) {
				t.Errorf("stdout %q\nstderr %q", c.stdout(), c.stderr())
			}
		})
	}
}

func TestObjectiveIsOneArgvElement(t *testing.T) {
	p, err := engine.New(engine.Config{Profile: engine.ProfileCustom, Command: self(t),
		Args: []string{"helper-argv", "{objective}", "{agents}", "{strategy}"}}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range modes {
		ex := newExecutor(t, mode, p)
		for i, obj := range []string{
			"$(id)",
			"; rm -rf / ;",
			"`touch /tmp/pwned` and $HOME and ${PATH}",
			`"double" 'single' \back\slash`,
			"line one\nline two\n\tindented",
			"a && b || c | d > /etc/passwd < /dev/zero & e",
			"* ? [a-z] ~ # !! %s %n {objective}",
			"  spaces around  ",
			"ünïcödé 💥 →",
		} {
			c := &collector{}
			s := spec(fmt.Sprintf("t%d", i), obj)
			s.Request.Strategy = "sequential"
			if _, err := ex.Run(t.Context(), s, c); err != nil {
				t.Fatal(err)
			}
			var args []string
			out := c.stdout()
			if len(out) != 1 || json.Unmarshal([]byte(out[0]), &args) != nil {
				t.Fatalf("%s: output %q", mode, out)
			}
			if want := []string{obj, "2", "sequential"}; !slices.Equal(args, want) {
				t.Errorf("%s: argv %q, want %q", mode, args, want)
			}
		}
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Error("/tmp/pwned exists")
	}
}

func TestHugeLineIsTruncatedAndLaterLinesFlow(t *testing.T) {
	script := `head -c 5242880 /dev/zero | tr '\0' a; echo; echo after1; echo after2 >&2
		head -c 3000000 /dev/zero | tr '\0' b >&2; echo >&2; echo after3 >&2; printf 'no newline at end'`
	ex := newExecutor(t, sandbox.PIDNS, shProfile(t, script))
	c := &collector{}
	if _, err := ex.Run(t.Context(), spec("t1", "x"), c); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	check := func(name string, got []line, want []line) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d lines, want %d", name, len(got), len(want))
		}
		for i, w := range want {
			if got[i].truncated != w.truncated || got[i].text != w.text {
				t.Errorf("%s: line %d truncated=%v len=%d, want truncated=%v len=%d", name, i, got[i].truncated, len(got[i].text), w.truncated, len(w.text))
			}
		}
	}
	check("stdout", c.out, []line{{strings.Repeat("a", DefaultMaxLineBytes), true}, {"after1", false}, {"no newline at end", false}})
	check("stderr", c.err, []line{{"after2", false}, {strings.Repeat("b", DefaultMaxLineBytes), true}, {"after3", false}})
}

func TestLineExactlyAtLimitIsNotTruncated(t *testing.T) {
	ex := newExecutor(t, sandbox.PIDNS, shProfile(t, `head -c 1000 /dev/zero | tr '\0' x; echo; head -c 1001 /dev/zero | tr '\0' y; echo; echo z`),
		func(o *Options) { o.MaxLineBytes = 1000 })
	c := &collector{}
	if _, err := ex.Run(t.Context(), spec("t1", "x"), c); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.out) != 3 || len(c.out[0].text) != 1000 || c.out[0].truncated ||
		len(c.out[1].text) != 1000 || !c.out[1].truncated || c.out[2].text != "z" {
		t.Errorf("lines %d: %v/%d %v/%d", len(c.out), c.out[0].truncated, len(c.out[0].text), c.out[1].truncated, len(c.out[1].text))
	}
}

func TestOutputLimitKillsTask(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			mark := newMarker()
			ex := newExecutor(t, mode, shProfile(t, `(yes "stderr flood $1" >&2 &) ; yes "a line of output $1"`),
				func(o *Options) { o.MaxOutputBytes = 1 << 20; o.KillGrace = 10 * time.Minute })
			var delivered int64
			var mu sync.Mutex
			out := funcOutput(func(b []byte) { mu.Lock(); delivered += int64(len(b)) + 1; mu.Unlock() })
			res, err := ex.Run(t.Context(), spec("t1", mark), out)
			if err != nil {
				t.Fatal(err)
			}
			if !res.OutputLimitExceeded || res.Signal != "SIGKILL" {
				t.Errorf("result %+v", res)
			}
			if delivered > 1<<20 {
				t.Errorf("delivered %d bytes, cap %d", delivered, 1<<20)
			}
			noSurvivors(t, mark)
		})
	}
}

func TestWorkdir(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			script := `echo "home=$HOME"; echo "pwd=$(pwd)"; mkdir -p sub/ro && touch sub/ro/f && chmod 500 sub/ro; echo ready; exec sleep 300`
			ex := newExecutor(t, mode, shProfile(t, script))
			dir := filepath.Join(ex.root, "task-wd")
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var during os.FileInfo
			var statErr error
			c := &collector{onLine: func(_, text string) {
				if text == "ready" {
					during, statErr = os.Stat(dir)
					cancel()
				}
			}}
			if _, err := ex.Run(ctx, spec("task-wd", "x"), c); err != nil {
				t.Fatal(err)
			}
			if statErr != nil || !during.IsDir() || during.Mode().Perm() != 0o700 {
				t.Errorf("during the run: %v %v", during, statErr)
			}
			out := c.stdout()
			if len(out) < 2 || out[0] != "home="+dir || out[1] != "pwd="+dir {
				t.Errorf("output %q, want HOME and cwd %s", out, dir)
			}
			if _, err := os.Lstat(dir); !os.IsNotExist(err) {
				t.Errorf("task directory still there: %v", err)
			}
		})
	}
}

func TestRunStartErrors(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "engine")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := engine.New(engine.Config{Profile: engine.ProfileCustom, Command: bin, Args: []string{"{objective}"}}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	ex := newExecutor(t, sandbox.PIDNS, p)

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tt := range []struct {
		name string
		ctx  context.Context
		spec Spec
	}{
		{"bad task id", t.Context(), spec("../escape", "x")},
		{"empty task id", t.Context(), spec("", "x")},
		{"flag objective", t.Context(), spec("t1", "--help")},
		{"bad strategy", t.Context(), Spec{TaskID: "t2", Request: engine.Request{Objective: "x", Agents: 1, Strategy: "research"}}},
		{"cancelled", cancelled, spec("t3", "x")},
	} {
		_, err := ex.Run(tt.ctx, tt.spec, &collector{})
		if !errors.Is(err, ErrStart) {
			t.Errorf("%s: err %v", tt.name, err)
		}
	}

	// The same task id twice at once: the second must not share the directory.
	blocker := newExecutor(t, sandbox.PIDNS, shProfile(t, "echo ready; exec sleep 300"))
	ctx, stop := context.WithCancel(t.Context())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := blocker.Run(ctx, spec("dup", "x"), &collector{onLine: func(string, string) { close(started) }})
		done <- err
	}()
	<-started
	_, err = blocker.Run(t.Context(), spec("dup", "x"), &collector{})
	stop()
	if !errors.Is(err, ErrStart) {
		t.Errorf("duplicate task id: %v", err)
	}
	if err := <-done; err != nil {
		t.Error(err)
	}

	// The binary disappears after start-up: a start error, not a run.
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	_, err = ex.Run(t.Context(), spec("t4", "x"), &collector{})
	if !errors.Is(err, ErrStart) || !errors.Is(err, sandbox.ErrStart) {
		t.Errorf("missing binary: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(ex.root, "t4")); !os.IsNotExist(err) {
		t.Error("task directory left behind")
	}
}

// The gateway itself dies (SIGKILL): nothing of its tasks may survive it.
func TestGatewayDeathKillsTask(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			mark := newMarker()
			root := filepath.Join(t.TempDir(), "tasks")
			cmd := proctest.StartHelper(t, self(t), "helper-gateway", string(mode), root, mark)
			if len(survivors(mark)) < 3 {
				t.Errorf("expected the task's processes to run, found %v", survivors(mark))
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			// The kernel (PIDNS) or the supervisor (PGroup) cleans up asynchronously.
			proctest.WaitGone(mark, 10*time.Second)
			noSurvivors(t, mark)
		})
	}
}

func TestConcurrentRuns(t *testing.T) {
	ex := newExecutor(t, sandbox.PIDNS, shProfile(t, `for i in 1 2 3 4 5; do echo "$1 $i"; echo "$1 err $i" >&2; done`))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			c := &collector{}
			obj := fmt.Sprintf("task%d", i)
			res, err := ex.Run(t.Context(), spec(obj, obj), c)
			if err != nil || res.ExitCode != 0 || len(c.stdout()) != 5 || len(c.stderr()) != 5 || c.stdout()[4] != obj+" 5" {
				t.Errorf("%s: %v %+v %q", obj, err, res, c.stdout())
			}
		})
	}
	wg.Wait()
}

// The PGroup hole (an engine kills its own supervisor after leaving a setsid'd process behind
// that holds stdout): Run must still return, after the drain timeout, and not hang on the pipe.
// Landlock (ABI 6) closes the hole, so it is off here; see the sandbox's
// TestLandlockEngineCannotKillPGroupSupervisor.
func TestPGroupEscapeeDoesNotHangRun(t *testing.T) {
	mark := newMarker()
	t.Cleanup(func() {
		for _, pid := range survivors(mark) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	script := fmt.Sprintf(`setsid %s helper-sleep "$1" & sleep 0.3; echo escaping; kill -KILL $PPID; sleep 300`, self(t))
	ex := newExecutor(t, sandbox.PGroup, shProfile(t, script), func(o *Options) { o.Landlock = sandbox.LandlockOff })
	c := &collector{}
	res, err := ex.Run(t.Context(), spec("t1", mark), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("result %+v, output %q, escaped: %v", res, c.stdout(), survivors(mark))
	if !slices.Contains(c.stdout(), "escaping") {
		t.Errorf("output %q", c.stdout())
	}
}

// fakeClaude is an executable named claude in a directory of its own, for profiles that only
// need engine.claude_command to exist.
func fakeClaude(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "claude")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'fake claude'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
