package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/client"
	"github.com/flowgate/flowgate/internal/proctest"
)

func TestCleanEscapesTerminalControls(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text", "plain text"},
		{"evil\x1b]0;pwned\x07title", `evil\x1b]0;pwned\x07title`},
		{"two\nlines\ttab", `two\nlines tab`},
		{"bidi \u202egnp.exe", `bidi \u202egnp.exe`},
		{"c1 \u009b31m", `c1 \x9b31m`},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"ünïcødé ✓ 日本", "ünïcødé ✓ 日本"},
		{strings.Repeat("a", 10), "aaaa…"},
	}
	for _, tc := range tests {
		max := 100
		if len(tc.want) < len(tc.in) && strings.HasSuffix(tc.want, "…") {
			max = 4
		}
		if got := clean(tc.in, max); got != tc.want {
			t.Errorf("clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDescribeEvent(t *testing.T) {
	tests := []struct{ frame, want string }{
		{`{"type":"agent_spawn","agentId":"agent-1","agentType":"coder","name":"c1"}`, "agent agent-1 spawned (coder) c1"},
		{`{"type":"task_progress","progress":40,"message":"half"}`, "40% half"},
		{`{"type":"assistant","agentId":"a1","message":{"content":[{"type":"text","text":"hi"},{"type":"tool_use","name":"Bash","input":{"command":"ls"}}]}}`, `a1: hi → Bash {"command":"ls"}`},
		{`{"type":"user","message":{"content":[{"type":"tool_result","content":"ok"}]}}`, "← ok"},
		{`{"type":"task_output","line":"plain"}`, "plain"},
		{`{"type":"task_log","level":"error","message":"oops"}`, "[error] oops"},
		{`{"type":"task_complete","status":"failed","exitCode":1,"durationMs":12,"error":"boom"}`, "failed (exit 1, 12 ms): boom"},
		{`{"type":"custom","taskId":"t","seq":3,"serverTime":"x","k":"v"}`, `{"k":"v"}`},
	}
	for _, tc := range tests {
		var m map[string]any
		if err := json.Unmarshal([]byte(tc.frame), &m); err != nil {
			t.Fatal(err)
		}
		if got := describeEvent(m); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.frame, got, tc.want)
		}
	}
}

func TestSwarmTokenSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(loose, []byte("loose-token"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "FLOWGATE_TOKEN" {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name    string
		f       swarmFlags
		env     string
		want    string
		wantErr bool
		warn    bool
	}{
		{"env", swarmFlags{}, "from-env", "from-env", false, false},
		{"file beats env", swarmFlags{tokenFile: file}, "from-env", "from-file", false, false},
		{"flag beats env", swarmFlags{token: "from-flag"}, "from-env", "from-flag", false, false},
		{"flag and file", swarmFlags{token: "a", tokenFile: file}, "", "", true, false},
		{"none", swarmFlags{}, "", "", true, false},
		{"missing file", swarmFlags{tokenFile: filepath.Join(dir, "nope")}, "", "", true, false},
		{"loose file warns", swarmFlags{tokenFile: loose}, "", "loose-token", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got, err := swarmToken(tc.f, env(tc.env), &stderr)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %q, %v", got, err)
			}
			if err != nil && strings.Contains(err.Error(), "from-") {
				t.Errorf("the error shows a token: %v", err)
			}
			if tc.warn != strings.Contains(stderr.String(), "readable by other users") {
				t.Errorf("stderr %q", stderr.String())
			}
			if strings.Contains(stderr.String(), "loose-token") {
				t.Error("the warning shows the token")
			}
		})
	}
}

