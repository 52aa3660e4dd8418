package task

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
)

// realScript prints what Claude Code prints in stream-json mode: an init, assistant messages
// (one line per content block, the message's id and usage repeated), permission denials, a
// sub-agent, and a result whose usage is the run's total.
const realScript = `
assistant() { echo '{"type":"assistant","message":{"id":"'$1'","type":"message","role":"assistant","model":"m","content":['"$2"'],"stop_reason":null,"usage":{"input_tokens":'$3',"cache_creation_input_tokens":5,"cache_read_input_tokens":7,"output_tokens":'$4'}},"parent_tool_use_id":'"$5"',"session_id":"s"}'; }
echo '{"type":"system","subtype":"init","cwd":"/x","tools":["Write"]}'
assistant msg_1 '{"type":"text","text":"Planning the work."}' 100 10 null
assistant msg_1 '{"type":"tool_use","id":"toolu_a","name":"Agent","input":{"description":"research it","prompt":"go","subagent_type":"researcher"}}' 100 12 null
assistant msg_2 '{"type":"text","text":"sub-agent speaking"}' 40 4 '"toolu_a"'
case "$1" in *deny*)
  echo '{"type":"system","subtype":"permission_denied","tool_name":"Bash","message":"needs approval"}'
  echo '{"type":"system","subtype":"permission_denied","tool_name":"Write","message":"needs approval"}' ;;
esac
case "$1" in
  *noresult*) exit 0 ;;
  *apierror*) echo '{"type":"result","subtype":"success","is_error":true,"result":"Invalid API key · Fix external API key","num_turns":1,"total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0}}'; exit 1 ;;
  *) echo '{"type":"result","subtype":"success","is_error":false,"result":"done","num_turns":2,"total_cost_usd":0.0123,"usage":{"input_tokens":140,"cache_creation_input_tokens":10,"cache_read_input_tokens":14,"output_tokens":16},"permission_denials":[]}' ;;
esac`

func TestRealEngineCompletion(t *testing.T) {
	e := newEnv(t)
	p := principal("acme", "alice", auth.PermSwarmExecute)
	tests := []struct {
		name, obj      string
		require        bool
		status, errMsg string
		exit           float64
		denials        float64
		usage          map[string]any
	}{
		{"result line", "ok", true, protocol.StatusSuccess, "", 0, 0,
			map[string]any{"inputTokens": 140.0, "outputTokens": 16.0, "cacheReadInputTokens": 14.0, "cacheCreationInputTokens": 10.0, "costUsd": 0.0123, "numTurns": 2.0}},
		{"exit 0 without a result line fails", "noresult", true, protocol.StatusFailed, "engine produced no result", 0, 0,
			// The assistant messages' usage, summed once per message id.
			map[string]any{"inputTokens": 140.0, "outputTokens": 16.0, "cacheReadInputTokens": 14.0, "cacheCreationInputTokens": 10.0, "costUsd": 0.0, "numTurns": 2.0}},
		{"exit 0 without a result line, custom profile", "noresult", false, protocol.StatusSuccess, "", 0, 0, nil},
		{"is_error carries the engine's words", "apierror", true, protocol.StatusFailed, "Invalid API key · Fix external API key", 1, 0, nil},
		{"permission denials are counted", "deny", true, protocol.StatusSuccess, "", 0, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newManager(t, e, realScript, func(o *Options) { o.RequireResult = tt.require; o.DeriveProgress = true })
			frames := run(t, m, p, tt.obj)
			done := frames[len(frames)-1]
			if done["type"] != protocol.TypeTaskComplete || done["status"] != tt.status || done["exitCode"] != tt.exit {
				t.Fatalf("task_complete = %v", done)
			}
			if got, _ := done["error"].(string); got != tt.errMsg {
				t.Errorf("error = %q, want %q", got, tt.errMsg)
			}
			if done["permissionDenials"] != tt.denials {
				t.Errorf("permissionDenials = %v, want %v", done["permissionDenials"], tt.denials)
			}
			if tt.usage != nil && fmt.Sprint(done["usage"]) != fmt.Sprint(tt.usage) {
				t.Errorf("usage = %v, want %v", done["usage"], tt.usage)
			}
			// status answers with the same usage, from memory and from the store.
			id, _ := done["taskId"].(string)
			snap, err := m.Status(context.Background(), p, id)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := e.db.GetTask(context.Background(), "acme", id)
			if err != nil {
				t.Fatal(err)
			}
			if tt.usage != nil {
				if snap.Usage == nil || float64(snap.Usage.OutputTokens) != tt.usage["outputTokens"] {
					t.Errorf("status usage = %+v", snap.Usage)
				}
				if rec.Usage == nil || float64(rec.Usage.OutputTokens) != tt.usage["outputTokens"] || rec.Usage.CostUSD != tt.usage["costUsd"] {
					t.Errorf("stored usage = %+v", rec.Usage)
				}
			}
			if float64(rec.PermissionDenials) != tt.denials {
				t.Errorf("stored permission denials = %d", rec.PermissionDenials)
			}
		})
	}
}

