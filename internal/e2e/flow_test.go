package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/client"
)

// swarmResult collects what one swarm produced.
type swarmResult struct {
	created  client.Message
	events   []client.Message
	complete client.Message
}

// runSwarm sends a swarm and reads until its task_complete.
func runSwarm(t *testing.T, c *client.Conn, objective string, options map[string]any) swarmResult {
	t.Helper()
	return runSwarmWithin(t, c, objective, options, 60*time.Second)
}

// runSwarmWithin is runSwarm with its own deadline (a real engine takes longer than the sim).
func runSwarmWithin(t *testing.T, c *client.Conn, objective string, options map[string]any, within time.Duration) swarmResult {
	t.Helper()
	msg := map[string]any{"type": "swarm", "objective": objective}
	if options != nil {
		msg["options"] = options
	}
	if err := c.Send(msg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var r swarmResult
	for {
		m, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v (so far: created=%v events=%d)", err, r.created.TaskID, len(r.events))
		}
		switch {
		case m.Type == "error":
			t.Fatalf("swarm refused: %s", m.Raw)
		case m.Type == "task_created":
			r.created = m
		case m.TaskID != "" && m.TaskID == r.created.TaskID:
			r.events = append(r.events, m)
			if m.Type == "task_complete" {
				r.complete = m
				return r
			}
		}
	}
}

func TestSeedFlowWithQueryToken(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.dialWith(t, client.Options{Token: g.UserToken, TokenSource: client.TokenQuery})
	if c.Welcome.SessionID == "" || c.Subprotocol() != "flowgate.v1" {
		t.Fatalf("welcome = %s, subprotocol %q", c.Welcome.Raw, c.Subprotocol())
	}
	r := runSwarm(t, c, "write a haiku about gateways", map[string]any{"agents": 3, "strategy": "auto", "mode": "centralized", "timeout": 60})
	if r.complete.Status != "success" || r.complete.ExitCode == nil || *r.complete.ExitCode != 0 {
		t.Fatalf("task_complete = %s", r.complete.Raw)
	}
	for i, ev := range r.events {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: %s", i, ev.Seq, ev.Raw)
		}
	}
	types := map[string]bool{}
	for _, ev := range r.events {
		types[ev.Type] = true
	}
	for _, want := range []string{"system", "agent_spawn", "assistant", "task_progress", "result", "task_complete"} {
		if !types[want] {
			t.Errorf("no %s event in %v", want, types)
		}
	}
}

// TestDevInWorkingDirectory is the README's first command exactly: `flowgate serve --dev` with
// no --data-dir keeps its state in ./data and runs swarms.
func TestDevInWorkingDirectory(t *testing.T) {
	g := startGateway(t, gwOptions{inCwd: true})
	c := g.dial(t, g.UserToken)
	r := runSwarm(t, c, "from the working directory", nil)
	if r.complete.Status != "success" {
		t.Fatalf("task_complete = %s", r.complete.Raw)
	}
	if _, err := os.Stat(filepath.Join(g.dataDir, "signing.key")); err != nil {
		t.Fatalf("state not under ./data: %v", err)
	}
}

// TestSeedClientUnchanged speaks exactly as the seed tutorial's client does: a WebSocket on "/"
// with ?token=, no subprotocol, no requestId; swarm, status, ping, cancel.
func TestSeedClientUnchanged(t *testing.T) {
	g := startGateway(t, gwOptions{})
	root := strings.TrimSuffix(g.URL, "/ws") + "/?token=" + g.UserToken
	ws, _, err := websocket.DefaultDialer.Dial(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	next := func() map[string]any {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := next(); m["type"] != "connection" || m["status"] != "connected" || m["sessionId"] == "" {
		t.Fatalf("welcome = %v", m)
	}
	send := func(v any) {
		t.Helper()
		if err := ws.WriteJSON(v); err != nil {
			t.Fatal(err)
		}
	}
	send(map[string]any{"type": "swarm", "objective": "seed client", "options": map[string]any{"agents": 3, "strategy": "auto", "mode": "centralized", "timeout": 300}})
	var taskID string
	sawStatus, sawPong := false, false
	for {
		m := next()
		switch m["type"] {
		case "task_created":
			taskID, _ = m["taskId"].(string)
			send(map[string]any{"type": "status", "taskId": taskID})
			send(map[string]any{"type": "ping"})
		case "status":
			sawStatus = m["taskId"] == taskID && (m["status"] == "running" || m["status"] == "pending" || m["status"] == "success")
		case "pong":
			sawPong = true
		case "error":
			t.Fatalf("error: %v", m)
		}
		if m["type"] == "task_complete" {
			if m["status"] != "success" || m["taskId"] != taskID {
				t.Fatalf("task_complete = %v", m)
			}
			break
		}
	}
	if !sawStatus || !sawPong {
		t.Fatalf("status answered %v, ping answered %v", sawStatus, sawPong)
	}
	// cancel, as the seed client sends it, on a long task.
	send(map[string]any{"type": "swarm", "objective": "long seed task sim:hang"})
	for {
		m := next()
		if m["type"] == "task_created" {
			taskID, _ = m["taskId"].(string)
			send(map[string]any{"type": "cancel", "taskId": taskID})
		}
		if m["type"] == "task_cancelled" && m["taskId"] != taskID {
			t.Fatalf("task_cancelled for another task: %v", m)
		}
		if m["type"] == "task_complete" {
			if m["status"] != "cancelled" {
				t.Fatalf("cancelled task ended %v", m)
			}
			return
		}
	}
}
