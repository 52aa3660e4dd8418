package validation

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/protocol"
)

// decodeSwarm runs a frame through the real decoder, as the session does.
func decodeSwarm(t *testing.T, frame string) *protocol.Swarm {
	t.Helper()
	msg, err := protocol.Decode([]byte(frame))
	if err != nil {
		t.Fatalf("Decode(%.80q): %v", frame, err)
	}
	m, ok := msg.(*protocol.Swarm)
	if !ok {
		t.Fatalf("Decode(%.80q) = %T", frame, msg)
	}
	return m
}

// swarmFrame builds a swarm frame with the objective JSON-encoded and options spliced raw.
func swarmFrame(objective string, options string) string {
	obj, _ := json.Marshal(objective)
	if options == "" {
		return `{"type":"swarm","objective":` + string(obj) + `}`
	}
	return `{"type":"swarm","objective":` + string(obj) + `,"options":` + options + `}`
}

func ptr[T any](v T) *T { return &v }

// fieldsOf asserts err is a *Error and returns its fields.
func fieldsOf(t *testing.T, err error) map[string]string {
	t.Helper()
	var ve *Error
	if !errors.As(err, &ve) {
		t.Fatalf("error = %T %v; want *validation.Error", err, err)
	}
	if len(ve.Fields) == 0 {
		t.Fatal("validation.Error without fields")
	}
	for f, msg := range ve.Fields {
		if msg == "" {
			t.Errorf("field %s has an empty message", f)
		}
	}
	return ve.Fields
}

