package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

func TestScanFrame(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want FrameInfo
		err  bool
	}{
		{name: "event", in: `{"type":"assistant","message":{"type":"nested","seq":99,"taskId":"x"},"taskId":"t-1","seq":7,"serverTime":"2026","emittedAtNs":1732000000000000001}`,
			want: FrameInfo{Type: []byte("assistant"), TaskID: []byte("t-1"), Seq: 7, HasSeq: true, EmittedAtNs: 1732000000000000001, HasEmittedAt: true}},
		{name: "complete", in: ` { "type" : "task_complete" , "taskId":"t","seq":12,"exitCode":0,"status":"success" } `,
			want: FrameInfo{Type: []byte("task_complete"), TaskID: []byte("t"), Seq: 12, HasSeq: true, ExitCode: 0, HasExitCode: true, Status: []byte("success")}},
		{name: "error", in: `{"type":"error","code":"rate_limited","retryAfterMs":1500,"requestId":"r-\u00e9"}`,
			want: FrameInfo{Type: []byte("error"), Code: []byte("rate_limited"), RetryAfterMs: 1500, RequestID: []byte("r-é")}},
		{name: "escaped key", in: `{"t\u0079pe":"pong"}`, want: FrameInfo{Type: []byte("pong")}},
		{name: "last duplicate wins", in: `{"type":"a","type":"b","seq":1,"seq":"2"}`, want: FrameInfo{Type: []byte("b")}},
		{name: "wrong types unset", in: `{"type":5,"seq":1.5,"taskId":null,"exitCode":-1}`, want: FrameInfo{ExitCode: -1, HasExitCode: true}},
		{name: "strings with brackets", in: `{"x":"}{][\"","y":[1,{"z":"]"}],"type":"ok"}`, want: FrameInfo{Type: []byte("ok")}},
		{name: "empty", in: `{}`},
		{name: "seed frame", in: `{"type":"task_progress","progress":50,"taskId":"0c9a","serverTime":"2026-01-01T00:00:00.000Z"}`,
			want: FrameInfo{Type: []byte("task_progress"), TaskID: []byte("0c9a")}},
		{name: "array", in: `[1]`, err: true},
		{name: "truncated", in: `{"type":"a"`, err: true},
		{name: "trailing", in: `{"type":"a"} x`, err: true},
		{name: "no colon", in: `{"type" "a"}`, err: true},
		{name: "open string", in: `{"type":"a`, err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var fi FrameInfo
			err := ScanFrame([]byte(tc.in), &fi)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if tc.err {
				return
			}
			if !sameInfo(fi, tc.want) {
				t.Fatalf("got %+v\nwant %+v", fi, tc.want)
			}
		})
	}
}

func sameInfo(a, b FrameInfo) bool {
	return bytes.Equal(a.Type, b.Type) && bytes.Equal(a.TaskID, b.TaskID) && bytes.Equal(a.RequestID, b.RequestID) &&
		bytes.Equal(a.Status, b.Status) && bytes.Equal(a.Code, b.Code) &&
		a.Seq == b.Seq && a.HasSeq == b.HasSeq && a.EmittedAtNs == b.EmittedAtNs && a.HasEmittedAt == b.HasEmittedAt &&
		a.RetryAfterMs == b.RetryAfterMs && a.ExitCode == b.ExitCode && a.HasExitCode == b.HasExitCode
}

