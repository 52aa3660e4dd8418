package sim

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

// tokens is a usage object as the gateway reads it.
type tokens struct{ input, cacheCreate, cacheRead, output int64 }

func (a tokens) plus(b tokens) tokens {
	return tokens{a.input + b.input, a.cacheCreate + b.cacheCreate, a.cacheRead + b.cacheRead, a.output + b.output}
}

func (a tokens) prompt() int64 { return a.input + a.cacheCreate + a.cacheRead }

func tokensOf(t *testing.T, e event, v any) tokens {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("usage is %T in %v", v, e)
	}
	u := event(m)
	if len(u) != 4 {
		t.Fatalf("usage %v: want exactly the four token counts", u)
	}
	got := tokens{u.num(t, "input_tokens"), u.num(t, "cache_creation_input_tokens"), u.num(t, "cache_read_input_tokens"), u.num(t, "output_tokens")}
	if got.input < 0 || got.cacheCreate < 0 || got.cacheRead < 0 || got.output < 1 {
		t.Fatalf("implausible usage %+v in %v", got, e)
	}
	return got
}

// message is one assistant message as a consumer sees it: the lines sharing its id.
type message struct {
	id      string
	usage   tokens
	lines   int
	content []map[string]any // every line's content blocks, in order
}

// messages groups the assistant lines by message id, checking that the lines of one message
// agree on its usage, as Claude Code's do.
func messages(t *testing.T, o *output) []*message {
	t.Helper()
	var out []*message
	byID := map[string]*message{}
	for _, e := range o.ofType("assistant") {
		msg := e["message"].(map[string]any)
		id := msg["id"].(string)
		u := tokensOf(t, e, msg["usage"])
		m := byID[id]
		if m == nil {
			m = &message{id: id, usage: u}
			byID[id] = m
			out = append(out, m)
		} else if m.usage != u {
			t.Fatalf("message %s: usage %+v on one line, %+v on another", id, m.usage, u)
		}
		m.lines++
		for _, c := range msg["content"].([]any) {
			m.content = append(m.content, c.(map[string]any))
		}
	}
	return out
}

// checkUsage checks the result's usage, cost and num_turns against what a consumer derives from
// the assistant lines: usage summed once per message id.
func checkUsage(t *testing.T, o *output) (sum tokens, msgs []*message) {
	t.Helper()
	msgs = messages(t, o)
	for _, m := range msgs {
		sum = sum.plus(m.usage)
	}
	res := lastEvent(o)
	if res.str("type") != "result" {
		t.Fatalf("last event is not a result: %v", res)
	}
	if len(msgs) == 0 {
		const zero = `{"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"input_tokens":0,"output_tokens":0}`
		if got := mustJSON(res["usage"]); got != zero {
			t.Fatalf("no messages but result usage %s", got)
		}
	} else if got := tokensOf(t, res, res["usage"]); got != sum {
		t.Fatalf("result usage %+v, the assistant messages sum to %+v", got, sum)
	}
	if n := res.num(t, "num_turns"); n != int64(len(msgs)) {
		t.Fatalf("num_turns %d, %d messages", n, len(msgs))
	}
	cost, err := res["total_cost_usd"].(json.Number).Float64()
	if err != nil {
		t.Fatalf("total_cost_usd %v: %v", res["total_cost_usd"], err)
	}
	// Sonnet list prices per million tokens.
	want := (3*float64(sum.input) + 15*float64(sum.output) + 0.30*float64(sum.cacheRead) + 3.75*float64(sum.cacheCreate)) / 1e6
	if math.Abs(cost-want) > 1e-9*max(1, want) {
		t.Fatalf("total_cost_usd %v, want %v for %+v", cost, want, sum)
	}
	if _, ok := res["permission_denials"].([]any); !ok {
		t.Fatalf("result has no permission_denials array: %v", res)
	}
	return sum, msgs
}

func TestUsageSumsMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		// shared: some message is printed on more than one line, so deduplication matters.
		shared bool
		code   int
	}{
		{"claude-flow", []string{"swarm", "x", "--pace", "0"}, true, 0},
		{"claude-code", []string{"-p", "fix the bug", "--pace", "0", "--events", "40"}, true, 0},
		{"short tool cycle", []string{"swarm", "x", "--pace", "0", "--events", "7"}, true, 0},
		{"tool_use alone", []string{"swarm", "x", "--pace", "0", "--events", "3"}, false, 0},
		{"text alone", []string{"swarm", "x", "--pace", "0", "--events", "2"}, false, 0},
		// The body stops after a text line whose tool_use never comes: the message still counts once.
		{"fail cuts a message", []string{"swarm", "x", "--pace", "0", "--events", "18", "--fail"}, true, 1},
		{"is-error", []string{"swarm", "x", "--pace", "0", "--is-error"}, true, 0},
		{"knob messages", []string{"swarm", "x sim:print-key sim:task-tool sim:permission-denied", "--pace", "0"}, true, 0},
		{"no body", []string{"swarm", "x", "--pace", "0", "--events", "0"}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := runMain(t, nil, tt.args...)
			if ExitCode(o.err) != tt.code {
				t.Fatalf("exit %d (%v), want %d", ExitCode(o.err), o.err, tt.code)
			}
			sum, msgs := checkUsage(t, o)
			shared := false
			for _, m := range msgs {
				shared = shared || m.lines > 1
			}
			if shared != tt.shared {
				t.Fatalf("a message on several lines: %v, want %v", shared, tt.shared)
			}
			if len(msgs) > 0 && (sum.input == 0 || sum.output == 0 || sum.cacheRead == 0 || sum.cacheCreate == 0) {
				t.Fatalf("a zero sum: %+v", sum)
			}
			if lineSum := sumLines(t, o); shared && lineSum == sum {
				t.Fatal("summing every line gives the same as summing messages: deduplication is not exercised")
			}
		})
	}
}

// sumLines is the naive sum over assistant lines, which double-counts a message's later blocks.
func sumLines(t *testing.T, o *output) tokens {
	t.Helper()
	var sum tokens
	for _, e := range o.ofType("assistant") {
		sum = sum.plus(tokensOf(t, e, e["message"].(map[string]any)["usage"]))
	}
	return sum
}

func TestUsageLikeACachedConversation(t *testing.T) {
	t.Parallel()
	o := runMain(t, nil, "-p", "x", "--pace", "0", "--events", "40")
	msgs := messages(t, o)
	if len(msgs) < 10 {
		t.Fatalf("only %d messages", len(msgs))
	}
	for i, m := range msgs {
		if i == 0 {
			if m.usage.cacheRead != systemPromptTokens {
				t.Fatalf("first message reads %d tokens from the cache, want the system prompt's %d", m.usage.cacheRead, systemPromptTokens)
			}
			continue
		}
		prev := msgs[i-1].usage
		if m.usage.cacheRead != prev.prompt() || m.usage.input <= prev.input {
			t.Fatalf("message %d usage %+v after %+v: want the previous prompt read from the cache and more input", i, m.usage, prev)
		}
	}
	for _, m := range msgs {
		var text int
		for _, c := range m.content {
			if s, ok := c["text"].(string); ok {
				text += len(s)
			}
		}
		if m.lines == 1 && text > 0 && (m.usage.output*4 < int64(text) || m.usage.output*4 > int64(text)+100) {
			t.Fatalf("%d output tokens for %d bytes of text", m.usage.output, text)
		}
	}
}

func TestUsageCompacts(t *testing.T) {
	t.Parallel()
	o := runMain(t, nil, "-p", "x", "--pace", "0", "--events", "8000")
	fresh := 0
	for _, m := range messages(t, o) {
		if m.usage.cacheRead == systemPromptTokens {
			fresh++
		}
		if m.usage.prompt() > compactTokens+10_000 {
			t.Fatalf("prompt of %d tokens: the conversation was not compacted", m.usage.prompt())
		}
	}
	if fresh < 2 {
		t.Fatalf("%d fresh conversations, want a compaction", fresh)
	}
	checkUsage(t, o)
}

