package sim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testMainEnv makes the test binary act as the flowgate binary: "<test> engine-sim …" runs Main,
// which is how the process-level tests start the engine and how the engine starts its setsid
// grandchild ("<self> engine-sim sleeper …").
const testMainEnv = "SIM_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(testMainEnv) == "1" {
		args := os.Args[1:]
		if len(args) > 0 && args[0] == Command {
			args = args[1:]
		}
		os.Exit(ExitCode(Main(context.Background(), args, os.Getenv, os.Stdout, os.Stderr)))
	}
	os.Exit(m.Run())
}

type event map[string]any

func (e event) str(key string) string {
	s, _ := e[key].(string)
	return s
}

func (e event) num(t *testing.T, key string) int64 {
	t.Helper()
	n, ok := e[key].(json.Number)
	if !ok {
		t.Fatalf("event %v: %s is %T, want a number", e, key, e[key])
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("event %v: %s: %v", e, key, err)
	}
	return i
}

// output is what one run wrote, split into JSON events and other lines.
type output struct {
	events []event
	plain  []string
	lines  []string // every stdout line in order
	stderr string
	err    error
}

func (o *output) ofType(typ string) []event {
	var out []event
	for _, e := range o.events {
		if e.str("type") == typ {
			out = append(out, e)
		}
	}
	return out
}

func (o *output) types() []string {
	var out []string
	for _, e := range o.events {
		out = append(out, e.str("type"))
	}
	return out
}

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// runMain calls Main in-process with buffers.
func runMain(t *testing.T, env map[string]string, args ...string) *output {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := Main(ctx, args, envFunc(env), &stdout, &stderr)
	o := decode(t, stdout.String())
	o.stderr, o.err = stderr.String(), err
	return o
}

func decode(t *testing.T, s string) *output {
	t.Helper()
	o := &output{}
	if s == "" {
		return o
	}
	if !strings.HasSuffix(s, "\n") {
		t.Fatalf("stdout does not end with a newline: ...%q", s[max(0, len(s)-80):])
	}
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		o.lines = append(o.lines, line)
		if !strings.HasPrefix(line, "{") {
			o.plain = append(o.plain, line)
			continue
		}
		if !json.Valid([]byte(line)) {
			t.Fatalf("invalid JSON line: %s", line)
		}
		d := json.NewDecoder(strings.NewReader(line))
		d.UseNumber()
		var e event
		if err := d.Decode(&e); err != nil {
			t.Fatalf("decode %s: %v", line, err)
		}
		o.events = append(o.events, e)
	}
	return o
}

// checkScript verifies the shape of a completed run: init, spawns, body, result.
func checkScript(t *testing.T, o *output, agents, events int, wantIsError bool) {
	t.Helper()
	checkScriptExtra(t, o, agents, events, 0, wantIsError)
}