func TestSwarmPrinter(t *testing.T) {
	frames := []string{
		`{"type":"task_created","taskId":"t1","objective":"o","requestId":"r"}`,
		`{"type":"agent_spawn","taskId":"t1","seq":1,"agentId":"a1","serverTime":"2026-01-01T00:00:00.000Z"}`,
		`{"type":"task_progress","taskId":"t1","seq":2,"progress":50}`,
		`{"type":"task_complete","taskId":"t1","seq":3,"status":"success","exitCode":0,"durationMs":5}`,
	}
	msgs := make([]client.Message, len(frames))
	for i, f := range frames {
		if err := json.Unmarshal([]byte(f), &msgs[i]); err != nil {
			t.Fatal(err)
		}
		msgs[i].Raw = json.RawMessage(f)
	}
	for _, mode := range []struct {
		name      string
		json, tty bool
	}{{"json", true, false}, {"lines", false, false}, {"tty", false, true}} {
		t.Run(mode.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := newSwarmPrinter(&buf, mode.json, mode.tty)
			for _, m := range msgs {
				p.event(m)
			}
			p.finish()
			out := buf.String()
			switch {
			case mode.json:
				if out != strings.Join(frames, "\n")+"\n" {
					t.Errorf("json output %q", out)
				}
			case mode.tty:
				if !strings.Contains(out, "[############------------]  50%") || !strings.HasSuffix(out, "\r\x1b[K") {
					t.Errorf("no progress line: %q", out)
				}
			default:
				if strings.Contains(out, "\x1b") || strings.Contains(out, "\r") {
					t.Errorf("terminal control codes without a terminal: %q", out)
				}
				if !strings.Contains(out, "#2   task_progress   50%") {
					t.Errorf("output %q", out)
				}
			}
		})
	}
}

// ---- against a real `flowgate serve --dev` -----------------------------------------------

// buildFlowgate builds this command into the test's directory (go's build cache makes a
// second build cheap).
func buildFlowgate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "flowgate")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type devServer struct {
	bin, url, userToken, dataDir string
	logs                         *bytes.Buffer
}

func startDev(t *testing.T) *devServer {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: this test starts a real gateway process; run without -short (scripts/test does)")
	}
	bin := buildFlowgate(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "serve", "--dev", "--data-dir", dir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "FLOWGATE_SERVER_ADDR=127.0.0.1:0", "FLOWGATE_OPS_ADDR=127.0.0.1:0"}
	logs := &bytes.Buffer{}
	var mu sync.Mutex
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if logs.Len() < 1<<20 {
			logs.Write(p)
		}
		return len(p), nil
	})
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Registered before Start's cleanup, so it runs after the gateway has stopped and its
	// log is complete.
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("gateway log:\n%s", logs.String())
			mu.Unlock()
		}
	})
	exited := proctest.Start(t, cmd, syscall.SIGTERM, 40*time.Second)
	s := &devServer{bin: bin, dataDir: dir, logs: logs}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ": ")
			switch k {
			case "url":
				s.url = v
			case "user-token":
				s.userToken = v
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("gateway exited early:\n%s", logs.String())
	case <-time.After(90 * time.Second):
		t.Fatal("gateway not ready after 90s")
	}
	return s
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// swarmRun is one finished `flowgate swarm`.
type swarmRun struct {
	code           int
	stdout, stderr string
}