func TestNoResult(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		ref  []string // the same run without the knob
		code int
	}{
		{"flag", []string{"swarm", "x", "--no-result"}, nil, []string{"swarm", "x"}, 0},
		{"directive", []string{"swarm", "x sim:no-result"}, nil, []string{"swarm", "x sim:no-result", "--no-result=false"}, 0},
		{"env", []string{"-p", "x"}, map[string]string{"FLOWGATE_SIM_NO_RESULT": "1"}, []string{"-p", "x"}, 0},
		{"with fail", []string{"swarm", "x", "--no-result", "--fail"}, nil, []string{"swarm", "x", "--fail"}, 1},
		{"with exit-code", []string{"swarm", "x", "--no-result", "--exit-code", "3"}, nil, []string{"swarm", "x", "--exit-code", "3"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := runMain(t, tt.env, append(tt.args, "--pace", "0", "--events", "9")...)
			if ExitCode(o.err) != tt.code {
				t.Fatalf("exit %d (%v), want %d", ExitCode(o.err), o.err, tt.code)
			}
			if n := len(o.ofType("result")); n != 0 {
				t.Fatalf("%d result lines", n)
			}
			// Everything but the result is what the same run prints without the knob.
			want := stripTimes(runMain(t, nil, append(tt.ref, "--pace", "0", "--events", "9")...))
			if got := stripTimes(o); !reflect.DeepEqual(got, want[:len(want)-1]) {
				t.Fatalf("with no-result:\n%v\nwithout:\n%v", got, want)
			}
		})
	}
	o := runMain(t, map[string]string{"FLOWGATE_SIM_NO_RESULT": "1"}, "swarm", "x", "--no-result=false", "--pace", "0")
	checkScript(t, o, 5, 20, false)
}

// toolUses finds the assistant tool_use blocks calling name.
func toolUses(o *output, name string) []map[string]any {
	var out []map[string]any
	for _, e := range o.ofType("assistant") {
		for _, c := range e["message"].(map[string]any)["content"].([]any) {
			if b := c.(map[string]any); b["type"] == "tool_use" && b["name"] == name {
				out = append(out, b)
			}
		}
	}
	return out
}

// indexOf is the position of the first event that has the given string fields.
func indexOf(o *output, fields map[string]string) int {
	for i, e := range o.events {
		match := true
		for k, v := range fields {
			match = match && e.str(k) == v
		}
		if match {
			return i
		}
	}
	return -1
}

// toolResultFor is the position of the user line answering id.
func toolResultFor(o *output, id string) (int, map[string]any) {
	for i, e := range o.events {
		if e.str("type") != "user" {
			continue
		}
		if c := e["message"].(map[string]any)["content"].([]any)[0].(map[string]any); c["tool_use_id"] == id {
			return i, c
		}
	}
	return -1, nil
}