// checkScriptExtra is checkScript for a run whose knobs add extra assistant and user lines
// between the spawns and the result, beyond the events body events.
func checkScriptExtra(t *testing.T, o *output, agents, events, extra int, wantIsError bool) {
	t.Helper()
	if len(o.events) < 2+agents {
		t.Fatalf("only %d events: %v", len(o.events), o.types())
	}
	init := o.events[0]
	if init.str("type") != "system" || init.str("subtype") != "init" || init["simulated"] != true ||
		init.str("model") != model || !strings.HasPrefix(init.str("session_id"), "sim-") {
		t.Fatalf("bad init event: %v", init)
	}
	if _, ok := init["tools"].([]any); !ok {
		t.Fatalf("init has no tools: %v", init)
	}
	if init.num(t, "agents") != int64(agents) {
		t.Fatalf("init agents = %v, want %d", init["agents"], agents)
	}
	sid := init.str("session_id")
	first := 1 // the prelude (sim_grandchild, sim_env, key echo) comes before the spawns
	for first < len(o.events) && o.events[first].str("type") != "agent_spawn" {
		first++
	}
	if first+agents >= len(o.events) {
		t.Fatalf("no agent_spawn events: %v", o.types())
	}
	for k := 1; k <= agents; k++ {
		e := o.events[first+k-1]
		if e.str("type") != "agent_spawn" || e.str("agentId") != agentID(k) || e.str("agentType") == "" || e.str("name") == "" {
			t.Fatalf("event %d: want agent_spawn of %s, got %v", k, agentID(k), e)
		}
	}
	var body []event
	for _, e := range o.events[first+agents : len(o.events)-1] {
		switch e.str("type") {
		case "assistant", "user", "task_progress":
			body = append(body, e)
		}
	}
	if len(body) != events+extra {
		t.Fatalf("%d body events, want %d: %v", len(body), events+extra, o.types())
	}
	lastProgress, pendingTool := int64(-1), ""
	for i, e := range body {
		if got := e.str("session_id"); got != sid {
			t.Fatalf("body event %d: session_id %q, want %q", i, got, sid)
		}
		if !strings.HasPrefix(e.str("agentId"), "agent-") {
			t.Fatalf("body event %d has no agentId: %v", i, e)
		}
		switch e.str("type") {
		case "assistant":
			msg := e["message"].(map[string]any)
			if id, _ := msg["id"].(string); !strings.HasPrefix(id, "msg_sim_") || msg["model"] != model ||
				msg["role"] != "assistant" || msg["type"] != "message" {
				t.Fatalf("bad assistant message: %v", e)
			}
			if v, ok := msg["stop_reason"]; !ok || v != nil {
				t.Fatalf("stop_reason is not null: %v", e)
			}
			c := msg["content"].([]any)[0].(map[string]any)
			switch c["type"] {
			case "text":
				if c["text"] == "" {
					t.Fatalf("empty text: %v", e)
				}
			case "tool_use":
				if pendingTool != "" {
					t.Fatalf("tool_use %v before the result of %s", e, pendingTool)
				}
				pendingTool = c["id"].(string)
				if !strings.HasPrefix(pendingTool, "toolu_") || c["name"] == "" || c["input"] == nil {
					t.Fatalf("bad tool_use: %v", e)
				}
			default:
				t.Fatalf("unexpected content: %v", e)
			}
		case "user":
			c := e["message"].(map[string]any)["content"].([]any)[0].(map[string]any)
			if c["type"] != "tool_result" || c["tool_use_id"] != pendingTool || pendingTool == "" {
				t.Fatalf("tool_result %v does not answer %q", e, pendingTool)
			}
			pendingTool = ""
		case "task_progress":
			p := e.num(t, "progress")
			if p < lastProgress || p < 0 || p > 100 || e.str("message") == "" {
				t.Fatalf("bad progress %d after %d: %v", p, lastProgress, e)
			}
			lastProgress = p
		}
	}
	if failed := strings.HasPrefix(lastEvent(o).str("result"), "Simulated swarm failed"); events > 0 && lastProgress != 100 && !failed {
		t.Fatalf("progress ends at %d, want 100", lastProgress)
	}
	res := o.events[len(o.events)-1]
	if res.str("type") != "result" || res["simulated"] != true || res["is_error"] != wantIsError ||
		!strings.HasPrefix(res.str("result"), "Simulated swarm") || res.str("session_id") != sid {
		t.Fatalf("bad result (want is_error %v): %v", wantIsError, res)
	}
	res.num(t, "duration_ms")
	checkUsage(t, o)
}

func lastEvent(o *output) event { return o.events[len(o.events)-1] }

func checkStamps(t *testing.T, o *output) {
	t.Helper()
	for _, e := range o.events {
		if e.num(t, "emittedAtNs") < time.Now().Add(-time.Hour).UnixNano() {
			t.Fatalf("event without a plausible emittedAtNs: %v", e)
		}
	}
}

