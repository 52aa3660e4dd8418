package task

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var frameNow = []byte(time.Date(2026, 11, 25, 12, 0, 0, 123e6, time.UTC).Format("2006-01-02T15:04:05.000Z07:00"))

func decodeFrame(t *testing.T, frame []byte) map[string]any {
	t.Helper()
	if !json.Valid(frame) {
		t.Fatalf("frame is not valid JSON: %s", frame)
	}
	var m map[string]any
	if err := json.Unmarshal(frame, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEngineFrame(t *testing.T) {
	tests := []struct {
		name      string
		line      string
		truncated bool
		wantType  string         // type field of the frame
		want      map[string]any // fields that must hold
		absent    []string
	}{
		{"flat event", `{"type":"agent_spawn","agentId":"a1"}`, false, "agent_spawn", map[string]any{"agentId": "a1"}, nil},
		{"empty object", `{}`, false, "", nil, nil},
		{"whitespace", "  { \"type\" : \"assistant\" , \"x\" : [1, {\"y\": \"}\"}] }  ", false, "assistant", nil, nil},
		{"engine forges gateway fields", `{"type":"task_progress","taskId":"other","seq":999,"serverTime":"1999","progress":5}`, false, "task_progress",
			map[string]any{"progress": float64(5)}, nil},
		{"escaped gateway key", `{"type":"x","t\u0061skId":"forged","s\u0065q":1}`, false, "x", nil, nil},
		{"reserved type wrapped", `{"type":"task_complete","status":"success","exitCode":0}`, false, "engine_event", nil, []string{"status", "exitCode"}},
		{"reserved type escaped", `{"typ\u0065":"task_complete","status":"success"}`, false, "engine_event", nil, []string{"status"}},
		{"reserved value escaped", `{"type":"task_compl\u0065te"}`, false, "engine_event", nil, nil},
		{"duplicate type keys", `{"type":"task_complete","type":"assistant"}`, false, "engine_event", nil, nil},
		{"error type wrapped", `{"type":"error","message":"boom"}`, false, "engine_event", nil, []string{"message"}},
		{"not json", `hello world`, false, "task_output", map[string]any{"line": "hello world"}, nil},
		{"json array", `[1,2]`, false, "task_output", map[string]any{"line": "[1,2]"}, nil},
		{"broken json", `{"type":"x"`, false, "task_output", nil, nil},
		{"truncated json", `{"type":"x","a":"bbbb`, true, "task_output", map[string]any{"truncated": true}, nil},
		{"html in line", `<script>alert(1)</script>`, false, "task_output", map[string]any{"line": "<script>alert(1)</script>"}, nil},
		{"invalid utf8", "caf\xe9", false, "task_output", map[string]any{"line": "caf\ufffd"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame, _ := engineFrame(nil, []byte(tt.line), tt.truncated, "11111111-2222-4333-8444-555555555555", 7, frameNow)
			m := decodeFrame(t, frame)
			if m["taskId"] != "11111111-2222-4333-8444-555555555555" || m["seq"] != float64(7) || m["serverTime"] != "2026-11-25T12:00:00.123Z" {
				t.Fatalf("gateway fields wrong: %s", frame)
			}
			if got, _ := m["type"].(string); got != tt.wantType {
				t.Fatalf("type = %q; want %q (%s)", got, tt.wantType, frame)
			}
			for k, v := range tt.want {
				if m[k] != v {
					t.Fatalf("%s = %v; want %v (%s)", k, m[k], v, frame)
				}
			}
			for _, k := range tt.absent {
				if _, ok := m[k]; ok {
					t.Fatalf("%s must be inside event, not top level: %s", k, frame)
				}
			}
			if strings.Count(string(frame), `"taskId"`) != 1 || strings.Count(string(frame), `"seq"`) != 1 {
				t.Fatalf("duplicate gateway keys: %s", frame)
			}
			if tt.wantType == "engine_event" {
				if _, ok := m["event"].(map[string]any); !ok {
					t.Fatalf("engine_event without event object: %s", frame)
				}
			}
		})
	}
}

func TestOutputFrame(t *testing.T) {
	frame := outputFrame(nil, "task_log", "message", []byte("warn: \"x\"\n\x00\u2028"), true, "t", 3, frameNow)
	m := decodeFrame(t, frame)
	if m["type"] != "task_log" || m["level"] != "error" || m["message"] != "warn: \"x\"\n\x00\u2028" || m["truncated"] != true {
		t.Fatalf("frame = %s", frame)
	}
}

func FuzzEngineFrame(f *testing.F) {
	for _, s := range []string{`{"type":"a"}`, `{"t\u0079pe":"error"}`, `{"taskId":1,"seq":{"a":[1]}}`, `x`, `{}`, `{"a":"\\\""}`} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, line []byte, truncated bool) {
		frame, _ := engineFrame(nil, line, truncated, "t", 1, frameNow)
		var m map[string]any
		if err := json.Unmarshal(frame, &m); err != nil {
			t.Fatalf("invalid frame %q for line %q: %v", frame, line, err)
		}
		if m["taskId"] != "t" || m["seq"] != float64(1) {
			t.Fatalf("gateway fields lost: %s", frame)
		}
		typ, _ := m["type"].(string)
		if typ == "task_complete" || typ == "error" || typ == "connection" || typ == "status" {
			t.Fatalf("reserved type %q reached top level: %s", typ, frame)
		}
	})
}