func TestProgressDerivedFromRealEvents(t *testing.T) {
	e := newEnv(t)
	p := principal("acme", "alice", auth.PermSwarmExecute)
	for _, derive := range []bool{true, false} {
		t.Run(fmt.Sprint("derive=", derive), func(t *testing.T) {
			m := newManager(t, e, realScript, func(o *Options) { o.RequireResult = true; o.DeriveProgress = derive })
			frames := run(t, m, p, "ok")
			var got []string
			for i, f := range frames {
				if f["seq"] != float64(i+1) {
					t.Fatalf("frame %d has seq %v", i, f["seq"])
				}
				switch f["type"] {
				case typeAgentSpawn:
					got = append(got, fmt.Sprintf("agent_spawn %v %v %v", f["agentId"], f["agentType"], f["description"]))
				case typeTaskProgress:
					got = append(got, fmt.Sprintf("task_progress %v %v", f["progress"], f["message"]))
				case typeInsight:
					got = append(got, fmt.Sprintf("insight %v %v", f["message"], f["agentId"]))
				}
				if ty := f["type"]; (ty == typeAgentSpawn || ty == typeTaskProgress || ty == typeInsight) && f["derived"] != true {
					t.Errorf("derived event not marked: %v", f)
				}
			}
			want := []string{
				"task_progress 45 turn 1", "insight Planning the work. <nil>",
				"agent_spawn toolu_a researcher research it",
				"task_progress 60 turn 2", "insight sub-agent speaking toolu_a",
			}
			if !derive {
				want = nil
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("derived events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// An engine that speaks the seed's dialect itself (the sim, claude-flow's own events) gets no
// derived events on top.
func TestNoDerivationForSeedDialect(t *testing.T) {
	e := newEnv(t)
	p := principal("acme", "alice", auth.PermSwarmExecute)
	script := `echo '{"type":"agent_spawn","agentId":"a1","agentType":"coder"}'` + "\n" + realScript
	m := newManager(t, e, script, func(o *Options) { o.RequireResult = true; o.DeriveProgress = true })
	for _, f := range run(t, m, p, "ok") {
		if f["derived"] == true {
			t.Errorf("derived event for a seed-dialect engine: %v", f)
		}
	}
}

func TestMessageUsage(t *testing.T) {
	tests := []struct {
		line, id, usage string
	}{
		{`{"type":"assistant","message":{"id":"msg_1","content":[{"type":"tool_use","input":{"usage":{"x":1}}}],"usage":{"input_tokens":3,"server_tool_use":{"web_search_requests":0}}}}`,
			"msg_1", `{"input_tokens":3,"server_tool_use":{"web_search_requests":0}}`},
		{`{"type":"assistant","message":{"id":"msg_2","content":[{"type":"text","text":"\"usage\":{"}]}}`, "msg_2", ""},
		{`{"type":"assistant"}`, "", ""},
		{`{"type":"assistant","message":{"usage":{"output_tokens":1`, "", ""},
	}
	for _, tt := range tests {
		id, u := messageUsage([]byte(tt.line))
		if string(id) != tt.id || string(u) != tt.usage {
			t.Errorf("messageUsage(%s) = %q %q, want %q %q", tt.line, id, u, tt.id, tt.usage)
		}
	}
}

// A hostile engine's negative or repeated usage neither goes negative nor double counts.
func TestObserveAssistantClampsAndDeduplicates(t *testing.T) {
	var es engineState
	line := func(id string, in, out int) []byte {
		return fmt.Appendf(nil, `{"type":"assistant","message":{"id":"%s","usage":{"input_tokens":%d,"output_tokens":%d}}}`, id, in, out)
	}
	es.observeAssistant(line("a", 10, 1))
	es.observeAssistant(line("a", 10, 1))
	es.observeAssistant(line("a", 10, 3)) // the same message, its usage updated
	es.observeAssistant(line("b", -50, -5))
	u := es.snapshot()
	if u == nil || u.InputTokens != 10 || u.OutputTokens != 3 || u.NumTurns != 2 {
		t.Errorf("usage = %+v", u)
	}
}

func FuzzObserveEngineLine(f *testing.F) {
	f.Add([]byte(`{"type":"assistant","message":{"id":"m","content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"t","name":"Task","input":{"description":"d"}}],"usage":{"input_tokens":1}}}`))
	f.Add([]byte(`{"type":"system","subtype":"permission_denied"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var es engineState
		es.observeAssistant(line)
		_ = isPermissionDenied(line)
		for _, d := range deriveProgress(line, true, 1) {
			frame := derivedFrame(nil, d, "t1", 1, []byte("now"))
			if !json.Valid(frame) {
				t.Fatalf("derived frame is not JSON: %s", frame)
			}
		}
		if u := es.snapshot(); u != nil && (u.InputTokens < 0 || u.OutputTokens < 0) {
			t.Fatalf("negative usage %+v", u)
		}
	})
}

// decodeUsage agrees with encoding/json on every input both accept as an object whose count
// keys are spelled exactly; where encoding/json refuses, so does it.
func FuzzDecodeUsage(f *testing.F) {
	for _, s := range []string{
		`{"input_tokens":12,"output_tokens":3,"cache_read_input_tokens":0,"cache_creation_input_tokens":7}`,
		`{"input_tokens":12,"service_tier":"standard","cache_creation":{"ephemeral_5m_input_tokens":0},"output_tokens":null}`,
		`{ "input_tokens" : -5 , "output_tokens" : 9223372036854775807 }`,
		`{"input_tokens":1.5}`, `{"input_tokens":"5"}`, `{"input_tokens":1e3}`, `{"input_tokens":01}`,
		`{"output_tokens":9223372036854775808}`, `{"input_tokens":-9223372036854775808}`,
		`{}`, `[]`, `{"a":}`, `{"input_tokens":1}x`, `{"input_tokens":1,}`, `{"in\u0070ut_tokens":4}`,
		`{"input_tokens":1,"input_tokens":2}`, `{"x":[1,{"y":"}"}],"input_tokens":3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := decodeUsage(b) // never panics, whatever b is
		// The lines it reads were validated as JSON first; what it does not follow on purpose:
		// encoding/json's case-insensitive key match and its unescaping of keys.
		if !json.Valid(b) || bytes.Contains(b, []byte(`\`)) {
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(b, &obj) != nil || obj == nil {
			if ok {
				t.Fatalf("decodeUsage(%q) accepted a value that is not an object", b)
			}
			return
		}
		for k := range obj {
			for _, name := range []string{"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"} {
				if k != name && strings.EqualFold(k, name) {
					return
				}
			}
		}
		var want apiUsage
		err := json.Unmarshal(b, &want)
		if (err == nil) != ok {
			t.Fatalf("decodeUsage(%q) ok=%v; encoding/json err=%v", b, ok, err)
		}
		if ok && got != want {
			t.Fatalf("decodeUsage(%q) = %+v; encoding/json %+v", b, got, want)
		}
	})
}