func TestSwarmRejects(t *testing.T) {
	v := New()
	lim := designLimits()
	emoji := strings.Repeat("😀", 1000) // 1000 runes, 4000 bytes: both limits exactly
	tests := []struct {
		name    string
		msg     *protocol.Swarm // built directly when the decoder would refuse first
		frame   string
		fields  []string // every field that must be reported
		message string   // substring of the first field's message, when it matters
	}{
		{name: "objective missing", frame: `{"type":"swarm"}`, fields: []string{"objective"}, message: "is required"},
		{name: "objective null", frame: `{"type":"swarm","objective":null}`, fields: []string{"objective"}, message: "is required"},
		{name: "objective empty", frame: swarmFrame("", ""), fields: []string{"objective"}, message: "is required"},
		{name: "objective blank spaces", frame: swarmFrame("   ", ""), fields: []string{"objective"}, message: "blank"},
		{name: "objective blank unicode spaces", frame: swarmFrame("\u00a0\u2003\u3000\n\t", ""), fields: []string{"objective"}, message: "blank"},
		{name: "objective blank zero width", frame: swarmFrame("\u200b\ufeff", ""), fields: []string{"objective"}, message: "blank"},
		{name: "objective 1001 chars", frame: swarmFrame(strings.Repeat("a", 1001), ""), fields: []string{"objective"}, message: "at most 1000 characters"},
		{name: "objective 4001 bytes of emoji", frame: swarmFrame(emoji+"a", ""), fields: []string{"objective"}, message: "at most 4000 bytes"},
		{name: "objective 1001 emoji", frame: swarmFrame(emoji+"😀", ""), fields: []string{"objective"}, message: "at most 4000 bytes"},
		{name: "objective invalid utf8", msg: &protocol.Swarm{Type: "swarm", Objective: ptr("ab\xffcd")}, fields: []string{"objective"}, message: "UTF-8"},
		{name: "objective NUL", frame: swarmFrame("run\x00this", ""), fields: []string{"objective"}, message: "NUL"},
		{name: "objective ANSI escape", frame: swarmFrame("hello \x1b[31mred", ""), fields: []string{"objective"}, message: "control"},
		{name: "objective carriage return", frame: swarmFrame("line\rover", ""), fields: []string{"objective"}, message: "control"},
		{name: "objective DEL", frame: swarmFrame("a\x7fb", ""), fields: []string{"objective"}, message: "control"},
		{name: "objective C1 NEL", frame: swarmFrame("a\u0085b", ""), fields: []string{"objective"}, message: "control"},
		{name: "objective bidi override", frame: swarmFrame("abc\u202edcba", ""), fields: []string{"objective"}, message: "bidirectional"},
		{name: "objective bidi isolate", frame: swarmFrame("abc\u2066x\u2069", ""), fields: []string{"objective"}, message: "bidirectional"},
		{name: "objective RLM", frame: swarmFrame("abc\u200f", ""), fields: []string{"objective"}, message: "bidirectional"},
		{name: "objective arabic letter mark", frame: swarmFrame("abc\u061c", ""), fields: []string{"objective"}, message: "bidirectional"},
		{name: "objective --background", frame: swarmFrame("--background", ""), fields: []string{"objective"}, message: "engine flag"},
		{name: "objective -p", frame: swarmFrame("-p x", ""), fields: []string{"objective"}, message: "engine flag"},
		{name: "objective em dash", frame: swarmFrame("—dash", ""), fields: []string{"objective"}, message: "engine flag"},
		{name: "objective hyphen U+2010", frame: swarmFrame("‐", ""), fields: []string{"objective"}, message: "engine flag"},
		{name: "objective en dash", frame: swarmFrame("–x", ""), fields: []string{"objective"}, message: "engine flag"},
		{name: "objective minus sign", frame: swarmFrame("−x", ""), fields: []string{"objective"}, message: "engine flag"},
		{name: "objective fullwidth hyphen", frame: swarmFrame("－x", ""), fields: []string{"objective"}, message: "engine flag"},
		{name: "objective dash after spaces", frame: swarmFrame("  \n\t--dangerously-skip-permissions", ""), fields: []string{"objective"}, message: "engine flag"},
		{name: "objective dash after nbsp and zwsp", frame: swarmFrame("\u00a0\u200b-x", ""), fields: []string{"objective"}, message: "engine flag"},

		{name: "agents 0", frame: swarmFrame("x", `{"agents":0}`), fields: []string{"options.agents"}, message: "must be an integer between 1 and 20"},
		{name: "agents 21", frame: swarmFrame("x", `{"agents":21}`), fields: []string{"options.agents"}, message: "between 1 and 20"},
		{name: "agents string", frame: swarmFrame("x", `{"agents":"5"}`), fields: []string{"options.agents"}, message: "integer"},
		{name: "agents fraction", frame: swarmFrame("x", `{"agents":5.5}`), fields: []string{"options.agents"}, message: "integer"},
		{name: "agents 5.0", frame: swarmFrame("x", `{"agents":5.0}`), fields: []string{"options.agents"}, message: "integer"},
		{name: "agents negative", frame: swarmFrame("x", `{"agents":-1}`), fields: []string{"options.agents"}, message: "integer"},
		{name: "agents exponent", frame: swarmFrame("x", `{"agents":1e9}`), fields: []string{"options.agents"}, message: "integer"},
		{name: "agents 1e0", frame: swarmFrame("x", `{"agents":1e0}`), fields: []string{"options.agents"}, message: "integer"},
		{name: "agents huge", frame: swarmFrame("x", `{"agents":123456789012345678901234567890}`), fields: []string{"options.agents"}, message: "integer"},
		{name: "agents huge negative", frame: swarmFrame("x", `{"agents":-123456789012345678901234567890}`), fields: []string{"options.agents"}, message: "integer"},
		{name: "agents null", frame: swarmFrame("x", `{"agents":null}`), fields: []string{"options.agents"}, message: "integer"},
		{name: "agents bool", frame: swarmFrame("x", `{"agents":true}`), fields: []string{"options.agents"}, message: "integer"},
		{name: "agents array", frame: swarmFrame("x", `{"agents":[5]}`), fields: []string{"options.agents"}, message: "integer"},
		{name: "timeout 0", frame: swarmFrame("x", `{"timeout":0}`), fields: []string{"options.timeout"}, message: "between 1 and 3600"},
		{name: "timeout 3601", frame: swarmFrame("x", `{"timeout":3601}`), fields: []string{"options.timeout"}, message: "between 1 and 3600"},
		{name: "timeout string", frame: swarmFrame("x", `{"timeout":"60"}`), fields: []string{"options.timeout"}},
		{name: "strategy evil", frame: swarmFrame("x", `{"strategy":"evil"}`), fields: []string{"options.strategy"}, message: "must be one of: auto, parallel, sequential"},
		{name: "strategy flag", frame: swarmFrame("x", `{"strategy":"--x"}`), fields: []string{"options.strategy"}, message: "must be one of"},
		{name: "strategy case", frame: swarmFrame("x", `{"strategy":"Auto"}`), fields: []string{"options.strategy"}},
		{name: "strategy number", frame: swarmFrame("x", `{"strategy":1}`), fields: []string{"options.strategy"}},
		{name: "strategy null", frame: swarmFrame("x", `{"strategy":null}`), fields: []string{"options.strategy"}},
		{name: "mode evil", frame: swarmFrame("x", `{"mode":"mesh; rm -rf /"}`), fields: []string{"options.mode"}, message: "centralized, distributed"},
		{name: "unknown option", frame: swarmFrame("x", `{"bogus":1}`), fields: []string{"options.bogus"}, message: "is not a known option"},
		{name: "unknown option case", frame: swarmFrame("x", `{"Agents":3}`), fields: []string{"options.Agents"}, message: "is not a known option"},
		{name: "unknown option hostile name", frame: swarmFrame("x", `{"a.b\u0000c":1}`), fields: []string{"options"}, message: "unknown option"},
		{name: "requestId too long", frame: `{"type":"swarm","objective":"x","requestId":"` + strings.Repeat("r", 65) + `"}`, fields: []string{"requestId"}, message: "at most 64"},
		{name: "requestId control", frame: `{"type":"swarm","objective":"x","requestId":"a\nb"}`, fields: []string{"requestId"}, message: "printable"},
		{
			name:   "several bad fields at once",
			frame:  `{"type":"swarm","objective":"--x","requestId":"a\u0007","options":{"agents":"5","timeout":0,"strategy":"evil","mode":"x","bogus":1,"other":2}}`,
			fields: []string{"objective", "requestId", "options.agents", "options.timeout", "options.strategy", "options.mode", "options.bogus", "options.other"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.msg
			if m == nil {
				m = decodeSwarm(t, tt.frame)
			}
			req, err := v.Swarm(m, lim)
			if err == nil {
				t.Fatalf("accepted: %+v", req)
			}
			fields := fieldsOf(t, err)
			for _, f := range tt.fields {
				if _, ok := fields[f]; !ok {
					t.Errorf("field %q not reported; got %v", f, fields)
				}
			}
			if len(fields) != len(tt.fields) {
				t.Errorf("reported %d fields %v; want exactly %v", len(fields), fields, tt.fields)
			}
			if tt.message != "" && !strings.Contains(fields[tt.fields[0]], tt.message) {
				t.Errorf("%s: message %q does not contain %q", tt.fields[0], fields[tt.fields[0]], tt.message)
			}
			if m.Objective != nil && len(*m.Objective) >= 4 && strings.Contains(err.Error(), *m.Objective) {
				t.Errorf("error %q echoes the objective", err)
			}
		})
	}
}