func TestScript(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		args           []string
		agents, events int
	}{
		{"claude-flow defaults", []string{"swarm", "build a thing", "--pace", "0"}, 5, 20},
		{"claude-flow profile argv", []string{"swarm", "x", "--max-agents", "3", "--strategy", "research", "--mode", "mesh", "--parallel", "--timeout", "60", "--headless", "--output-format", "stream-json", "--verbose", "--pace=0"}, 3, 20},
		{"sim profile argv", []string{"swarm", "x", "--max-agents", "2", "--strategy", "auto", "--mode", "centralized", "--output-format", "stream-json", "--pace", "0"}, 2, 20},
		{"seed argv", []string{"swarm", "x", "--agents", "4", "--strategy", "parallel", "--mode", "distributed", "--timeout", "300", "--headless", "--output-format", "stream-json", "--pace", "0"}, 4, 20},
		{"claude-code argv", []string{"-p", "fix the bug", "--output-format", "stream-json", "--verbose", "--pace", "0"}, 1, 20},
		{"sim flags first", []string{"--pace", "0", "--events", "7", "swarm", "x"}, 5, 7},
		{"after --", []string{"--pace", "0", "--", "swarm", "x"}, 5, 20},
		{"no body", []string{"swarm", "x", "--events", "0", "--pace", "0"}, 5, 0},
		{"one event", []string{"swarm", "x", "--events", "1", "--pace", "0"}, 5, 1},
		{"paced", []string{"swarm", "x", "--events", "6", "--agents", "1", "--pace", "1ms"}, 1, 6},
		{"rate", []string{"swarm", "x", "--events", "6", "--agents", "1", "--rate", "2000"}, 1, 6},
	}
	for n := 2; n <= 9; n++ {
		tests = append(tests, struct {
			name           string
			args           []string
			agents, events int
		}{"events " + string(rune('0'+n)), []string{"swarm", "x", "--events", string(rune('0' + n)), "--agents", "2", "--pace", "0"}, 2, n})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := runMain(t, nil, tt.args...)
			if o.err != nil {
				t.Fatalf("Main: %v (stderr %q)", o.err, o.stderr)
			}
			if len(o.plain) != 0 || o.stderr != "" {
				t.Fatalf("unexpected plain lines %q or stderr %q", o.plain, o.stderr)
			}
			checkScript(t, o, tt.agents, tt.events, false)
			checkStamps(t, o)
		})
	}
}

func TestInitReportsOptions(t *testing.T) {
	t.Parallel()
	o := runMain(t, nil, "swarm", "x", "--agents", "2", "--strategy", "research", "--mode", "mesh", "--parallel", "--timeout", "90", "--pace", "0", "--events", "3")
	init := o.events[0]
	want := map[string]any{"strategy": "research", "mode": "mesh", "parallel": true, "style": "claude-flow", "apiKeySource": "none"}
	for k, v := range want {
		if init[k] != v {
			t.Errorf("init[%s] = %v, want %v", k, init[k], v)
		}
	}
	if init.num(t, "timeout") != 90 || init.num(t, "events") != 3 {
		t.Errorf("init = %v", init)
	}
	if !strings.Contains(init.str("message"), "simulated") {
		t.Errorf("init does not say it is simulated: %v", init)
	}
	cwd, _ := os.Getwd()
	if init.str("cwd") != cwd {
		t.Errorf("cwd = %q, want %q", init.str("cwd"), cwd)
	}
	if o := runMain(t, nil, "-p", "x", "--pace", "0", "--events", "1"); o.events[0].str("style") != "claude-code" {
		t.Errorf("-p style = %v", o.events[0])
	}
}

