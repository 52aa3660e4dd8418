package anthropicmock_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/engine/anthropicmock"
)

// sseEvent is one parsed server-sent event.
type sseEvent struct {
	Event string
	Data  map[string]any
}

// body builds a Messages request whose last user message is prompt.
func body(prompt string, stream bool) map[string]any {
	return map[string]any{
		"model":      "claude-test-1",
		"max_tokens": 1024,
		"stream":     stream,
		"system":     "You are a test.\nWorking directory: /nowhere",
		"messages":   []any{map[string]any{"role": "user", "content": prompt}},
	}
}

// post sends v as JSON with the given headers (x-api-key: testKey unless headers say otherwise).
func post(t *testing.T, ctx context.Context, url string, v any, headers map[string]string) *http.Response {
	t.Helper()
	var raw []byte
	switch v := v.(type) {
	case []byte:
		raw = v
	default:
		var err error
		if raw, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("x-api-key", testKey)
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// readSSE parses a whole event stream; it stops early, without failing, when the body ends
// in an error, so callers can look at what arrived before a cut.
func readSSE(t *testing.T, r io.Reader) []sseEvent {
	t.Helper()
	var events []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.Event != "" {
				events = append(events, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.Event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.Data); err != nil {
				t.Fatalf("data of %s is not JSON: %v", cur.Event, err)
			}
			if cur.Data["type"] != cur.Event {
				t.Errorf("event %q carries type %v", cur.Event, cur.Data["type"])
			}
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	return events
}

func decodeJSON(t *testing.T, r io.Reader) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.NewDecoder(r).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func names(events []sseEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Event
	}
	return out
}

// compact is names with runs of content_block_delta folded into one, to compare orders.
func compact(events []sseEvent) []string {
	var out []string
	for _, n := range names(events) {
		if n == "content_block_delta" && len(out) > 0 && out[len(out)-1] == n {
			continue
		}
		out = append(out, n)
	}
	return out
}

// blockDeltas concatenates the deltas of block index: text for text blocks, partial_json for
// tool_use blocks.
func blockDeltas(events []sseEvent, index int) string {
	var b strings.Builder
	for _, e := range events {
		if e.Event != "content_block_delta" || e.Data["index"] != float64(index) {
			continue
		}
		d := e.Data["delta"].(map[string]any)
		switch d["type"] {
		case "text_delta":
			b.WriteString(d["text"].(string))
		case "input_json_delta":
			b.WriteString(d["partial_json"].(string))
		}
	}
	return b.String()
}

func TestStreamText(t *testing.T) {
	t.Parallel()
	mock := anthropicmock.New(t, anthropicmock.Options{})
	resp := post(t, t.Context(), mock.URL()+"/v1/messages?beta=true", body("hello there", true), nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.HasPrefix(resp.Header.Get("request-id"), "req_") {
		t.Errorf("request-id %q", resp.Header.Get("request-id"))
	}
	events := readSSE(t, resp.Body)
	want := []string{"message_start", "content_block_start", "ping", "content_block_delta",
		"content_block_stop", "message_delta", "message_stop"}
	if got := compact(events); !reflect.DeepEqual(got, want) {
		t.Fatalf("events %v, want %v", names(events), want)
	}

	msg := events[0].Data["message"].(map[string]any)
	if id, _ := msg["id"].(string); !strings.HasPrefix(id, "msg_") {
		t.Errorf("message id %q", id)
	}
	for k, v := range map[string]any{"type": "message", "role": "assistant", "model": "claude-test-1"} {
		if msg[k] != v {
			t.Errorf("message_start %s = %v, want %v", k, msg[k], v)
		}
	}
	if c, ok := msg["content"].([]any); !ok || len(c) != 0 {
		t.Errorf("message_start content %v, want []", msg["content"])
	}
	for _, k := range []string{"stop_reason", "stop_sequence"} {
		if v, ok := msg[k]; !ok || v != nil {
			t.Errorf("message_start %s = %v (present %v), want null", k, v, ok)
		}
	}
	u := msg["usage"].(map[string]any)
	for _, k := range []string{"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"} {
		if _, ok := u[k].(float64); !ok {
			t.Errorf("usage lacks %s: %v", k, u)
		}
	}
	if u["input_tokens"].(float64) < 10 {
		t.Errorf("input_tokens %v, want about body size / 4", u["input_tokens"])
	}

	start := events[1].Data["content_block"].(map[string]any)
	if start["type"] != "text" || start["text"] != "" || events[1].Data["index"] != 0.0 {
		t.Errorf("content_block_start %v", events[1].Data)
	}
	if got := blockDeltas(events, 0); got != anthropicmock.DefaultText {
		t.Errorf("text %q, want %q", got, anthropicmock.DefaultText)
	}
	md := events[len(events)-2].Data
	delta := md["delta"].(map[string]any)
	if delta["stop_reason"] != "end_turn" || delta["stop_sequence"] != nil {
		t.Errorf("message_delta %v", md)
	}
	if out := md["usage"].(map[string]any)["output_tokens"].(float64); out < 2 {
		t.Errorf("output_tokens %v, want about len(text)/4", out)
	}
}

func TestStreamWriteToolUse(t *testing.T) {
	t.Parallel()
	user := func(text string) map[string]any {
		return map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "text", "text": "<system-reminder>\nbe nice\n</system-reminder>\n"},
			map[string]any{"type": "text", "text": text},
		}}
	}
	tests := []struct {
		name     string
		system   any
		messages []any
		file     string
		wantPath string
	}{
		{
			name:     "env block in a string system prompt",
			system:   "<env>\nWorking directory: /work/a\nPlatform: linux\n</env>",
			messages: []any{user("mock:write hello.txt")},
			file:     "hello.txt",
			wantPath: "/work/a/hello.txt",
		},
		{
			name:     "system prompt as text blocks",
			system:   []any{map[string]any{"type": "text", "text": "x"}, map[string]any{"type": "text", "text": " - Primary working directory: /work/b\n"}},
			messages: []any{user("mock:write sub/dir/out.md please")},
			file:     "sub/dir/out.md",
			wantPath: "/work/b/sub/dir/out.md",
		},
		{
			name:   "system-role message after the prompt, as Claude Code 2.1.332 sends it",
			system: []any{map[string]any{"type": "text", "text": "You are a Claude agent."}},
			messages: []any{
				user("mock:write hello.txt"),
				map[string]any{"role": "system", "content": []any{map[string]any{"type": "text",
					"text": "# Environment\n - Primary working directory: /tmp/cc cwd\n - Is a git repository: false\n"}}},
			},
			file:     "hello.txt",
			wantPath: "/tmp/cc cwd/hello.txt",
		},
		{
			name:     "multi-byte name split across partial_json chunks",
			system:   "Working directory: /w",
			messages: []any{user("mock:write ünïcödé-ファイル-name.txt")},
			file:     "ünïcödé-ファイル-name.txt",
			wantPath: "/w/ünïcödé-ファイル-name.txt",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mock := anthropicmock.New(t, anthropicmock.Options{})
			req := map[string]any{"model": "m", "max_tokens": 100, "stream": true, "system": tt.system, "messages": tt.messages}
			events := readSSE(t, post(t, t.Context(), mock.URL()+"/v1/messages", req, nil).Body)
			want := []string{"message_start",
				"content_block_start", "ping", "content_block_delta", "content_block_stop",
				"content_block_start", "content_block_delta", "content_block_stop",
				"message_delta", "message_stop"}
			if got := compact(events); !reflect.DeepEqual(got, want) {
				t.Fatalf("events %v, want %v", names(events), want)
			}
			start := events[slicesIndex(events, "content_block_start", 1)].Data
			cb := start["content_block"].(map[string]any)
			if start["index"] != 1.0 || cb["type"] != "tool_use" || cb["name"] != "Write" ||
				!strings.HasPrefix(cb["id"].(string), "toolu_") || !reflect.DeepEqual(cb["input"], map[string]any{}) {
				t.Errorf("tool_use start %v", start)
			}
			var input map[string]string
			if err := json.Unmarshal([]byte(blockDeltas(events, 1)), &input); err != nil {
				t.Fatalf("partial_json does not join into JSON: %v: %q", err, blockDeltas(events, 1))
			}
			if input["file_path"] != tt.wantPath || input["content"] != anthropicmock.WriteContent {
				t.Errorf("input %v, want file_path %q", input, tt.wantPath)
			}
			md := events[len(events)-2].Data["delta"].(map[string]any)
			if md["stop_reason"] != "tool_use" {
				t.Errorf("stop_reason %v", md["stop_reason"])
			}
			if got := mock.Requests()[0].Trigger; got != "mock:write "+tt.file {
				t.Errorf("recorded trigger %q", got)
			}
		})
	}
}

