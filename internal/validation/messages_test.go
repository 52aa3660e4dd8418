package validation

import (
	"strings"
	"testing"

	"github.com/flowgate/flowgate/internal/protocol"
)

func TestTaskRef(t *testing.T) {
	v := New()
	tests := []struct {
		name   string
		msg    *protocol.TaskRef
		frame  string
		want   TaskRequest
		fields []string // nil when accepted
	}{
		{name: "status", frame: `{"type":"status","taskId":"task_01-ABC"}`, want: TaskRequest{Type: "status", TaskID: "task_01-ABC"}},
		{name: "cancel with request id", frame: `{"type":"cancel","taskId":"t","requestId":"r1"}`, want: TaskRequest{Type: "cancel", TaskID: "t", RequestID: "r1"}},
		{name: "subscribe default seq", frame: `{"type":"subscribe","taskId":"t"}`, want: TaskRequest{Type: "subscribe", TaskID: "t"}},
		{name: "subscribe after seq", frame: `{"type":"subscribe","taskId":"t","afterSeq":42}`, want: TaskRequest{Type: "subscribe", TaskID: "t", AfterSeq: 42}},
		{name: "task id 64 bytes", frame: `{"type":"status","taskId":"` + strings.Repeat("a", 64) + `"}`, want: TaskRequest{Type: "status", TaskID: strings.Repeat("a", 64)}},

		{name: "task id missing", frame: `{"type":"status"}`, fields: []string{"taskId"}},
		{name: "task id null", frame: `{"type":"cancel","taskId":null}`, fields: []string{"taskId"}},
		{name: "task id empty", frame: `{"type":"status","taskId":""}`, fields: []string{"taskId"}},
		{name: "task id 65 bytes", frame: `{"type":"status","taskId":"` + strings.Repeat("a", 65) + `"}`, fields: []string{"taskId"}},
		{name: "task id path traversal", frame: `{"type":"status","taskId":"../etc/passwd"}`, fields: []string{"taskId"}},
		{name: "task id space", frame: `{"type":"status","taskId":"a b"}`, fields: []string{"taskId"}},
		{name: "task id unicode", frame: `{"type":"status","taskId":"tâsk"}`, fields: []string{"taskId"}},
		{name: "task id wildcard", frame: `{"type":"cancel","taskId":"*"}`, fields: []string{"taskId"}},
		// The decoder refuses a negative afterSeq (invalid_message); the validator still does.
		{name: "negative after seq", msg: &protocol.TaskRef{Type: "subscribe", TaskID: ptr("t"), AfterSeq: ptr(int64(-1))}, fields: []string{"afterSeq"}},
		{name: "bad request id", frame: `{"type":"status","taskId":"t","requestId":"` + strings.Repeat("x", 65) + `"}`, fields: []string{"requestId"}},
		{name: "all bad", msg: &protocol.TaskRef{Type: "subscribe", TaskID: ptr("$(id)"), AfterSeq: ptr(int64(-5)), RequestID: ptr("\u202e")}, fields: []string{"taskId", "afterSeq", "requestId"}},
		{name: "built directly invalid utf8", msg: &protocol.TaskRef{Type: "status", TaskID: ptr("t\xff")}, fields: []string{"taskId"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.msg
			if m == nil {
				msg, err := protocol.Decode([]byte(tt.frame))
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				m = msg.(*protocol.TaskRef)
			}
			req, err := v.TaskRef(m)
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if req != tt.want {
					t.Fatalf("got %+v; want %+v", req, tt.want)
				}
				return
			}
			fields := fieldsOf(t, err)
			if len(fields) != len(tt.fields) {
				t.Errorf("fields %v; want %v", fields, tt.fields)
			}
			for _, f := range tt.fields {
				if fields[f] == "" {
					t.Errorf("field %s not reported: %v", f, fields)
				}
			}
		})
	}
}

func TestReauth(t *testing.T) {
	v := New()
	secret := "eyJhbGciOiJFZERTQSJ9.canary-token-value.sig"
	req, err := v.Reauth(&protocol.Reauth{Type: "reauth", Token: ptr(secret), RequestID: ptr("r")})
	if err != nil || req.Token != secret || req.RequestID != "r" {
		t.Fatalf("Reauth = %+v, %v", req, err)
	}
	for name, m := range map[string]*protocol.Reauth{
		"missing":  {Type: "reauth"},
		"empty":    {Type: "reauth", Token: ptr("")},
		"too long": {Type: "reauth", Token: ptr(secret + strings.Repeat("A", MaxTokenBytes))},
	} {
		_, err := v.Reauth(m)
		fields := fieldsOf(t, err)
		if fields["token"] == "" || len(fields) != 1 {
			t.Errorf("%s: fields %v; want token", name, fields)
		}
		if strings.Contains(err.Error(), "canary") {
			t.Errorf("%s: error echoes the token: %v", name, err)
		}
	}
}

func TestSimple(t *testing.T) {
	v := New()
	req, err := v.Simple(&protocol.Simple{Type: "ping", RequestID: ptr("abc")})
	if err != nil || req != (SimpleRequest{Type: "ping", RequestID: "abc"}) {
		t.Fatalf("Simple = %+v, %v", req, err)
	}
	if req, err := v.Simple(&protocol.Simple{Type: "tasks"}); err != nil || req.Type != "tasks" {
		t.Fatalf("Simple(tasks) = %+v, %v", req, err)
	}
	for _, id := range []string{strings.Repeat("é", 65), "a\tb", "\x1b[2J", "a\u200eb", "bad\xffutf8"} {
		_, err := v.Simple(&protocol.Simple{Type: "ping", RequestID: ptr(id)})
		if fields := fieldsOf(t, err); fields["requestId"] == "" {
			t.Errorf("requestId %q: fields %v", id, fields)
		}
	}
	if _, err := v.Simple(&protocol.Simple{Type: "ping", RequestID: ptr(strings.Repeat("é", 64))}); err != nil {
		t.Errorf("64 characters refused: %v", err)
	}
}