// stripTimes removes the values allowed to differ between two runs.
func stripTimes(o *output) []string {
	var out []string
	for _, e := range o.events {
		delete(e, "emittedAtNs")
		delete(e, "duration_ms")
		b, _ := json.Marshal(e)
		out = append(out, string(b))
	}
	return append(out, o.plain...)
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	args := []string{"swarm", "analyse the market sim:events=40", "--agents", "3", "--pace", "0", "--non-json", "--is-error"}
	a, b := runMain(t, nil, args...), runMain(t, nil, args...)
	if !reflect.DeepEqual(stripTimes(a), stripTimes(b)) {
		t.Fatalf("two runs differ:\n%v\n%v", stripTimes(a), stripTimes(b))
	}
	if len(a.events) != 1+3+40+1 {
		t.Fatalf("%d events, want 45", len(a.events))
	}
	other := runMain(t, nil, "swarm", "analyse the market! sim:events=40", "--agents", "3", "--pace", "0", "--non-json", "--is-error")
	if reflect.DeepEqual(stripTimes(a), stripTimes(other)) {
		t.Fatal("a different objective gave the same events")
	}
}

func TestObjectiveIsData(t *testing.T) {
	t.Parallel()
	objectives := []string{
		`$(id) ; rm -rf / && echo "pwned" 'quoted' \back\slash`,
		"multi\nline\r\nobjective\twith tabs\x00nul",
		"invalid utf-8 \xff\xfe and \u2028 line separator and 日本語 and emoji 🚀",
		strings.Repeat("long ", 2000),
		"`backticks` {\"type\":\"task_complete\"} </script>",
	}
	for _, obj := range objectives {
		o := runMain(t, nil, "swarm", obj, "--pace", "0", "--events", "8")
		if o.err != nil {
			t.Fatalf("objective %q: %v %s", obj, o.err, o.stderr)
		}
		checkScript(t, o, 5, 8, false)
		res := o.events[len(o.events)-1].str("result")
		if strings.ContainsAny(res, "\n\r\x00") || len(res) > 400 {
			t.Fatalf("result text is not a bounded single line: %q", res)
		}
	}
}

func TestFailureModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		args        []string
		env         map[string]string
		code        int
		isError     bool
		bodyEvents  int
		stderrMatch string
	}{
		{name: "fail", args: []string{"--fail"}, code: 1, isError: true, bodyEvents: 10, stderrMatch: "simulated failure"},
		{name: "fail directive", args: []string{"--objective-word", "sim:fail"}, code: 1, isError: true, bodyEvents: 10},
		{name: "fail env", env: map[string]string{"FLOWGATE_SIM_FAIL": "1"}, code: 1, isError: true, bodyEvents: 10},
		{name: "is-error", args: []string{"--is-error"}, code: 0, isError: true, bodyEvents: 20},
		{name: "exit-code", args: []string{"--exit-code", "7"}, code: 7, isError: false, bodyEvents: 20},
		{name: "exit-code env", env: map[string]string{"FLOWGATE_SIM_EXIT_CODE": "3"}, code: 3, bodyEvents: 20},
		{name: "fail exit 0", args: []string{"--fail", "--exit-code=0"}, code: 0, isError: true, bodyEvents: 10},
		{name: "fail exit 42", args: []string{"--fail", "--exit-code=42"}, code: 42, isError: true, bodyEvents: 10},
		{name: "fail disabled by flag", args: []string{"--fail=false"}, env: map[string]string{"FLOWGATE_SIM_FAIL": "true"}, code: 0, bodyEvents: 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			obj := "objective"
			args := []string{"--pace", "0"}
			for i := 0; i < len(tt.args); i++ {
				if tt.args[i] == "--objective-word" {
					obj += " " + tt.args[i+1]
					i++
					continue
				}
				args = append(args, tt.args[i])
			}
			o := runMain(t, tt.env, append([]string{"swarm", obj}, args...)...)
			if got := ExitCode(o.err); got != tt.code {
				t.Fatalf("exit code %d (%v), want %d; stderr %q", got, o.err, tt.code, o.stderr)
			}
			if tt.code != 0 && !errors.Is(o.err, ErrSimulatedFailure) {
				t.Fatalf("err = %v, want ErrSimulatedFailure", o.err)
			}
			checkScript(t, o, 5, tt.bodyEvents, tt.isError)
			if !strings.Contains(o.stderr, tt.stderrMatch) {
				t.Fatalf("stderr %q does not contain %q", o.stderr, tt.stderrMatch)
			}
		})
	}
}