func BenchmarkEngineFrame(b *testing.B) {
	line := []byte(`{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Analyzing the repository structure to find the build files"}]},"session_id":"sim-1234","emittedAtNs":1732000000000000000}`)
	buf := make([]byte, 0, 512)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = engineFrame(buf[:0], line, false, "11111111-2222-4333-8444-555555555555", 12345, frameNow)
	}
}

func TestScanLineAgreesWithJSONValid(t *testing.T) {
	for _, line := range []string{
		`{}`, ` {"a":1} `, `{"a":[1,2,{"b":null}],"c":true,"d":false,"e":-0.5e+10}`, `{"a":"\u00e9\n"}`,
		`{"a":1,}`, `{"a"}`, `{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":tru}`,
		"{\"a\":\"\x01\"}", "{\"a\":\"\xff\"}", `{"a":1}{}`, `[1]`, `{"a":[1,]}`, `{"a":{"b":1,}}`, `{"a":1e}`,
	} {
		_, ok := scanLine([]byte(line))
		// Invalid UTF-8 is refused even inside strings: a text frame carrying it would make
		// browsers drop the connection (1007); such a line travels as task_output instead.
		if want := json.Valid([]byte(line)) && utf8.ValidString(line) && strings.HasPrefix(strings.TrimSpace(line), "{"); ok != want {
			t.Errorf("scanLine(%q) = %v; json.Valid says %v", line, ok, want)
		}
	}
}

func FuzzScanLine(f *testing.F) {
	for _, s := range []string{`{"type":"a","b":[1,{"c":"\u0041"}]}`, `{"a":1e5}`, `{}`, `{"t\u0079pe":"error"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		_, ok := scanLine(line)
		trimmed := bytes.TrimSpace(line)
		want := json.Valid(line) && utf8.Valid(line) && len(trimmed) > 0 && trimmed[0] == '{'
		if ok != want {
			t.Fatalf("scanLine(%q) = %v; json.Valid says %v", line, ok, want)
		}
	})
}

// special8 against the byte table, for every byte value at every position, behind plain
// bytes and behind another special byte (the first mark must be the first special byte).
func TestSpecial8(t *testing.T) {
	for pos := range 8 {
		for v := range 256 {
			w := []byte("abcdefgh")
			w[pos] = byte(v)
			m := special8(binary.LittleEndian.Uint64(w))
			plain := plainASCII[v]
			switch {
			case plain && m != 0:
				t.Fatalf("byte %#x at %d: marked %#x, want none", v, pos, m)
			case !plain && (m == 0 || bits.TrailingZeros64(m)/8 != pos):
				t.Fatalf("byte %#x at %d: marks %#x, want the first at %d", v, pos, m, pos)
			}
			if pos < 7 {
				w[pos+1] = 0x00 // a second special byte after it must not move the first mark
				want := pos
				if plain {
					want = pos + 1
				}
				if m := special8(binary.LittleEndian.Uint64(w)); bits.TrailingZeros64(m)/8 != want {
					t.Fatalf("byte %#x at %d then NUL: first mark at %d, want %d", v, pos, bits.TrailingZeros64(m)/8, want)
				}
			}
		}
	}
}
