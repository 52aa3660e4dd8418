package e2e

import (
	"context"
	"errors"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/client"
)

func TestSIGTERMDrains(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{"FLOWGATE_SHUTDOWN_GRACE": "10s"}})
	c := g.dial(t, g.UserToken)
	long := startSwarm(t, c, "long sim:pace=100ms sim:events=1000", nil)
	short := startSwarm(t, c, "short sim:pace=100ms sim:events=10", nil)
	readUntil(t, c, 20*time.Second, func(m client.Message) bool { return m.TaskID == long && m.Seq >= 3 })

	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness turns 503 and new connections are refused while the tasks drain.
	deadline := time.Now().Add(3 * time.Second)
	for {
		resp, err := http.Get(g.Ops + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never turned 503 (last: %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := client.Dial(ctx, g.URL, client.Options{Token: g.UserToken})
	cancel()
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable || he.Code != "server_draining" {
		t.Fatalf("dial while draining = %v", err)
	}

	status := map[string]string{}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		m, err := c.Read(ctx)
		if err != nil {
			ce, ok := client.IsClose(err)
			if !ok || ce.Code != 1001 {
				t.Fatalf("connection ended with %v; want 1001", err)
			}
			break
		}
		if m.Type == "task_complete" {
			status[m.TaskID] = m.Status
		}
	}
	if status[short] != "success" || status[long] != "interrupted" {
		t.Fatalf("statuses = %v; want short success, long interrupted", status)
	}
	select {
	case <-g.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("gateway did not exit")
	}
	if g.err != nil {
		t.Fatalf("exit: %v", g.err)
	}
}