func TestHugeLine(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 100, outBufSize - 1, outBufSize, 3*hugeChunk + 17} {
		o := runMain(t, nil, "swarm", "x", "--pace", "0", "--events", "4", "--huge-line", itoa(n))
		if o.err != nil {
			t.Fatal(o.err)
		}
		if len(o.plain) != 1 || len(o.plain[0]) != n || strings.Trim(o.plain[0], "x") != "" {
			t.Fatalf("huge line of %d: got %d plain lines", n, len(o.plain))
		}
		checkScript(t, o, 5, 4, false)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestPrintEnv(t *testing.T) {
	t.Setenv("SIM_TEST_PROBE", "value with \"quotes\" and\nnewline")
	o := runMain(t, nil, "swarm", "x", "--pace", "0", "--events", "2", "--print-env")
	envs := o.ofType("sim_env")
	if len(envs) != 1 {
		t.Fatalf("want one sim_env event, got %v", o.types())
	}
	env := envs[0]["env"].(map[string]any)
	if env["SIM_TEST_PROBE"] != "value with \"quotes\" and\nnewline" {
		t.Fatalf("sim_env misses SIM_TEST_PROBE: %v", env)
	}
	if len(env) != len(os.Environ()) {
		t.Fatalf("sim_env has %d variables, the process %d", len(env), len(os.Environ()))
	}
	checkScript(t, o, 5, 2, false)
}

func TestPrintKey(t *testing.T) {
	t.Parallel()
	const key = "sk-ant-api03-simulated-KEY_0123456789"
	o := runMain(t, map[string]string{"ANTHROPIC_API_KEY": key}, "swarm", "x sim:print-key", "--pace", "0", "--events", "4")
	if o.err != nil {
		t.Fatal(o.err)
	}
	inEvent := false
	for _, e := range o.ofType("assistant") {
		b, _ := json.Marshal(e)
		if strings.Contains(string(b), key) {
			inEvent = true
		}
	}
	inPlain := len(o.plain) == 1 && strings.Contains(o.plain[0], key)
	if !inEvent || !inPlain || !strings.Contains(o.stderr, key) {
		t.Fatalf("key not echoed everywhere: event %v plain %q stderr %q", inEvent, o.plain, o.stderr)
	}
	checkScript(t, o, 5, 4, false)
}

func TestPrintKeyHash(t *testing.T) {
	t.Parallel()
	const key = "sk-ant-api03-simulated-KEY_0123456789"
	sum := sha256.Sum256([]byte(key))
	empty := sha256.Sum256(nil)
	for _, tc := range []struct {
		name    string
		env     map[string]string
		hash    string
		present bool
	}{
		{"set", map[string]string{"ANTHROPIC_API_KEY": key}, hex.EncodeToString(sum[:]), true},
		{"unset", nil, hex.EncodeToString(empty[:]), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := runMain(t, tc.env, "swarm", "x sim:print-key-hash", "--pace", "0", "--events", "4")
			if o.err != nil {
				t.Fatal(o.err)
			}
			evs := o.ofType("sim_key")
			if len(evs) != 1 || evs[0].str("sha256") != tc.hash || evs[0]["present"] != tc.present {
				t.Fatalf("sim_key events = %v; want sha256 %s present %v", evs, tc.hash, tc.present)
			}
			if strings.Contains(strings.Join(o.lines, "\n"), key) || strings.Contains(o.stderr, key) {
				t.Fatal("the key itself was printed")
			}
			checkScript(t, o, 5, 4, false)
		})
	}
}

