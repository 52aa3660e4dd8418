package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// peer is a scripted flowgate.v1 server: these tests pin down how RunSwarm reads an
// interleaved stream (the real gateway is exercised by cmd/flowgate's tests).
func peer(t *testing.T, script func(ws *websocket.Conn)) string {
	t.Helper()
	up := websocket.Upgrader{Subprotocols: []string{"flowgate.v1"}}
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/ws-ticket" {
			if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer good" {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"code":"unauthorized","detail":"authentication failed: malformed"}`))
				return
			}
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"ticket":"tk-1","expiresAt":"2030-01-01T00:00:00.000Z"}`))
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_ = ws.WriteJSON(map[string]any{"type": "connection", "sessionId": "s1", "status": "connected"})
		script(ws)
		<-done
	}))
	t.Cleanup(func() {
		close(done)
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

func readReq(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	var m map[string]any
	if err := ws.ReadJSON(&m); err != nil {
		t.Errorf("peer read: %v", err)
		return nil
	}
	return m
}

func dial(t *testing.T, url string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, Options{Token: "good"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRunSwarmFollowsItsOwnTask(t *testing.T) {
	url := peer(t, func(ws *websocket.Conn) {
		req := readReq(t, ws)
		if req["type"] != "swarm" || req["objective"] != "hello" {
			t.Errorf("request %v", req)
		}
		if opts, _ := req["options"].(map[string]any); opts["agents"] != float64(3) || opts["strategy"] != "parallel" || opts["mode"] != nil {
			t.Errorf("options %v", req["options"])
		}
		id := req["requestId"]
		for _, f := range []map[string]any{
			{"type": "task_created", "taskId": "other", "requestId": "someone-else"},
			{"type": "task_created", "taskId": "mine", "requestId": id},
			{"type": "agent_spawn", "taskId": "other", "seq": 1},
			{"type": "agent_spawn", "taskId": "mine", "seq": 1},
			{"type": "error", "code": "not_found", "taskId": "mine", "requestId": "x"},
			{"type": "task_complete", "taskId": "other", "seq": 2, "status": "failed", "exitCode": 1},
			{"type": "task_complete", "taskId": "mine", "seq": 2, "status": "success", "exitCode": 0},
		} {
			_ = ws.WriteJSON(f)
		}
		// The connection stays usable: a ping after the swarm is answered.
		if p := readReq(t, ws); p["type"] == "ping" {
			_ = ws.WriteJSON(map[string]any{"type": "pong"})
		}
	})
	c := dial(t, url)
	var got []string
	done, err := c.RunSwarm(t.Context(), SwarmRequest{Objective: "hello", Options: SwarmOptions{Agents: 3, Strategy: "parallel"}}, func(m Message) {
		got = append(got, m.Type+"/"+m.TaskID)
	})
	if err != nil {
		t.Fatal(err)
	}
	if done.Type != "task_complete" || done.TaskID != "mine" || done.Status != "success" {
		t.Errorf("complete %+v", done)
	}
	want := "task_created/mine agent_spawn/mine task_complete/mine"
	if strings.Join(got, " ") != want {
		t.Errorf("events %q, want %q", strings.Join(got, " "), want)
	}
	if err := c.Send(map[string]any{"type": "ping"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if m, err := c.Read(ctx); err != nil || m.Type != "pong" {
		t.Errorf("after RunSwarm: %v %v", m.Type, err)
	}
}

func TestRunSwarmRefused(t *testing.T) {
	url := peer(t, func(ws *websocket.Conn) {
		req := readReq(t, ws)
		_ = ws.WriteJSON(map[string]any{"type": "error", "code": "validation_failed", "error": "the request is invalid",
			"requestId": req["requestId"], "fields": map[string]string{"options.agents": "must be 1-20"}})
	})
	c := dial(t, url)
	_, err := c.RunSwarm(t.Context(), SwarmRequest{Objective: "x", Options: SwarmOptions{Agents: 99}}, nil)
	var se *ServerError
	if !errors.As(err, &se) || se.Code != "validation_failed" || se.Fields["options.agents"] == "" {
		t.Fatalf("err %v", err)
	}
	if !strings.Contains(se.Error(), "options.agents") {
		t.Errorf("message %q", se.Error())
	}
}

func TestRunSwarmCancelsWhenContextEnds(t *testing.T) {
	cancelSeen := make(chan map[string]any, 1)
	url := peer(t, func(ws *websocket.Conn) {
		req := readReq(t, ws)
		_ = ws.WriteJSON(map[string]any{"type": "task_created", "taskId": "t1", "requestId": req["requestId"]})
		_ = ws.WriteJSON(map[string]any{"type": "system", "taskId": "t1", "seq": 1})
		c := readReq(t, ws)
		cancelSeen <- c
		_ = ws.WriteJSON(map[string]any{"type": "task_cancelled", "taskId": "t1", "requestId": c["requestId"]})
		_ = ws.WriteJSON(map[string]any{"type": "task_complete", "taskId": "t1", "seq": 2, "status": "cancelled", "exitCode": 143})
	})
	c := dial(t, url)
	ctx, cancel := context.WithCancel(t.Context())
	var types []string
	done, err := c.RunSwarm(ctx, SwarmRequest{Objective: "hang"}, func(m Message) {
		types = append(types, m.Type)
		if m.Type == "system" {
			cancel()
		}
	})
	if !errors.Is(err, ErrCancelled) {
		t.Fatalf("err %v", err)
	}
	if done.Status != "cancelled" {
		t.Errorf("complete %+v", done)
	}
	select {
	case m := <-cancelSeen:
		if m["type"] != "cancel" || m["taskId"] != "t1" {
			t.Errorf("cancel %v", m)
		}
	default:
		t.Error("no cancel sent")
	}
	if strings.Join(types, ",") != "task_created,system,task_cancelled,task_complete" {
		t.Errorf("events %v", types)
	}
}

func TestRunSwarmCancelGraceEnds(t *testing.T) {
	url := peer(t, func(ws *websocket.Conn) {
		req := readReq(t, ws)
		_ = ws.WriteJSON(map[string]any{"type": "task_created", "taskId": "t1", "requestId": req["requestId"]})
		readReq(t, ws) // the cancel, never answered
	})
	c := dial(t, url)
	ctx, cancel := context.WithCancel(t.Context())
	_, err := c.RunSwarm(ctx, SwarmRequest{Objective: "hang", CancelGrace: 200 * time.Millisecond}, func(m Message) {
		if m.Type == "task_created" {
			cancel()
		}
	})
	if !errors.Is(err, ErrCancelled) || !strings.Contains(err.Error(), "no task_complete") {
		t.Fatalf("err %v", err)
	}
}

func TestFetchTicket(t *testing.T) {
	url := peer(t, func(ws *websocket.Conn) {})
	tk, err := FetchTicket(t.Context(), nil, url, "good")
	if err != nil || tk.Ticket != "tk-1" || tk.ExpiresAt.Year() != 2030 {
		t.Fatalf("ticket %+v %v", tk, err)
	}
	_, err = FetchTicket(t.Context(), nil, url, "bad")
	var he *HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized || he.Code != "unauthorized" {
		t.Fatalf("err %v", err)
	}
	if strings.Contains(err.Error(), "bad") && strings.Contains(err.Error(), "Bearer") {
		t.Errorf("the error shows the token: %v", err)
	}
}

func TestHTTPBase(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ws://127.0.0.1:8080/ws", "http://127.0.0.1:8080"},
		{"wss://gw.example/ws?x=1", "https://gw.example"},
		{"http://h:1/", "http://h:1"},
		{"ftp://h/", ""},
		{"ws:///ws", ""},
	}
	for _, tc := range tests {
		got, err := HTTPBase(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: no error", tc.in)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q %v", tc.in, got, err)
		}
	}
}

func TestSwarmOptionsOmitZero(t *testing.T) {
	b, _ := json.Marshal(SwarmOptions{Agents: 2})
	if string(b) != `{"agents":2}` {
		t.Errorf("%s", b)
	}
}