func TestSwarmAccepts(t *testing.T) {
	v := New()
	tests := []struct {
		name  string
		frame string
		want  SwarmRequest
	}{
		{"defaults", swarmFrame("write a haiku", ""), SwarmRequest{Objective: "write a haiku", Agents: 3, Strategy: "auto", Mode: "centralized", Timeout: 600 * time.Second}},
		{"seed options", swarmFrame("x", `{"agents":5,"strategy":"parallel"}`), SwarmRequest{Objective: "x", Agents: 5, Strategy: "parallel", Mode: "centralized", Timeout: 600 * time.Second}},
		{"all options", swarmFrame("x", `{"agents":20,"strategy":"sequential","mode":"distributed","timeout":3600}`), SwarmRequest{Objective: "x", Agents: 20, Strategy: "sequential", Mode: "distributed", Timeout: time.Hour}},
		{"min options", swarmFrame("x", `{"agents":1,"timeout":1}`), SwarmRequest{Objective: "x", Agents: 1, Strategy: "auto", Mode: "centralized", Timeout: time.Second}},
		{"empty options", swarmFrame("x", `{}`), SwarmRequest{Objective: "x", Agents: 3, Strategy: "auto", Mode: "centralized", Timeout: 600 * time.Second}},
		{"shell substitution", swarmFrame("$(id)", ""), SwarmRequest{Objective: "$(id)"}},
		{"shell separator", swarmFrame("; rm -rf /", ""), SwarmRequest{Objective: "; rm -rf /"}},
		{"backticks", swarmFrame("`whoami` and 'quotes' \"too\" | cat > /etc/x & <y>", ""), SwarmRequest{Objective: "`whoami` and 'quotes' \"too\" | cat > /etc/x & <y>"}},
		{"newlines and tabs inside", swarmFrame("line one\n\tline two\n", ""), SwarmRequest{Objective: "line one\n\tline two\n"}},
		{"leading spaces kept", swarmFrame("  spaced  ", ""), SwarmRequest{Objective: "  spaced  "}},
		{"dash inside", swarmFrame("refactor the --verbose flag — carefully", ""), SwarmRequest{Objective: "refactor the --verbose flag — carefully"}},
		{"exactly 1000 chars", swarmFrame(strings.Repeat("a", 1000), ""), SwarmRequest{Objective: strings.Repeat("a", 1000)}},
		{"exactly 4000 bytes", swarmFrame(strings.Repeat("😀", 1000), ""), SwarmRequest{Objective: strings.Repeat("😀", 1000)}},
		{"non latin", swarmFrame("日本語で説明して", ""), SwarmRequest{Objective: "日本語で説明して"}},
		{"requestId", `{"type":"swarm","objective":"x","requestId":"req-1 ✓"}`, SwarmRequest{Objective: "x", RequestID: "req-1 ✓"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := v.Swarm(decodeSwarm(t, tt.frame), designLimits())
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if req.Objective != tt.want.Objective {
				t.Fatalf("objective changed: %q; want %q", req.Objective, tt.want.Objective)
			}
			if tt.want.Agents != 0 && req != tt.want {
				t.Fatalf("got %+v; want %+v", req, tt.want)
			}
			if tt.want.RequestID != req.RequestID {
				t.Fatalf("requestId %q; want %q", req.RequestID, tt.want.RequestID)
			}
		})
	}
}