func TestFakeComplete(t *testing.T) {
	t.Parallel()
	o := runMain(t, nil, "swarm", "x", "--pace", "0", "--fake-complete")
	if ExitCode(o.err) != 1 {
		t.Fatalf("exit %d, want 1", ExitCode(o.err))
	}
	for _, typ := range []string{"task_complete", "error", "task_cancelled", "task_created", "connection", "status", "task_output", "task_log", "engine_event", "pong"} {
		if len(o.ofType(typ)) != 1 {
			t.Errorf("no forged %s event", typ)
		}
	}
	forgedFields := 0
	for _, e := range o.ofType("task_progress") {
		if e.str("taskId") == "forged-task" {
			forgedFields++
		}
	}
	if forgedFields != 1 {
		t.Errorf("want one task_progress with forged gateway fields, got %d", forgedFields)
	}
	tc := o.ofType("task_complete")[0]
	if tc.str("status") != "success" || tc.num(t, "exitCode") != 0 {
		t.Errorf("forged task_complete = %v", tc)
	}
	if res := o.events[len(o.events)-1]; res.str("type") != "result" || res["is_error"] != true {
		t.Fatalf("last event %v, want a failed result", res)
	}
}

func TestNonJSONAndStderr(t *testing.T) {
	t.Parallel()
	o := runMain(t, nil, "swarm", "x", "--pace", "0", "--events", "9", "--non-json", "--stderr")
	if o.err != nil {
		t.Fatal(o.err)
	}
	if len(o.plain) != 4 { // one before the body, one after every third body event
		t.Fatalf("plain lines %q", o.plain)
	}
	for _, p := range o.plain {
		if json.Valid([]byte(p)) {
			t.Fatalf("plain line is JSON: %q", p)
		}
	}
	if n := strings.Count(o.stderr, "\n"); n != 3 || !strings.Contains(o.stderr, "warning") {
		t.Fatalf("stderr = %q", o.stderr)
	}
	checkScript(t, o, 5, 9, false)
}

func TestHangStopsOnCancel(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"swarm", "x", "--hang"},
		{"swarm", "x sim:hang"},
		{"swarm", "x", "--events", "5", "--pace", "1h"},
		{"swarm", "x", "--events", "1", "--pace", "0", "--sleep", "1h"},
	} {
		ctx, cancel := context.WithCancel(t.Context())
		pr, pw := io.Pipe()
		errc := make(chan error, 1)
		go func() {
			err := Main(ctx, args, nil, pw, io.Discard)
			pw.Close()
			errc <- err
		}()
		br := bufio.NewReader(pr)
		first, err := br.ReadString('\n')
		if err != nil || !strings.Contains(first, `"subtype":"init"`) {
			t.Fatalf("%v: first line %q, %v", args, first, err)
		}
		if args[len(args)-1] == "1h" && args[len(args)-2] == "--sleep" {
			// wait for the result before cancelling
			for !strings.Contains(first, `"type":"result"`) {
				if first, err = br.ReadString('\n'); err != nil {
					t.Fatal(err)
				}
			}
		}
		cancel()
		rest, _ := io.ReadAll(br)
		err = <-errc
		if ExitCode(err) != ExitTerminated || !errors.Is(err, ErrTerminated) {
			t.Fatalf("%v: err %v, want exit %d", args, err, ExitTerminated)
		}
		if len(rest) != 0 {
			t.Fatalf("%v: wrote %q after cancellation", args, rest)
		}
	}
}

func TestIgnoreTermIgnoresCtx(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	o := &output{}
	var stdout bytes.Buffer
	o.err = Main(ctx, []string{"swarm", "x", "--ignore-term", "--pace", "0", "--events", "3"}, nil, &stdout, io.Discard)
	if o.err != nil {
		t.Fatalf("Main: %v", o.err)
	}
	checkScript(t, decode(t, stdout.String()), 5, 3, false)

	var out2 bytes.Buffer
	if err := Main(ctx, []string{"swarm", "x", "--pace", "0"}, nil, &out2, io.Discard); ExitCode(err) != ExitTerminated || out2.Len() != 0 {
		t.Fatalf("cancelled ctx: err %v, output %q", err, out2.String())
	}
}

