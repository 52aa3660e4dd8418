package anthropicmock_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/engine/anthropicmock"
	"github.com/flowgate/flowgate/internal/engine/enginetest"
)

// testKey looks like a real key so the CLI accepts it; the mock never checks its value.
const testKey = "sk-ant-api03-test-flowgate-mock-0123456789abcdef"

// claudeRun is one finished run of the real CLI.
type claudeRun struct {
	cwd      string
	exitCode int
	elapsed  time.Duration
	lines    []map[string]any // stdout's JSON lines
	stderr   string
}

// runClaude runs the real Claude Code CLI in print mode against the mock, in a clean
// environment with its own HOME, TMPDIR and working directory, and waits at most 60 s.
func runClaude(t *testing.T, mock *anthropicmock.Server, prompt string) claudeRun {
	t.Helper()
	bin := enginetest.ClaudeBin(t)
	cwd, home, tmp := t.TempDir(), t.TempDir(), t.TempDir()

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-p", prompt,
		"--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits")
	cmd.Dir = cwd
	cmd.Env = []string{
		"HOME=" + home,
		"TMPDIR=" + tmp,
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"ANTHROPIC_API_KEY=" + testKey,
		"ANTHROPIC_BASE_URL=" + mock.URL(),
		"DISABLE_AUTOUPDATER=1",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		"CLAUDE_CODE_MAX_RETRIES=0",
	}
	// Its own process group, so the timeout and the cleanup reach whatever the CLI started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) }) // ESRCH when all are gone
	err := cmd.Wait()
	run := claudeRun{cwd: cwd, elapsed: time.Since(start), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("claude did not finish within 60 s\nstdout:\n%s\nstderr:\n%s", stdout.String(), run.stderr)
	}
	if _, ok := errors.AsType[*exec.ExitError](err); err != nil && !ok {
		t.Fatal(err)
	}
	run.exitCode = cmd.ProcessState.ExitCode()

	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("stdout line is not JSON: %v: %q", err, sc.Text())
		}
		run.lines = append(run.lines, line)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("claude exited %d after %v with %d lines", run.exitCode, run.elapsed.Round(time.Millisecond), len(run.lines))
	return run
}

// find returns the first line of the type (and subtype, if not ""), or nil.
func (r claudeRun) find(typ, subtype string) map[string]any {
	for _, l := range r.lines {
		if l["type"] == typ && (subtype == "" || l["subtype"] == subtype) {
			return l
		}
	}
	return nil
}

// result is the final result line; the test fails without one.
func (r claudeRun) result(t *testing.T) map[string]any {
	t.Helper()
	res := r.find("result", "")
	if res == nil {
		t.Fatalf("no result line; stderr:\n%s", r.stderr)
	}
	return res
}

// topBlocks returns the fields named field of the content blocks of type kind in every
// top-level assistant line (subagents' lines have a parent_tool_use_id).
func (r claudeRun) topBlocks(kind, field string) []string {
	var out []string
	for _, l := range r.lines {
		if l["type"] != "assistant" || l["parent_tool_use_id"] != nil {
			continue
		}
		msg, _ := l["message"].(map[string]any)
		blocks, _ := msg["content"].([]any)
		for _, b := range blocks {
			if b, ok := b.(map[string]any); ok && b["type"] == kind {
				v, _ := b[field].(string)
				out = append(out, v)
			}
		}
	}
	return out
}

// assistantText joins the text blocks of every top-level assistant line.
func (r claudeRun) assistantText() string { return strings.Join(r.topBlocks("text", "text"), "\n") }

// toolUses names the tool_use blocks of the top-level assistant lines.
func (r claudeRun) toolUses() []string { return r.topBlocks("tool_use", "name") }

func (r claudeRun) requireSuccess(t *testing.T) map[string]any {
	t.Helper()
	res := r.result(t)
	if r.exitCode != 0 || res["subtype"] != "success" || res["is_error"] != false {
		t.Fatalf("exit %d, result %v; stderr:\n%s", r.exitCode, res, r.stderr)
	}
	if r.find("system", "permission_denied") != nil {
		t.Errorf("a tool was denied: %v", r.find("system", "permission_denied"))
	}
	if denials, _ := res["permission_denials"].([]any); len(denials) > 0 {
		t.Errorf("permission_denials: %v", denials)
	}
	return res
}