// slicesIndex finds the n-th (0-based) event of a name.
func slicesIndex(events []sseEvent, name string, n int) int {
	for i, e := range events {
		if e.Event == name {
			if n == 0 {
				return i
			}
			n--
		}
	}
	return -1
}

func TestNonStreaming(t *testing.T) {
	t.Parallel()
	mock := anthropicmock.New(t, anthropicmock.Options{})
	tests := []struct {
		name      string
		req       map[string]any
		wantTypes []string
		wantStop  string
	}{
		{"text, stream false", body("hi", false), []string{"text"}, "end_turn"},
		{"text, stream absent", map[string]any{"model": "m", "max_tokens": 1,
			"messages": []any{map[string]any{"role": "user", "content": "quota"}}}, []string{"text"}, "end_turn"},
		{"tool_use", body("mock:write x.txt", false), []string{"text", "tool_use"}, "tool_use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, t.Context(), mock.URL()+"/v1/messages", tt.req, nil)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			msg := decodeJSON(t, resp.Body)
			if msg["type"] != "message" || msg["role"] != "assistant" || msg["stop_reason"] != tt.wantStop {
				t.Errorf("message %v", msg)
			}
			var types []string
			for _, b := range msg["content"].([]any) {
				types = append(types, b.(map[string]any)["type"].(string))
			}
			if !reflect.DeepEqual(types, tt.wantTypes) {
				t.Errorf("content types %v, want %v", types, tt.wantTypes)
			}
			u := msg["usage"].(map[string]any)
			if u["input_tokens"].(float64) < 1 || u["output_tokens"].(float64) < 1 {
				t.Errorf("usage %v", u)
			}
		})
	}
}

