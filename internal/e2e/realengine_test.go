package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/client"
	"github.com/flowgate/flowgate/internal/engine/anthropicmock"
	"github.com/flowgate/flowgate/internal/engine/enginetest"
)

// The real engines through the real gateway binary, against the project's own mock of the
// Anthropic Messages API (DESIGN §14): the proof an engine feature works.

// tenantKey is the demo tenant's engine key in these tests: shaped like a real one, so the
// generic sk-ant- redaction and the tenant-key redaction both apply.
const tenantKey = "sk-ant-api03-e2e-real-engine-key-0123456789abcdefghij"

type realGateway struct {
	*gateway
	mock *anthropicmock.Server
}

// startRealGateway runs `serve --dev` with a real engine profile pointed at a fresh mock, and
// gives the demo tenant its key.
func startRealGateway(t *testing.T, profile string, env map[string]string) realGateway {
	t.Helper()
	claude := enginetest.ClaudeBin(t)
	mock := anthropicmock.New(t, anthropicmock.Options{SlowDelay: 200 * time.Millisecond})
	e := map[string]string{
		"FLOWGATE_ENGINE_PROFILE":            profile,
		"FLOWGATE_ENGINE_ANTHROPIC_BASE_URL": mock.URL(),
		"FLOWGATE_ENGINE_ENV":                "", // GORACE is for the race-built sim only
	}
	switch profile {
	case "claude-code":
		e["FLOWGATE_ENGINE_COMMAND"] = claude
	case "claude-flow-v2":
		e["FLOWGATE_ENGINE_COMMAND"] = enginetest.ClaudeFlowBin(t)
		e["FLOWGATE_ENGINE_CLAUDE_COMMAND"] = claude
	}
	for k, v := range env {
		e[k] = v
	}
	g := startGateway(t, gwOptions{env: e})
	if out, err := g.cli(t, tenantKey, "key", "set", "--dev", "--data-dir", g.dataDir, "--tenant", "demo"); err != nil {
		t.Fatalf("key set: %v\n%s", err, out)
	}
	return realGateway{g, mock}
}

// runRealSwarm is runSwarm with a deadline and a task timeout fit for a real engine.
func runRealSwarm(t *testing.T, c *client.Conn, objective string) swarmResult {
	t.Helper()
	return runSwarmWithin(t, c, objective, map[string]any{"timeout": 120}, 150*time.Second)
}

// completion is the part of task_complete these tests read beyond client.Message.
type completion struct {
	Usage *struct {
		InputTokens  int64   `json:"inputTokens"`
		OutputTokens int64   `json:"outputTokens"`
		CostUSD      float64 `json:"costUsd"`
		NumTurns     int     `json:"numTurns"`
	} `json:"usage"`
	PermissionDenials *int   `json:"permissionDenials"`
	DurationMs        int64  `json:"durationMs"`
	Result            string `json:"result"`
}