// failingWriter accepts n bytes, then fails every write with err.
type failingWriter struct {
	n   int
	err error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) <= w.n {
		w.n -= len(p)
		return len(p), nil
	}
	k := w.n
	w.n = 0
	return k, w.err
}

func TestWriteErrors(t *testing.T) {
	t.Parallel()
	for _, pace := range []string{"0", "1us"} {
		var stderr bytes.Buffer
		err := Main(t.Context(), []string{"swarm", "x", "--pace", pace, "--events", "100000"}, nil, &failingWriter{n: 5000, err: syscall.EPIPE}, &stderr)
		if ExitCode(err) != ExitBrokenPipe || !errors.Is(err, ErrBrokenPipe) || stderr.Len() != 0 {
			t.Fatalf("EPIPE: err %v, stderr %q", err, stderr.String())
		}
	}
	var stderr bytes.Buffer
	err := Main(t.Context(), []string{"swarm", "x", "--pace", "0"}, nil, &failingWriter{err: syscall.EIO}, &stderr)
	if ExitCode(err) != 1 || !strings.Contains(stderr.String(), "write stdout") {
		t.Fatalf("EIO: err %v, stderr %q", err, stderr.String())
	}
}

func TestWholeLinesPerWrite(t *testing.T) {
	t.Parallel()
	var w lineCheckWriter
	if err := Main(t.Context(), []string{"swarm", "x", "--pace", "0", "--events", "5000", "--non-json", "--print-env"}, nil, &w, io.Discard); err != nil {
		t.Fatal(err)
	}
	if w.writes < 2 || w.bad != 0 {
		t.Fatalf("%d writes, %d not ending in a newline", w.writes, w.bad)
	}
}

type lineCheckWriter struct{ writes, bad int }