func TestSubAgentTool(t *testing.T) {
	t.Parallel()
	mock := anthropicmock.New(t, anthropicmock.Options{})
	agent := map[string]any{"name": "Agent", "input_schema": map[string]any{"properties": map[string]any{
		"description": map[string]any{}, "prompt": map[string]any{}, "subagent_type": map[string]any{}, "run_in_background": map[string]any{},
	}}}
	task := map[string]any{"name": "Task", "input_schema": map[string]any{"properties": map[string]any{
		"description": map[string]any{}, "prompt": map[string]any{}, "subagent_type": map[string]any{},
	}}}
	write := map[string]any{"name": "Write", "input_schema": map[string]any{}}
	tests := []struct {
		name      string
		tools     []any
		wantName  string
		wantInput map[string]any
	}{
		{"Agent, as 2.1.332 offers it", []any{write, agent}, "Agent", map[string]any{
			"description": "flowgate mock sub-agent", "prompt": anthropicmock.TaskPrompt,
			"subagent_type": "general-purpose", "run_in_background": false}},
		{"Task, as older versions offer it", []any{task, write}, "Task", map[string]any{
			"description": "flowgate mock sub-agent", "prompt": anthropicmock.TaskPrompt,
			"subagent_type": "general-purpose"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := body("mock:task", false)
			req["tools"] = tt.tools
			msg := decodeJSON(t, post(t, t.Context(), mock.URL()+"/v1/messages", req, nil).Body)
			tu := msg["content"].([]any)[1].(map[string]any)
			if tu["name"] != tt.wantName || !reflect.DeepEqual(tu["input"], tt.wantInput) {
				t.Errorf("tool_use %v, want %s %v", tu, tt.wantName, tt.wantInput)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	mock := anthropicmock.New(t, anthropicmock.Options{})
	huge := bytes.Repeat([]byte(" "), anthropicmock.MaxBodyBytes+1)
	tests := []struct {
		name       string
		method     string
		path       string
		body       any
		headers    map[string]string
		wantStatus int
		wantType   string
		wantMsg    string // substring
		wantHeader map[string]string
	}{
		{"mock:401", "POST", "/v1/messages", body("mock:401", true), nil,
			401, "authentication_error", "invalid x-api-key", nil},
		{"mock:429", "POST", "/v1/messages", body("please mock:429 now", true), nil,
			429, "rate_limit_error", "rate limit", map[string]string{"retry-after": "1"}},
		{"mock:500", "POST", "/v1/messages", body("mock:500", false), nil,
			500, "api_error", "Internal server error", nil},
		{"mock:529", "POST", "/v1/messages", body("mock:529", true), nil,
			529, "overloaded_error", "Overloaded", nil},
		{"missing key", "POST", "/v1/messages", body("hi", true), map[string]string{"x-api-key": ""},
			401, "authentication_error", "x-api-key", nil},
		{"missing key on count_tokens", "POST", "/v1/messages/count_tokens", body("hi", true), map[string]string{"x-api-key": ""},
			401, "authentication_error", "x-api-key", nil},
		{"unknown trigger", "POST", "/v1/messages", body("mock:nope", true), nil,
			400, "invalid_request_error", `"mock:nope"`, nil},
		{"write without a name", "POST", "/v1/messages", body("mock:write", true), nil,
			400, "invalid_request_error", "mock:write", nil},
		{"write outside the working directory", "POST", "/v1/messages", body("mock:write ../evil", true), nil,
			400, "invalid_request_error", "mock:write", nil},
		{"write to an absolute path", "POST", "/v1/messages", body("mock:write /etc/passwd", true), nil,
			400, "invalid_request_error", "mock:write", nil},
		{"invalid JSON", "POST", "/v1/messages", []byte("{"), nil,
			400, "invalid_request_error", "JSON", nil},
		{"no messages", "POST", "/v1/messages", map[string]any{"model": "m"}, nil,
			400, "invalid_request_error", "messages", nil},
		{"body over the limit", "POST", "/v1/messages", huge, nil,
			413, "request_too_large", "maximum", nil},
		{"GET messages", "GET", "/v1/messages", nil, nil,
			405, "invalid_request_error", "Method", map[string]string{"Allow": "POST"}},
		{"unknown path", "POST", "/v1/complete", body("hi", true), nil,
			404, "not_found_error", "Not Found", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp *http.Response
			if tt.method == "POST" {
				resp = post(t, t.Context(), mock.URL()+tt.path, tt.body, tt.headers)
			} else {
				req, err := http.NewRequestWithContext(t.Context(), tt.method, mock.URL()+tt.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				if resp, err = http.DefaultClient.Do(req); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { resp.Body.Close() })
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			for k, v := range tt.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			got := decodeJSON(t, resp.Body)
			e, _ := got["error"].(map[string]any)
			if got["type"] != "error" || e["type"] != tt.wantType || !strings.Contains(e["message"].(string), tt.wantMsg) {
				t.Errorf("body %v, want error %s mentioning %q", got, tt.wantType, tt.wantMsg)
			}
			if rid := resp.Header.Get("request-id"); rid == "" || got["request_id"] != rid {
				t.Errorf("request_id %v, header request-id %q", got["request_id"], rid)
			}
		})
	}
}

func TestBearerTokenCountsAsKey(t *testing.T) {
	t.Parallel()
	mock := anthropicmock.New(t, anthropicmock.Options{})
	resp := post(t, t.Context(), mock.URL()+"/v1/messages", body("mock:echo-key", false),
		map[string]string{"x-api-key": "", "Authorization": "Bearer oauth-token-1"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	text := decodeJSON(t, resp.Body)["content"].([]any)[0].(map[string]any)["text"]
	if text != anthropicmock.EchoKeyPrefix+"oauth-token-1" {
		t.Errorf("text %q", text)
	}
}

func TestTriggerOnlyInLastUserMessage(t *testing.T) {
	t.Parallel()
	mock := anthropicmock.New(t, anthropicmock.Options{})
	text := func(s string) map[string]any { return map[string]any{"type": "text", "text": s} }
	tests := []struct {
		name        string
		system      any
		messages    []any
		wantTrigger string
		wantText    string
	}{
		{"trigger in the system prompt", "mock:401 is a trigger word",
			[]any{map[string]any{"role": "user", "content": "hi"}}, "", anthropicmock.DefaultText},
		{"trigger in an earlier user message", nil, []any{
			map[string]any{"role": "user", "content": "mock:401"},
			map[string]any{"role": "assistant", "content": []any{text("ok")}},
			map[string]any{"role": "user", "content": "and now?"},
		}, "", anthropicmock.DefaultText},
		{"trigger in a later text block of the last user message", nil, []any{
			map[string]any{"role": "user", "content": []any{text("<system-reminder>x</system-reminder>"), text("do mock:echo-key")}},
			map[string]any{"role": "system", "content": "mock:401 in a system-role message"},
		}, "mock:echo-key", anthropicmock.EchoKeyPrefix + testKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := map[string]any{"model": "m", "max_tokens": 10, "messages": tt.messages}
			if tt.system != nil {
				req["system"] = tt.system
			}
			before := len(mock.Requests())
			resp := post(t, t.Context(), mock.URL()+"/v1/messages", req, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got := decodeJSON(t, resp.Body)["content"].([]any)[0].(map[string]any)["text"]
			if got != tt.wantText {
				t.Errorf("text %q, want %q", got, tt.wantText)
			}
			if rec := mock.Requests()[before]; rec.Trigger != tt.wantTrigger {
				t.Errorf("trigger %q, want %q", rec.Trigger, tt.wantTrigger)
			}
		})
	}
}

func TestToolResults(t *testing.T) {
	t.Parallel()
	mock := anthropicmock.New(t, anthropicmock.Options{})
	req := map[string]any{"model": "m", "max_tokens": 10, "stream": true, "messages": []any{
		map[string]any{"role": "user", "content": "mock:write a.txt"},
		map[string]any{"role": "assistant", "content": []any{map[string]any{"type": "tool_use", "id": "toolu_1", "name": "Write", "input": map[string]any{}}}},
		map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "tool_result", "tool_use_id": "toolu_1", "content": "File created"},
			map[string]any{"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
				"content": []any{map[string]any{"type": "text", "text": "a"}, map[string]any{"type": "text", "text": "b"}}},
			map[string]any{"type": "text", "text": "mock:401 next to a tool result is ignored"},
		}},
	}}
	events := readSSE(t, post(t, t.Context(), mock.URL()+"/v1/messages", req, nil).Body)
	if got := blockDeltas(events, 0); got != anthropicmock.ToolResultText {
		t.Errorf("text %q, want %q", got, anthropicmock.ToolResultText)
	}
	rec := mock.Requests()[0]
	want := []anthropicmock.ToolResult{
		{ToolUseID: "toolu_1", Content: "File created"},
		{ToolUseID: "toolu_2", IsError: true, Content: "a\nb"},
	}
	if !reflect.DeepEqual(rec.ToolResults, want) || rec.Trigger != "" {
		t.Errorf("recorded %+v trigger %q, want %+v", rec.ToolResults, rec.Trigger, want)
	}
}

func TestRequestsAndOtherEndpoints(t *testing.T) {
	t.Parallel()
	var logs logSink
	mock := anthropicmock.New(t, anthropicmock.Options{Logf: logs.logf})

	first := body("mock:echo-key", true)
	resp := post(t, t.Context(), mock.URL()+"/v1/messages?beta=true", first, nil)
	io.Copy(io.Discard, resp.Body)
	resp = post(t, t.Context(), mock.URL()+"/v1/messages/count_tokens", body("count me", false), nil)
	if n := decodeJSON(t, resp.Body)["input_tokens"].(float64); resp.StatusCode != 200 || n < 1 {
		t.Errorf("count_tokens: status %d, input_tokens %v", resp.StatusCode, n)
	}
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		req, err := http.NewRequestWithContext(t.Context(), method, mock.URL()+"/api/hello", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s /api/hello: %d", method, resp.StatusCode)
		}
	}

	reqs := mock.Requests()
	got := make([]string, len(reqs))
	for i, r := range reqs {
		got[i] = r.Method + " " + r.Path + " " + r.RawQuery
	}
	want := []string{"POST /v1/messages beta=true", "POST /v1/messages/count_tokens ", "HEAD /api/hello ", "GET /api/hello "}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("recorded %q, want %q", got, want)
	}
	r0 := reqs[0]
	wantBody, _ := json.Marshal(first)
	if r0.APIKey != testKey || r0.Header.Get("x-api-key") != testKey || !bytes.Equal(r0.Body, wantBody) ||
		r0.Model != "claude-test-1" || !r0.Stream || r0.Prompt != "mock:echo-key" || r0.Trigger != "mock:echo-key" {
		t.Errorf("first request recorded as %+v", r0)
	}

	// Requests hands out copies.
	reqs[0].Header.Set("x-api-key", "changed")
	reqs[0].Body[0] = 'X'
	if again := mock.Requests()[0]; again.Header.Get("x-api-key") != testKey || again.Body[0] != '{' {
		t.Error("changing a returned Request changed the recording")
	}

	mock.Close() // waits for the handlers, so every log line is in
	if lines := logs.all(); len(lines) != 4 || strings.Contains(strings.Join(lines, "\n"), testKey) {
		t.Errorf("log lines %q: want 4, none with the key", lines)
	}
}

// logSink collects Logf lines and signals each on a channel.
type logSink struct {
	mu    sync.Mutex
	lines []string
	ch    chan string // optional, never blocks the server
}

func (l *logSink) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	select {
	case l.ch <- line:
	default:
	}
}