func TestPermissionDenied(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                  string
		args                  []string
		agents, events, extra int
	}{
		{"claude-code", []string{"-p", "write the report", "--permission-denied"}, 1, 20, 2},
		{"claude-flow directive", []string{"swarm", "write the report sim:permission-denied"}, 5, 20, 2},
		{"no body", []string{"swarm", "x", "--permission-denied", "--events", "0"}, 5, 0, 2},
		{"with task tool", []string{"-p", "x sim:task-tool", "--permission-denied", "--events", "5"}, 1, 5, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := runMain(t, nil, append(tt.args, "--pace", "0")...)
			if o.err != nil {
				t.Fatalf("Main: %v (stderr %q)", o.err, o.stderr)
			}
			checkScriptExtra(t, o, tt.agents, tt.events, tt.extra, false)

			denied := o.ofType("system")[1:]
			if len(denied) != 1 || denied[0].str("subtype") != "permission_denied" {
				t.Fatalf("want one permission_denied event, got %v", denied)
			}
			d := denied[0]
			writes := toolUses(o, "Write")
			if len(writes) != 1 {
				t.Fatalf("%d Write tool_uses, want 1", len(writes))
			}
			id := writes[0]["id"].(string)
			input := writes[0]["input"].(map[string]any)
			path, _ := input["file_path"].(string)
			if d.str("tool_name") != "Write" || d.str("tool_use_id") != id || d.str("session_id") != o.events[0].str("session_id") ||
				d.str("message") != "Claude requested permissions to write to "+path+", but you haven't granted it yet." || path == "" {
				t.Fatalf("permission_denied %v does not match the Write tool_use %v", d, writes[0])
			}
			at := indexOf(o, map[string]string{"type": "system", "subtype": "permission_denied"})
			if use := o.events[at-1]; use.str("type") != "assistant" || !strings.Contains(mustJSON(use), id) {
				t.Fatalf("the denial does not follow its tool_use: %v", use)
			}
			ri, res := toolResultFor(o, id)
			if ri != at+1 || res["is_error"] != true || res["content"] != d.str("message") {
				t.Fatalf("tool_result %v at %d, want the denial's error right after it (%d)", res, ri, at)
			}
			list := lastEvent(o)["permission_denials"].([]any)
			want := map[string]any{"tool_name": "Write", "tool_use_id": id, "tool_input": input}
			if len(list) != 1 || !reflect.DeepEqual(list[0], want) {
				t.Fatalf("permission_denials %v, want [%v]", list, want)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestNoPermissionDenialsByDefault(t *testing.T) {
	t.Parallel()
	o := runMain(t, nil, "swarm", "x", "--pace", "0")
	if list := lastEvent(o)["permission_denials"].([]any); len(list) != 0 || len(toolUses(o, "Write")) != 0 ||
		indexOf(o, map[string]string{"subtype": "permission_denied"}) >= 0 || len(toolUses(o, "Task")) != 0 {
		t.Fatalf("a denial or Task without the knobs: %v", o.types())
	}
}

func TestTaskTool(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		args           []string
		env            map[string]string
		agents, events int
	}{
		{"claude-code", []string{"-p", "research the market", "--task-tool"}, nil, 1, 20},
		{"claude-flow env", []string{"swarm", "research the market"}, map[string]string{"FLOWGATE_SIM_TASK_TOOL": "true"}, 5, 20},
		{"no body", []string{"-p", "research the market sim:task-tool", "--events", "0"}, nil, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := runMain(t, tt.env, append(tt.args, "--pace", "0")...)
			if o.err != nil {
				t.Fatalf("Main: %v (stderr %q)", o.err, o.stderr)
			}
			checkScript(t, o, tt.agents, tt.events, false)
			tasks := toolUses(o, "Task")
			if len(tasks) != 1 {
				t.Fatalf("%d Task tool_uses, want 1", len(tasks))
			}
			task := tasks[0]
			in := event(task["input"].(map[string]any))
			if len(in) != 3 || in.str("description") == "" || !strings.Contains(in.str("prompt"), "research the market") ||
				in.str("subagent_type") != "general-purpose" {
				t.Fatalf("Task input %v", in)
			}
			first := o.ofType("assistant")[0]["message"].(map[string]any)["content"].([]any)[0]
			if !reflect.DeepEqual(first, any(task)) {
				t.Fatalf("the Task tool_use is not the first assistant line: %v", first)
			}
			i, res := toolResultFor(o, task["id"].(string))
			if i < 0 || res["is_error"] == true {
				t.Fatalf("no tool_result for the Task: %v", res)
			}
			// The gateway stops deriving progress from assistant lines once the engine prints
			// agent_spawn itself, so the Task must come first.
			if spawn := indexOf(o, map[string]string{"type": "agent_spawn"}); spawn < i {
				t.Fatalf("agent_spawn at %d before the Task's tool_result at %d: %v", spawn, i, o.types())
			}
		})
	}
}