func (w *lineCheckWriter) Write(p []byte) (int, error) {
	w.writes++
	if len(p) == 0 || p[len(p)-1] != '\n' {
		w.bad++
	}
	return len(p), nil
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no args", nil, nil, "missing command"},
		{"unknown flag", []string{"swarm", "x", "--frobnicate"}, nil, `unknown flag "--frobnicate"`},
		{"unknown short flag", []string{"swarm", "x", "-x"}, nil, "unknown flag"},
		{"unknown command", []string{"run", "x"}, nil, "unknown command"},
		{"missing objective", []string{"swarm"}, nil, "needs an objective"},
		{"extra arg", []string{"swarm", "x", "y"}, nil, "unexpected argument"},
		{"-p with positional", []string{"-p", "x", "y"}, nil, "unexpected argument"},
		{"-p twice", []string{"-p", "x", "-p", "y"}, nil, "given twice"},
		{"empty objective", []string{"swarm", " \n"}, nil, "empty"},
		{"dash objective", []string{"-p", "-rf"}, nil, "may not start with"},
		{"dash objective after --", []string{"--", "swarm", "-x"}, nil, "may not start with"},
		{"missing value", []string{"swarm", "x", "--events"}, nil, "needs a value"},
		{"events too many", []string{"swarm", "x", "--events", "10000001"}, nil, "--events"},
		{"events negative", []string{"swarm", "x", "--events=-1"}, nil, "--events"},
		{"events not a number", []string{"swarm", "x", "--events", "lots"}, nil, "--events"},
		{"pace too long", []string{"swarm", "x", "--pace", "2h"}, nil, "--pace"},
		{"pace negative", []string{"swarm", "x", "--pace", "-1s"}, nil, "--pace"},
		{"pace no unit", []string{"swarm", "x", "--pace", "100"}, nil, "--pace"},
		{"rate zero", []string{"swarm", "x", "--rate", "0"}, nil, "--rate"},
		{"rate too high", []string{"swarm", "x", "--rate", "10000001"}, nil, "--rate"},
		{"pace and rate", []string{"swarm", "x", "--rate", "10", "--pace", "1s"}, nil, "alternatives"},
		{"exit code", []string{"swarm", "x", "--exit-code", "256"}, nil, "--exit-code"},
		{"huge line", []string{"swarm", "x", "--huge-line", "67108865"}, nil, "--huge-line"},
		{"sleep", []string{"swarm", "x", "--sleep", "61m"}, nil, "--sleep"},
		{"marker chars", []string{"swarm", "x", "--marker", "a b"}, nil, "--marker"},
		{"marker long", []string{"swarm", "x", "--marker", strings.Repeat("m", 65)}, nil, "--marker"},
		{"bool value", []string{"swarm", "x", "--fail=maybe"}, nil, "--fail"},
		{"agents zero", []string{"swarm", "x", "--agents", "0"}, nil, "--agents"},
		{"agents many", []string{"swarm", "x", "--max-agents", "101"}, nil, "--max-agents"},
		{"strategy", []string{"swarm", "x", "--strategy", "Bad Value"}, nil, "--strategy"},
		{"timeout", []string{"swarm", "x", "--timeout", "-5"}, nil, "--timeout"},
		{"output format", []string{"swarm", "x", "--output-format", "text"}, nil, "stream-json"},
		{"headless value", []string{"swarm", "x", "--headless=nope"}, nil, "--headless"},
		{"unknown directive", []string{"swarm", "x sim:explode"}, nil, `unknown directive "sim:explode"`},
		{"bad directive value", []string{"swarm", "x sim:events=many"}, nil, "sim:events"},
		{"directive needs value", []string{"swarm", "x sim:pace"}, nil, "sim:pace needs a value"},
		{"too many directives", []string{"swarm", "x" + strings.Repeat(" sim:fail", 33)}, nil, "too many"},
		{"bad env", []string{"swarm", "x"}, map[string]string{"FLOWGATE_SIM_EVENTS": "-3"}, "FLOWGATE_SIM_EVENTS"},
		{"bad env bool", []string{"swarm", "x"}, map[string]string{"FLOWGATE_SIM_HANG": "yes please"}, "FLOWGATE_SIM_HANG"},
		{"too many args", append([]string{"swarm", "x"}, strings.Split(strings.Repeat("--verbose ", 300), " ")...), nil, "too many arguments"},
		{"objective too long", []string{"swarm", strings.Repeat("o", maxObjectiveBytes+1)}, nil, "longer than"},
		{"sleeper no marker", []string{"sleeper", "--duration", "1s"}, nil, "--marker is required"},
		{"sleeper bad duration", []string{"sleeper", "--marker", "m", "--duration", "25h"}, nil, "--duration"},
		{"sleeper unknown", []string{"sleeper", "--marker", "m", "--fail"}, nil, "unknown flag"},
		{"sleeper bad fd", []string{"sleeper", "--marker", "m", "--ready-fd", "1"}, nil, "--ready-fd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := runMain(t, tt.env, tt.args...)
			if ExitCode(o.err) != ExitUsage || !errors.Is(o.err, ErrUsage) {
				t.Fatalf("err %v (exit %d), want a usage error", o.err, ExitCode(o.err))
			}
			if len(o.lines) != 0 {
				t.Fatalf("wrote stdout on a usage error: %q", o.lines)
			}
			if !strings.Contains(o.stderr, tt.want) || strings.Count(o.stderr, "\n") != 1 {
				t.Fatalf("stderr %q, want one line containing %q", o.stderr, tt.want)
			}
			if len(o.stderr) > 400 {
				t.Fatalf("unbounded error message (%d bytes)", len(o.stderr))
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"swarm", "x", "--help"}, {"sleeper", "--help"}} {
		var stdout, stderr bytes.Buffer
		if err := Main(t.Context(), args, nil, &stdout, &stderr); err != nil || stderr.Len() != 0 {
			t.Fatalf("%v: err %v, stderr %q", args, err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "SIMULATED") {
			t.Fatalf("%v: usage = %q", args, stdout.String())
		}
	}
	for _, k := range knobs() {
		if !strings.Contains(usageText, "--"+k.name+" ") {
			t.Errorf("usage text does not document --%s", k.name)
		}
	}
}