// FuzzScanFrame: on valid JSON objects ScanFrame agrees with encoding/json; on anything
// else it does not panic.
func FuzzScanFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"assistant","taskId":"t","seq":3,"emittedAtNs":17}`,
		`{"type":"error","code":"quota_exceeded","retryAfterMs":10,"requestId":"r1"}`,
		`{"a":{"type":"x"},"type":"y","seq":-0,"exitCode":1e2}`,
		`{"t\u0079pe":"\u00e9\n","status":"ok","status":null}`,
		`{"seq":9223372036854775808,"emittedAtNs":-9223372036854775808}`,
		`{"x":[[[]]],"y":"\\\"","code":"c"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fi FrameInfo
		err := ScanFrame(data, &fi)
		if !json.Valid(data) || !utf8.Valid(data) {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var m map[string]any
		if dec.Decode(&m) != nil || m == nil {
			if err == nil && bytes.TrimSpace(data)[0] != '{' {
				t.Fatalf("non-object accepted: %q", data)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid object refused: %v: %q", err, data)
		}
		str := func(name string, got []byte) {
			s, ok := m[name].(string)
			if ok != (got != nil) || (ok && s != string(got)) {
				t.Fatalf("%s = %q, encoding/json says %#v: %q", name, got, m[name], data)
			}
		}
		num := func(name string, got int64, has bool) {
			var want int64
			ok := false
			if n, isNum := m[name].(json.Number); isNum {
				v, perr := strconv.ParseInt(string(n), 10, 64)
				want, ok = v, perr == nil
			}
			if ok != has || (ok && want != got) {
				t.Fatalf("%s = %d (%v), encoding/json says %#v: %q", name, got, has, m[name], data)
			}
		}
		str("type", fi.Type)
		str("taskId", fi.TaskID)
		str("requestId", fi.RequestID)
		str("status", fi.Status)
		str("code", fi.Code)
		num("seq", fi.Seq, fi.HasSeq)
		num("emittedAtNs", fi.EmittedAtNs, fi.HasEmittedAt)
		num("exitCode", fi.ExitCode, fi.HasExitCode)
	})
}

func BenchmarkScanFrame(b *testing.B) {
	frame := []byte(`{"type":"assistant","message":{"id":"msg_sim_3d3f8e36228d8ee9","type":"message","role":"assistant","model":"flowgate-sim","content":[{"type":"tool_use","id":"toolu_sim_ed09f2b804e845e5","name":"Bash","input":{"command":"echo simulated step 1","description":"simulated command, never executed"}}]},"parent_tool_use_id":null,"session_id":"sim-458409fc16a45d6a","agentId":"agent-1","emittedAtNs":1795647266967521756,"taskId":"11111111-2222-4333-8444-555555555555","seq":12,"serverTime":"2026-11-25T22:55:51.325Z"}`)
	b.Run("ScanFrame", func(b *testing.B) {
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		var fi FrameInfo
		for b.Loop() {
			if err := ScanFrame(frame, &fi); err != nil || !fi.HasSeq {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			var m Message
			if err := json.Unmarshal(frame, &m); err != nil || m.Seq != 12 {
				b.Fatal(err)
			}
		}
	})
}

// TestReadRaw: frames larger than the buffer grow it, smaller ones reuse it, and a binary
// frame is reported as such.
func TestReadRaw(t *testing.T) {
	sizes := []int{10, 5000, 70_000, 3, 0}
	up := websocket.Upgrader{Subprotocols: []string{"flowgate.v1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"connection","sessionId":"s"}`))
		for _, n := range sizes {
			_ = c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", n)))
		}
		_ = c.WriteMessage(websocket.BinaryMessage, []byte{1, 2})
		_, _, _ = c.ReadMessage()
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 64)
	for _, n := range sizes {
		var bin bool
		buf, bin, err = c.ReadRaw(buf)
		if err != nil || bin || len(buf) != n || strings.Trim(string(buf), "x") != "" {
			t.Fatalf("frame of %d: got %d bytes, binary %v, err %v", n, len(buf), bin, err)
		}
	}
	if cap(buf) < 70_000 {
		t.Fatalf("buffer did not keep its growth: cap %d", cap(buf))
	}
	buf, bin, err := c.ReadRaw(buf)
	if err != nil || !bin || !bytes.Equal(buf, []byte{1, 2}) {
		t.Fatalf("binary frame: %v %v %v", buf, bin, err)
	}
}