// In UTF-8 1000 runes never exceed 4000 bytes, so each limit is exercised on its own with
// the other one loosened.
func objectiveLimits(chars, bytes int) Limits {
	l := designLimits()
	l.MaxObjectiveChars, l.MaxObjectiveBytes = chars, bytes
	return l
}

func TestObjectiveLimitsIndependent(t *testing.T) {
	v := New()
	emoji := strings.Repeat("😀", 1000)
	tests := []struct {
		name      string
		lim       Limits
		objective string
		want      string // "" when accepted
	}{
		{"bytes: 1001 emoji under a 2000 char limit", objectiveLimits(2000, 4000), emoji + "😀", "at most 4000 bytes"},
		{"bytes: 4001 bytes", objectiveLimits(2000, 4000), emoji + "a", "at most 4000 bytes"},
		{"bytes: exactly 4000", objectiveLimits(2000, 4000), emoji, ""},
		{"chars: 1001 ascii under a big byte limit", objectiveLimits(1000, 100000), strings.Repeat("a", 1001), "at most 1000 characters"},
		{"chars: 1001 emoji under a big byte limit", objectiveLimits(1000, 100000), emoji + "😀", "at most 1000 characters"},
		{"chars: exactly 1000 emoji", objectiveLimits(1000, 100000), emoji, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Swarm(&protocol.Swarm{Type: "swarm", Objective: ptr(tt.objective)}, tt.lim)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if got := fieldsOf(t, err)["objective"]; !strings.Contains(got, tt.want) {
				t.Fatalf("objective = %q; want %q", got, tt.want)
			}
		})
	}
}

// designLimits are the bounds of DESIGN §6 with the seed clients' enums: what a gateway with
// config.Default and the sim profile passes. The validator has none of its own.
func designLimits() Limits {
	return Limits{
		MaxObjectiveChars: 1000, MaxObjectiveBytes: 4000, MaxAgents: 20, MaxTimeoutSeconds: 3600,
		DefaultAgents: 3, DefaultTimeoutSeconds: 600,
		Strategies: []string{"auto", "parallel", "sequential"}, Modes: []string{"centralized", "distributed"},
		DefaultStrategy: "auto", DefaultMode: "centralized",
	}
}

// TestIncompleteLimitsRefused: a wiring mistake (a zero bound, no enum) is an error, never a
// silent default.
func TestIncompleteLimitsRefused(t *testing.T) {
	v := New()
	frame := decodeSwarm(t, swarmFrame("short", ""))
	for _, tt := range []struct {
		name  string
		spoil func(*Limits)
	}{
		{"zero", func(l *Limits) { *l = Limits{} }},
		{"no MaxObjectiveBytes", func(l *Limits) { l.MaxObjectiveBytes = 0 }},
		{"no DefaultAgents", func(l *Limits) { l.DefaultAgents = 0 }},
		{"negative timeout", func(l *Limits) { l.MaxTimeoutSeconds = -1 }},
		{"no strategies", func(l *Limits) { l.Strategies = nil }},
		{"no default mode", func(l *Limits) { l.DefaultMode = "" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lim := designLimits()
			tt.spoil(&lim)
			if _, err := v.Swarm(frame, lim); !errors.Is(err, ErrIncompleteLimits) {
				t.Fatalf("Swarm: err = %v; want ErrIncompleteLimits", err)
			}
			bounded := TenantCreate{ID: "acme", Limits: &TenantLimits{MaxAgents: ptr(2)}}
			if _, err := v.TenantCreate(bounded, lim); !errors.Is(err, ErrIncompleteLimits) {
				t.Fatalf("TenantCreate with maxAgents: err = %v; want ErrIncompleteLimits", err)
			}
		})
	}
	// A tenant body that sets nothing the global bounds (the CLI's) needs none.
	if _, err := v.TenantCreate(TenantCreate{ID: "acme"}, Limits{}); err != nil {
		t.Fatalf("TenantCreate without limits: %v", err)
	}
	if _, err := v.TokenIssue(TokenIssue{Sub: "u", TTL: "1h"}, 0); err == nil {
		t.Fatal("TokenIssue with no ttl cap: no error")
	}
}