func (l *logSink) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func TestSlowCompletes(t *testing.T) {
	t.Parallel()
	mock := anthropicmock.New(t, anthropicmock.Options{SlowDelay: time.Millisecond})
	events := readSSE(t, post(t, t.Context(), mock.URL()+"/v1/messages", body("mock:slow", true), nil).Body)
	if n := len(events) - len(compact(events)) + 1; n != anthropicmock.SlowEvents {
		t.Errorf("%d deltas, want %d", n, anthropicmock.SlowEvents)
	}
	if events[len(events)-1].Event != "message_stop" {
		t.Errorf("last event %s", events[len(events)-1].Event)
	}
}

func TestSlowStops(t *testing.T) {
	t.Parallel()
	// A full answer takes 120 × 100 ms = 12 s; every case must end far sooner.
	const delay = 100 * time.Millisecond
	closeServer := func(m *anthropicmock.Server, _ context.CancelFunc) { m.Close() }
	leave := func(_ *anthropicmock.Server, cancel context.CancelFunc) { cancel() }
	tests := []struct {
		name    string
		stream  bool
		stop    func(*anthropicmock.Server, context.CancelFunc)
		wantLog string // "" when the stop leaves no trace in the log
	}{
		{"Close, streaming", true, closeServer, "slow stream stopped"},
		{"client gone, streaming", true, leave, "slow stream stopped"},
		{"Close, not streaming", false, closeServer, ""},
		{"client gone, not streaming", false, leave, "-> 499"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs := &logSink{ch: make(chan string, 16)}
			mock := anthropicmock.New(t, anthropicmock.Options{SlowDelay: delay, Logf: logs.logf})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			raw, err := json.Marshal(body("mock:slow", tt.stream))
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, mock.URL()+"/v1/messages", bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("x-api-key", testKey)

			// The client runs aside: a non-streamed answer sends no header before it is complete.
			// It reports the first delta (streaming only) on started, then everything it read.
			started := make(chan struct{})
			done := make(chan []byte, 1)
			go func() {
				defer close(done)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				defer resp.Body.Close()
				var got bytes.Buffer
				br := bufio.NewReader(io.TeeReader(resp.Body, &got))
				for tt.stream {
					line, err := br.ReadString('\n')
					if err != nil {
						break
					}
					if line == "event: content_block_delta\n" {
						close(started)
						break
					}
				}
				_, _ = io.Copy(io.Discard, br) // ends with EOF or the cancellation error
				done <- got.Bytes()
			}()
			if tt.stream {
				select {
				case <-started:
				case <-time.After(5 * time.Second):
					t.Fatal("no delta arrived")
				}
			} else {
				time.Sleep(3 * delay) // let the request reach the handler; too early only weakens the test
			}

			began := time.Now()
			tt.stop(mock, cancel)
			select {
			case got := <-done:
				if bytes.Contains(got, []byte("message_stop")) || bytes.Contains(got, []byte("tick tick")) {
					t.Errorf("the answer ran to its end: %q", got)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the answer still runs after the stop")
			}
			if tt.wantLog != "" {
				waitLog(t, logs, tt.wantLog)
			}
			if d := time.Since(began); d > 2*time.Second {
				t.Errorf("stopping took %v", d)
			}
		})
	}
}

func waitLog(t *testing.T, logs *logSink, substr string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case line := <-logs.ch:
			if strings.Contains(line, substr) {
				return
			}
		case <-timeout:
			t.Fatalf("no log line with %q in %q", substr, logs.all())
		}
	}
}