func (s *devServer) swarm(t *testing.T, env []string, args ...string) swarmRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, append([]string{"swarm"}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dataDir}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return swarmRun{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestSwarmCommand(t *testing.T) {
	s := startDev(t)
	tokenEnv := "FLOWGATE_TOKEN=" + s.userToken

	t.Run("success streams events and exits 0", func(t *testing.T) {
		r := s.swarm(t, []string{tokenEnv}, "--url", s.url, "--agents", "2", "--strategy", "parallel", "--timeout", "60", "write a poem sim:events=6 sim:pace=5ms")
		if r.code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{"task_created", "agent_spawn", "task_progress", "task_complete", "success (exit 0", "result: Simulated swarm completed: write a poem"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
			}
		}
		if strings.Count(r.stdout, "agent_spawn") != 2 {
			t.Errorf("want 2 agents:\n%s", r.stdout)
		}
		if strings.Contains(r.stdout+r.stderr, s.userToken) {
			t.Error("the token was printed")
		}
		if strings.Contains(r.stdout, "\x1b") {
			t.Error("terminal codes on a pipe")
		}
	})

	t.Run("flags after the objective and a token file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(file, []byte(s.userToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := s.swarm(t, nil, "--url", s.url, "objective first sim:events=3 sim:pace=1ms", "--json", "--token-file", file)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		var first, last map[string]any
		for i, l := range lines {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("line %d is not JSON: %q", i, l)
			}
			if i == 0 {
				first = m
			}
			last = m
		}
		if first["type"] != "task_created" || first["objective"] != "objective first sim:events=3 sim:pace=1ms" {
			t.Errorf("first line %v", first)
		}
		if last["type"] != "task_complete" || last["status"] != "success" {
			t.Errorf("last line %v", last)
		}
	})

	t.Run("ticket transport", func(t *testing.T) {
		r := s.swarm(t, []string{tokenEnv}, "--url", s.url, "--token-transport", "ticket", "by ticket sim:events=2 sim:pace=1ms")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("failed task exits 1", func(t *testing.T) {
		r := s.swarm(t, []string{tokenEnv}, "--url", s.url, "doomed sim:fail sim:events=4 sim:pace=1ms")
		if r.code != swarmExitTask {
			t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "task_complete") || !strings.Contains(r.stderr, "task failed") {
			t.Errorf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		}
	})

	t.Run("bad token: one line, non-zero", func(t *testing.T) {
		for _, transport := range []string{"header", "subprotocol", "ticket"} {
			r := s.swarm(t, []string{"FLOWGATE_TOKEN=not.a.valid-token"}, "--url", s.url, "--token-transport", transport, "never runs")
			if r.code != swarmExitConnect {
				t.Errorf("%s: exit %d\n%s", transport, r.code, r.stderr)
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "401") {
				t.Errorf("%s: stderr %q", transport, r.stderr)
			}
			if strings.Contains(r.stderr, "not.a.valid-token") || r.stdout != "" {
				t.Errorf("%s: the token or output leaked: %q %q", transport, r.stdout, r.stderr)
			}
		}
	})

	t.Run("refused request exits 4 with the fields", func(t *testing.T) {
		r := s.swarm(t, []string{tokenEnv}, "--url", s.url, "--agents", "99", "too many")
		if r.code != swarmExitRefused || !strings.Contains(r.stderr, "options.agents") || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("usage", func(t *testing.T) {
		if r := s.swarm(t, nil, "--url", s.url, "no token anywhere"); r.code != 2 || !strings.Contains(r.stderr, "FLOWGATE_TOKEN") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		if r := s.swarm(t, []string{tokenEnv}, "--url", s.url); r.code != 2 {
			t.Errorf("no objective: exit %d", r.code)
		}
	})
}

// Ctrl-C sends cancel: the task ends cancelled, the command exits 130.
func TestSwarmCommandInterrupt(t *testing.T) {
	s := startDev(t)
	cmd := exec.Command(s.bin, "swarm", "--url", s.url, "--json", "wait for me sim:hang")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "FLOWGATE_TOKEN=" + s.userToken}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var taskID string
	var lines []map[string]any
	interrupted := false
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		lines = append(lines, m)
		if m["type"] == "task_created" {
			taskID, _ = m["taskId"].(string)
		}
		// The engine is running once it said hello: interrupt as a user at a terminal would.
		if m["type"] == "system" && !interrupted {
			interrupted = true
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != swarmExitInterrupt {
		t.Fatalf("exit: %v\nstderr: %s", err, stderr.String())
	}
	if len(lines) == 0 || lines[len(lines)-1]["type"] != "task_complete" || lines[len(lines)-1]["status"] != "cancelled" {
		t.Fatalf("last frame: %v", lines[len(lines)-1])
	}
	if !strings.Contains(stderr.String(), "interrupted: task cancelled") {
		t.Errorf("stderr %q", stderr.String())
	}
	// The gateway agrees, as seen from another connection of the same user.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, s.url, client.Options{Token: s.userToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(map[string]any{"type": "status", "taskId": taskID}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == "status" {
			if m.Status != "cancelled" {
				t.Errorf("status %q", m.Status)
			}
			break
		}
	}
}