func parseCompletion(t *testing.T, m client.Message) completion {
	t.Helper()
	var c completion
	if err := json.Unmarshal(m.Raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func eventTypes(r swarmResult) map[string]int {
	n := map[string]int{}
	for _, ev := range r.events {
		n[ev.Type]++
	}
	return n
}

func eventsWith(r swarmResult, typ, subtype string) []client.Message {
	var out []client.Message
	for _, ev := range r.events {
		if ev.Type != typ {
			continue
		}
		var s struct {
			Subtype string `json:"subtype"`
		}
		_ = json.Unmarshal(ev.Raw, &s)
		if subtype == "" || s.Subtype == subtype {
			out = append(out, ev)
		}
	}
	return out
}

func TestRealClaudeCode(t *testing.T) {
	g := startRealGateway(t, "claude-code", nil)
	c := g.dial(t, g.UserToken)

	t.Run("hello", func(t *testing.T) {
		r := runRealSwarm(t, c, "say hello")
		done := parseCompletion(t, r.complete)
		if r.complete.Status != "success" || done.Usage == nil || done.Usage.OutputTokens <= 0 {
			t.Fatalf("task_complete = %s", r.complete.Raw)
		}
		if len(eventsWith(r, "system", "init")) != 1 || len(eventsWith(r, "assistant", "")) == 0 || len(eventsWith(r, "result", "")) != 1 {
			t.Errorf("events: %v", eventTypes(r))
		}
		for i, ev := range r.events {
			if ev.Seq != int64(i+1) {
				t.Fatalf("event %d has seq %d", i, ev.Seq)
			}
		}
		// The seed's progress events, derived from the real stream.
		if n := eventTypes(r); n["task_progress"] == 0 || n["insight"] == 0 {
			t.Errorf("no derived progress: %v", n)
		}
		if !strings.Contains(done.Result, anthropicmock.DefaultText) {
			t.Errorf("result %q", done.Result)
		}
		// The engine spoke to the mock with the tenant's key, through ANTHROPIC_BASE_URL.
		var keyed bool
		for _, req := range g.mock.Requests() {
			keyed = keyed || (req.Path == "/v1/messages" && req.APIKey == tenantKey)
		}
		if !keyed {
			t.Error("the mock saw no request with the tenant's key")
		}
		// status returns the stored usage.
		if err := c.Send(map[string]any{"type": "status", "taskId": r.created.TaskID, "requestId": "st"}); err != nil {
			t.Fatal(err)
		}
		st := readType(t, c, "status")
		var s struct {
			Usage *struct{ OutputTokens int64 } `json:"usage"`
		}
		if json.Unmarshal(st.Raw, &s) != nil || s.Usage == nil || s.Usage.OutputTokens != done.Usage.OutputTokens {
			t.Errorf("status = %s", st.Raw)
		}
	})

	t.Run("a file-writing tool runs in the task directory", func(t *testing.T) {
		r := runRealSwarm(t, c, "create the file mock:write hello.txt")
		done := parseCompletion(t, r.complete)
		if r.complete.Status != "success" || done.PermissionDenials == nil || *done.PermissionDenials != 0 {
			t.Fatalf("task_complete = %s", r.complete.Raw)
		}
		if n := len(eventsWith(r, "system", "permission_denied")); n != 0 {
			t.Errorf("%d permission_denied events", n)
		}
		var wrote bool
		root := filepath.Join(g.dataDir, "tasks", r.created.TaskID)
		for _, req := range g.mock.Requests() {
			for _, tr := range req.ToolResults {
				if !tr.IsError && strings.Contains(tr.Content, filepath.Join(root, "hello.txt")) {
					wrote = true
				}
			}
		}
		if !wrote {
			t.Errorf("no successful tool_result for %s/hello.txt; requests: %+v", root, toolResults(g.mock))
		}
	})

	for _, tt := range []struct{ trigger, want string }{
		{anthropicmock.TriggerUnauthorized, "Invalid API key"},
		{anthropicmock.TriggerOverloaded, "529"},
		{anthropicmock.TriggerServerError, "500"},
	} {
		t.Run(tt.trigger, func(t *testing.T) {
			start := time.Now()
			r := runRealSwarm(t, c, "fail please "+tt.trigger)
			took := time.Since(start)
			if r.complete.Status != "failed" || !strings.Contains(r.complete.Error, tt.want) {
				t.Fatalf("task_complete = %s", r.complete.Raw)
			}
			if took > 30*time.Second {
				t.Errorf("failing took %s (engine.max_retries should keep it short)", took)
			}
			t.Logf("%s failed in %s: %q", tt.trigger, took.Round(time.Millisecond), r.complete.Error)
		})
	}

	t.Run("an echoed key is redacted", func(t *testing.T) {
		r := runRealSwarm(t, c, "tell me mock:echo-key")
		if r.complete.Status != "success" {
			t.Fatalf("task_complete = %s", r.complete.Raw)
		}
		var redacted bool
		for _, ev := range r.events {
			if strings.Contains(string(ev.Raw), tenantKey) || strings.Contains(string(ev.Raw), "sk-ant-api03") {
				t.Fatalf("the key reached the client: %s", ev.Raw)
			}
			redacted = redacted || strings.Contains(string(ev.Raw), "[REDACTED]")
		}
		if !redacted {
			t.Error("no [REDACTED] in the events")
		}
	})

	t.Run("cancel leaves no process", func(t *testing.T) {
		if err := c.Send(map[string]any{"type": "swarm", "objective": "take your time " + anthropicmock.TriggerSlow, "requestId": "slow"}); err != nil {
			t.Fatal(err)
		}
		created := readType(t, c, "task_created")
		// The engine is up once it says init; its request to the mock follows at once and
		// streams for half a minute. Cancel in the middle of it.
		if init := readType(t, c, "system"); init.TaskID != created.TaskID {
			t.Fatalf("init of another task: %s", init.Raw)
		}
		time.Sleep(2 * time.Second)
		if len(procsIn(t, filepath.Join(g.dataDir, "tasks"))) == 0 {
			t.Fatal("no engine process is running in the task directory")
		}
		if err := c.Send(map[string]any{"type": "cancel", "taskId": created.TaskID}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for {
			m, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if m.Type == "task_complete" && m.TaskID == created.TaskID {
				if m.Status != "cancelled" {
					t.Fatalf("task_complete = %s", m.Raw)
				}
				break
			}
		}
		if procs := procsIn(t, filepath.Join(g.dataDir, "tasks")); len(procs) > 0 {
			t.Fatalf("processes survived the cancel: %v", procs)
		}
	})
}

// TestSeedClientSeesRealProgress is the seed tutorial's client (root path, query token, no
// subprotocol) against the real Claude Code: it renders agent_spawn, task_progress and insight,
// which the gateway derives from the real stream, and task_complete.error on failure.
func TestSeedClientSeesRealProgress(t *testing.T) {
	g := startRealGateway(t, "claude-code", nil)
	root := strings.TrimSuffix(g.URL, "/ws") + "/?token=" + g.UserToken
	ws, _, err := websocket.DefaultDialer.Dial(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(150 * time.Second))
	var welcome map[string]any
	if err := ws.ReadJSON(&welcome); err != nil || welcome["type"] != "connection" {
		t.Fatalf("welcome %v: %v", welcome, err)
	}
	if err := ws.WriteJSON(map[string]any{"type": "swarm", "objective": "delegate this " + anthropicmock.TriggerTask,
		"options": map[string]any{"agents": 3, "strategy": "auto", "mode": "centralized", "timeout": 120}}); err != nil {
		t.Fatal(err)
	}
	var shown []string // what the seed client prints
	for {
		var ev map[string]any
		if err := ws.ReadJSON(&ev); err != nil {
			t.Fatalf("read: %v (shown so far %q)", err, shown)
		}
		switch ev["type"] {
		case "agent_spawn":
			shown = append(shown, fmt.Sprintf("Agent spawned: %v (%v)", ev["agentId"], ev["agentType"]))
		case "task_progress":
			shown = append(shown, fmt.Sprintf("Progress: %v%% - %v", ev["progress"], ev["message"]))
		case "insight":
			shown = append(shown, fmt.Sprintf("Insight: %v", ev["message"]))
		case "error":
			t.Fatalf("error: %v", ev)
		}
		if ev["type"] == "task_complete" {
			if ev["status"] != "success" {
				t.Fatalf("task_complete = %v", ev)
			}
			break
		}
	}
	joined := strings.Join(shown, "\n")
	for _, want := range []string{"Agent spawned: toolu_", "(general-purpose)", "Progress: ", "Insight: "} {
		if !strings.Contains(joined, want) {
			t.Errorf("the seed client showed no %q:\n%s", want, joined)
		}
	}
	t.Logf("the seed client showed:\n%s", joined)
}

func TestRealClaudeFlow(t *testing.T) {
	g := startRealGateway(t, "claude-flow-v2", nil)
	c := g.dial(t, g.UserToken)
	r := runRealSwarm(t, c, "say hello to the swarm")
	done := parseCompletion(t, r.complete)
	if r.complete.Status != "success" || done.Usage == nil || done.Usage.OutputTokens <= 0 {
		t.Fatalf("task_complete = %s\nevents: %v", r.complete.Raw, eventTypes(r))
	}
	if len(eventsWith(r, "system", "init")) == 0 || len(eventsWith(r, "result", "")) == 0 {
		t.Errorf("events: %v", eventTypes(r))
	}
	var keyed bool
	for _, req := range g.mock.Requests() {
		keyed = keyed || req.APIKey == tenantKey
	}
	if !keyed {
		t.Error("the mock saw no request with the tenant's key")
	}
}

// Without Claude Code, claude-flow would exit 0 having run nothing: the gateway refuses to
// start instead, naming the key to set.
func TestClaudeFlowWithoutClaudeRefusesToStart(t *testing.T) {
	cf := enginetest.ClaudeFlowBin(t)
	for _, tt := range []struct {
		name string
		env  []string
	}{
		{"claude_command missing", []string{"FLOWGATE_ENGINE_CLAUDE_COMMAND=" + filepath.Join(t.TempDir(), "claude")}},
		{"claude not in PATH", []string{"PATH=/usr/bin:/bin"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, "serve", "--dev", "--data-dir", t.TempDir())
			cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(),
				"FLOWGATE_SERVER_ADDR=127.0.0.1:0", "FLOWGATE_OPS_ADDR=127.0.0.1:0",
				"FLOWGATE_ENGINE_PROFILE=claude-flow-v2", "FLOWGATE_ENGINE_COMMAND=" + cf}, tt.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || ctx.Err() != nil {
				t.Fatalf("serve did not refuse to start (err %v):\n%s", err, out)
			}
			if !strings.Contains(string(out), "engine.claude_command") {
				t.Errorf("the refusal does not name engine.claude_command:\n%s", out)
			}
		})
	}
}

// An engine that promises a result line (here the sim, which speaks Claude Code's stream-json)
// and exits 0 without one has failed.
func TestNoResultLineFails(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.dial(t, g.UserToken)
	r := runSwarm(t, c, "finish quietly sim:no-result sim:pace=0 sim:events=3", nil)
	if r.complete.Status != "failed" || r.complete.Error != "engine produced no result" || r.complete.ExitCode == nil || *r.complete.ExitCode != 0 {
		t.Fatalf("task_complete = %s", r.complete.Raw)
	}
}

func readType(t *testing.T, c *client.Conn, typ string) client.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		m, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m.Type == typ {
			return m
		}
		if m.Type == "error" {
			t.Fatalf("waiting for %s: %s", typ, m.Raw)
		}
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procsIn lists the processes whose working directory lies under dir.
func procsIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err == nil && (cwd == dir || strings.HasPrefix(cwd, dir+"/")) {
			comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
			out = append(out, e.Name()+":"+strings.TrimSpace(string(comm)))
		}
	}
	return out
}

func toolResults(m *anthropicmock.Server) []anthropicmock.ToolResult {
	var out []anthropicmock.ToolResult
	for _, req := range m.Requests() {
		out = append(out, req.ToolResults...)
	}
	return out
}