func TestClaudeCLIPlainPrompt(t *testing.T) {
	t.Parallel()
	mock := anthropicmock.New(t, anthropicmock.Options{})
	run := runClaude(t, mock, "say hello")

	initLine := run.find("system", "init")
	if initLine == nil {
		t.Fatal("no system/init line")
	}
	if initLine["apiKeySource"] != "ANTHROPIC_API_KEY" || initLine["cwd"] != run.cwd {
		t.Errorf("init: apiKeySource %v, cwd %v, want ANTHROPIC_API_KEY, %s", initLine["apiKeySource"], initLine["cwd"], run.cwd)
	}
	if got := run.assistantText(); !strings.Contains(got, anthropicmock.DefaultText) {
		t.Errorf("assistant text %q, want %q", got, anthropicmock.DefaultText)
	}
	res := run.requireSuccess(t)
	usage, _ := res["usage"].(map[string]any)
	if out, _ := usage["output_tokens"].(float64); out <= 0 {
		t.Errorf("result usage %v, want output_tokens > 0", usage)
	}

	reqs := mock.Requests()
	if len(reqs) == 0 {
		t.Fatal("the mock saw no request")
	}
	for _, r := range reqs {
		if r.Path != "/v1/messages" || r.APIKey != testKey {
			t.Errorf("request %s %s?%s with key %q, want POST /v1/messages with the test key",
				r.Method, r.Path, r.RawQuery, r.APIKey)
		}
	}
	if !strings.Contains(reqs[0].Prompt, "say hello") {
		t.Errorf("prompt seen %q, want it to contain the CLI's prompt", reqs[0].Prompt)
	}
}

func TestClaudeCLIWrite(t *testing.T) {
	t.Parallel()
	mock := anthropicmock.New(t, anthropicmock.Options{})
	run := runClaude(t, mock, "please "+anthropicmock.TriggerWrite+" hello.txt")
	run.requireSuccess(t)

	got, err := os.ReadFile(filepath.Join(run.cwd, "hello.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != anthropicmock.WriteContent {
		t.Errorf("hello.txt holds %q, want %q", got, anthropicmock.WriteContent)
	}
	if got := run.toolUses(); !slices.Equal(got, []string{"Write"}) {
		t.Errorf("tool uses %q, want [Write]", got)
	}
	results := toolResults(mock)
	if len(results) != 1 || results[0].IsError {
		t.Fatalf("tool results %+v, want one without is_error", results)
	}
	if !strings.Contains(run.assistantText(), anthropicmock.ToolResultText) {
		t.Errorf("assistant text %q, want the mock's final answer", run.assistantText())
	}
}

func TestClaudeCLITask(t *testing.T) {
	t.Parallel()
	mock := anthropicmock.New(t, anthropicmock.Options{})
	run := runClaude(t, mock, anthropicmock.TriggerTask)
	run.requireSuccess(t)

	// 2.1.332 calls its sub-agent tool "Agent"; older versions called it "Task".
	if got := run.toolUses(); len(got) != 1 || (got[0] != "Agent" && got[0] != "Task") {
		t.Errorf("tool uses %q, want the sub-agent tool", got)
	}
	var subAgent bool
	for _, r := range mock.Requests() {
		subAgent = subAgent || strings.Contains(r.Prompt, anthropicmock.TaskPrompt)
	}
	if !subAgent {
		t.Error("no request carried the sub-agent's prompt")
	}
	results := toolResults(mock)
	if len(results) != 1 || results[0].IsError || !strings.Contains(results[0].Content, anthropicmock.DefaultText) {
		t.Errorf("tool results %+v, want the sub-agent's answer without is_error", results)
	}
}

func TestClaudeCLIEchoKey(t *testing.T) {
	t.Parallel()
	mock := anthropicmock.New(t, anthropicmock.Options{})
	run := runClaude(t, mock, anthropicmock.TriggerEchoKey)
	run.requireSuccess(t)
	if got := run.assistantText(); !strings.Contains(got, testKey) {
		t.Errorf("assistant text %q does not contain the key", got)
	}
}

func TestClaudeCLIErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		trigger string
		want    []string // in the result text, case-insensitive
	}{
		{anthropicmock.TriggerUnauthorized, []string{"invalid api key"}},
		{anthropicmock.TriggerOverloaded, []string{"529", "overloaded"}},
		{anthropicmock.TriggerServerError, []string{"500"}},
	}
	for _, tt := range tests {
		t.Run(tt.trigger, func(t *testing.T) {
			t.Parallel()
			mock := anthropicmock.New(t, anthropicmock.Options{})
			run := runClaude(t, mock, tt.trigger)
			res := run.result(t)
			if run.exitCode == 0 || res["is_error"] != true {
				t.Errorf("exit %d, is_error %v; want a failure", run.exitCode, res["is_error"])
			}
			if run.elapsed > 30*time.Second {
				t.Errorf("took %v, want a prompt failure with CLAUDE_CODE_MAX_RETRIES=0", run.elapsed)
			}
			text, _ := res["result"].(string)
			t.Logf("result text: %q", text)
			for _, w := range tt.want {
				if !strings.Contains(strings.ToLower(text), w) {
					t.Errorf("result text %q does not mention %q", text, w)
				}
			}
		})
	}
}

func toolResults(mock *anthropicmock.Server) []anthropicmock.ToolResult {
	var out []anthropicmock.ToolResult
	for _, r := range mock.Requests() {
		out = append(out, r.ToolResults...)
	}
	return out
}