func TestSwarmTenantLimits(t *testing.T) {
	v := New()
	lim := Limits{
		MaxObjectiveChars: 10, MaxObjectiveBytes: 20, MaxAgents: 3, MaxTimeoutSeconds: 60,
		DefaultAgents: 5, DefaultTimeoutSeconds: 600,
		Strategies: []string{"parallel", "research"}, Modes: []string{"mesh"},
		DefaultStrategy: "auto", DefaultMode: "centralized",
	}
	req, err := v.Swarm(decodeSwarm(t, swarmFrame("short", "")), lim)
	if err != nil {
		t.Fatal(err)
	}
	// Defaults that the tenant does not allow give way to what it does allow.
	want := SwarmRequest{Objective: "short", Agents: 3, Strategy: "parallel", Mode: "mesh", Timeout: time.Minute}
	if req != want {
		t.Fatalf("got %+v; want %+v", req, want)
	}
	_, err = v.Swarm(decodeSwarm(t, swarmFrame("eleven chars", `{"agents":4,"timeout":61,"strategy":"auto"}`)), lim)
	fields := fieldsOf(t, err)
	for f, want := range map[string]string{
		"objective":        "at most 10 characters",
		"options.agents":   "between 1 and 3",
		"options.timeout":  "between 1 and 60",
		"options.strategy": "parallel, research",
	} {
		if !strings.Contains(fields[f], want) {
			t.Errorf("%s = %q; want it to contain %q", f, fields[f], want)
		}
	}
}

func TestSwarmUnknownOptionsBounded(t *testing.T) {
	v := New()
	opts := map[string]json.RawMessage{"agents": json.RawMessage("2")}
	for i := range 200 {
		opts["k"+strings.Repeat("x", i%40)+string(rune('a'+i%26))+string(rune('a'+i/26))] = json.RawMessage("1")
	}
	_, err := v.Swarm(&protocol.Swarm{Type: "swarm", Objective: ptr("x"), Options: opts}, designLimits())
	fields := fieldsOf(t, err)
	if len(fields) > maxNamedUnknown+1 {
		t.Fatalf("reported %d fields for 200 unknown options; want at most %d", len(fields), maxNamedUnknown+1)
	}
	if !strings.Contains(fields["options"], "more unknown options") {
		t.Fatalf("options = %q; want a summary", fields["options"])
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Fields: map[string]string{"objective": "is required", "options.agents": "must be an integer between 1 and 20"}}
	want := "validation failed: objective is required; options.agents must be an integer between 1 and 20"
	if e.Error() != want {
		t.Fatalf("Error() = %q; want %q", e.Error(), want)
	}
}

func BenchmarkSwarm(b *testing.B) {
	v := New()
	msg, err := protocol.Decode([]byte(`{"type":"swarm","objective":"` + strings.Repeat("Research distributed consensus algorithms and summarise. ", 15) +
		`","options":{"agents":5,"strategy":"parallel","mode":"distributed","timeout":600},"requestId":"req-42"}`))
	if err != nil {
		b.Fatal(err)
	}
	m := msg.(*protocol.Swarm)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Swarm(m, designLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// TestConcurrentUse: one Validator is shared by every session.
func TestConcurrentUse(t *testing.T) {
	v := New()
	done := make(chan error)
	for g := range 16 {
		go func() {
			var err error
			for i := range 200 {
				agents := (g+i)%25 + 1
				m := &protocol.Swarm{Type: "swarm", Objective: ptr("task"), Options: map[string]json.RawMessage{
					"agents": json.RawMessage(strconv.Itoa(agents)),
				}}
				req, e := v.Swarm(m, designLimits())
				if (e == nil) != (agents <= 20) || (e == nil && req.Agents != agents) {
					err = fmt.Errorf("agents %d: %+v, %v", agents, req, e)
				}
			}
			done <- err
		}()
	}
	for range 16 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
