package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

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
	msg := map[string]any{"type": "swarm", "objective": objective}
	if options != nil {
		msg["options"] = options
	}
	if err := c.Send(msg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
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
