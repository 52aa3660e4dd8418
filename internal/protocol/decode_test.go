package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantType string // Go type of the result, "" when an error is expected
		wantCode string
	}{
		{"swarm seed shape", `{"type":"swarm","objective":"x","options":{"agents":3,"strategy":"auto"}}`, "*protocol.Swarm", ""},
		{"swarm no options", `{"type":"swarm","objective":"x"}`, "*protocol.Swarm", ""},
		{"swarm request id", `{"type":"swarm","objective":"x","requestId":"r1"}`, "*protocol.Swarm", ""},
		{"swarm raw option values kept", `{"type":"swarm","objective":"x","options":{"agents":"5","bogus":1}}`, "*protocol.Swarm", ""},
		{"status", `{"type":"status","taskId":"t"}`, "*protocol.TaskRef", ""},
		{"cancel", `{"type":"cancel","taskId":"t","requestId":"r"}`, "*protocol.TaskRef", ""},
		{"subscribe", `{"type":"subscribe","taskId":"t","afterSeq":4}`, "*protocol.TaskRef", ""},
		{"tasks", `{"type":"tasks"}`, "*protocol.Simple", ""},
		{"ping", `{"type":"ping"}`, "*protocol.Simple", ""},
		{"ping whitespace", " \n{ \"type\" : \"ping\" }\n", "*protocol.Simple", ""},
		{"reauth", `{"type":"reauth","token":"a.b.c"}`, "*protocol.Reauth", ""},
		{"nested options fine", `{"type":"swarm","objective":"x","options":{"a":{"b":[1,{"c":2}]}}}`, "*protocol.Swarm", ""},

		{"unknown type", `{"type":"hack"}`, "", CodeUnknownType},
		{"no type", `{"objective":"x"}`, "", CodeInvalidMessage},
		{"type not string", `{"type":5}`, "", CodeInvalidMessage},
		{"type object", `{"type":{"a":1}}`, "", CodeInvalidMessage},
		{"array", `[{"type":"ping"}]`, "", CodeInvalidMessage},
		{"string", `"ping"`, "", CodeInvalidMessage},
		{"empty", ``, "", CodeInvalidMessage},
		{"malformed", `{"type":"ping"`, "", CodeInvalidMessage},
		{"trailing", `{"type":"ping"}{"type":"ping"}`, "", CodeInvalidMessage},
		{"trailing garbage", `{"type":"ping"} x`, "", CodeInvalidMessage},
		{"unknown top-level field", `{"type":"ping","extra":1}`, "", CodeInvalidMessage},
		{"unknown field for type", `{"type":"status","taskId":"t","objective":"x"}`, "", CodeInvalidMessage},
		{"afterSeq outside subscribe", `{"type":"status","taskId":"t","afterSeq":1}`, "", CodeInvalidMessage},
		{"duplicate top-level key", `{"type":"swarm","objective":"a","objective":"b"}`, "", CodeInvalidMessage},
		{"duplicate type key", `{"type":"ping","type":"swarm"}`, "", CodeInvalidMessage},
		{"duplicate nested key", `{"type":"swarm","objective":"a","options":{"agents":1,"agents":2}}`, "", CodeInvalidMessage},
		{"case-variant duplicate", `{"type":"swarm","objective":"a","OBJECTIVE":"b"}`, "", CodeInvalidMessage},
		{"Kelvin-sign duplicate", "{\"type\":\"cancel\",\"taskId\":\"a\",\"tas\u212aId\":\"b\"}", "", CodeInvalidMessage},
		{"case-variant nested duplicate", `{"type":"swarm","objective":"a","options":{"agents":1,"Agents":2}}`, "", CodeInvalidMessage},
		{"wrong type objective", `{"type":"swarm","objective":5}`, "", CodeInvalidMessage},
		{"wrong type options", `{"type":"swarm","objective":"x","options":[1]}`, "", CodeInvalidMessage},
		{"wrong type taskId", `{"type":"status","taskId":7}`, "", CodeInvalidMessage},
		{"fractional afterSeq", `{"type":"subscribe","taskId":"t","afterSeq":1.5}`, "", CodeInvalidMessage},
		{"negative afterSeq", `{"type":"subscribe","taskId":"t","afterSeq":-1}`, "", CodeInvalidMessage},
		{"deep nesting", `{"type":"swarm","objective":"x","options":{"a":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}}`, "", CodeInvalidMessage},
		{"invalid utf8", "{\"type\":\"swarm\",\"objective\":\"\xff\"}", "", CodeInvalidMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := Decode([]byte(tt.in))
			if tt.wantCode != "" {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("Decode(%q) = %T, %v; want DecodeError %s", tt.in, msg, err, tt.wantCode)
				}
				if de.Code != tt.wantCode {
					t.Fatalf("Decode(%q) code = %s (%s); want %s", tt.in, de.Code, de.Msg, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.in, err)
			}
			if got := typeName(msg); got != tt.wantType {
				t.Fatalf("Decode(%q) = %s; want %s", tt.in, got, tt.wantType)
			}
		})
	}
}

func TestDecodeKeepsTypeOnTaskRef(t *testing.T) {
	msg, err := Decode([]byte(`{"type":"cancel","taskId":"abc"}`))
	if err != nil {
		t.Fatal(err)
	}
	ref := msg.(*TaskRef)
	if ref.Type != TypeCancel || ref.TaskID == nil || *ref.TaskID != "abc" {
		t.Fatalf("got %+v", ref)
	}
}

func TestDecodeErrorNeverEchoesInput(t *testing.T) {
	secret := "sk-ant-canary-0123456789"
	inputs := []string{
		`{"type":"` + secret + `"}`,
		`{"type":"ping","` + secret + `":1}`,
		`{"type":"swarm","objective":"` + secret + `","objective":"x"}`,
	}
	for _, in := range inputs {
		_, err := Decode([]byte(in))
		if err == nil {
			t.Fatalf("Decode(%q) succeeded", in)
		}
		if strings.Contains(err.Error(), "canary") && !strings.Contains(in, `"`+secret+`":1`) {
			t.Fatalf("error %q echoes the input", err)
		}
	}
}

func TestReserved(t *testing.T) {
	for _, typ := range []string{"task_complete", "error", "connection", "status", "engine_event", "task_created"} {
		if !Reserved(typ) {
			t.Errorf("Reserved(%q) = false", typ)
		}
	}
	for _, typ := range []string{"assistant", "result", "agent_spawn", "task_progress", "system", ""} {
		if Reserved(typ) {
			t.Errorf("Reserved(%q) = true", typ)
		}
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *Swarm:
		return "*protocol.Swarm"
	case *TaskRef:
		return "*protocol.TaskRef"
	case *Reauth:
		return "*protocol.Reauth"
	case *Simple:
		return "*protocol.Simple"
	}
	return "?"
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"swarm","objective":"x","options":{"agents":3}}`,
		`{"type":"subscribe","taskId":"t","afterSeq":4}`,
		`{"type":"ping","requestId":"r"}`,
		`{"type":"reauth","token":"a.b.c"}`,
		`{"a":{"b":[1,2,{"c":null}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := Decode(data)
		if err == nil && msg == nil {
			t.Fatal("nil message without error")
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a DecodeError", err)
			}
		}
	})
}
