package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/client"
)

// transcript keeps everything a test run received from the gateway and its CLI (API answers,
// WebSocket frames, command output), to be searched for secrets at the end.
type transcript struct {
	mu sync.Mutex
	b  strings.Builder
}

func (tr *transcript) add(parts ...string) {
	if tr == nil {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, p := range parts {
		tr.b.WriteString(p)
		tr.b.WriteByte('\n')
	}
}

func (tr *transcript) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.b.String()
}

// api calls the admin API and records the answer.
func (g *gateway) api(t *testing.T, tr *transcript, method, path, token, body string) (int, string) {
	t.Helper()
	status, out, _ := g.do(t, method, path, token, body)
	tr.add(fmt.Sprintf("%d %s", status, http.StatusText(status)), out)
	return status, out
}

// mustAPI is api with an expected status.
func (g *gateway) mustAPI(t *testing.T, tr *transcript, want int, method, path, token, body string) string {
	t.Helper()
	status, out := g.api(t, tr, method, path, token, body)
	if status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, out)
	}
	return out
}

// run runs a CLI command against the gateway's data dir and records its output.
func (g *gateway) run(t *testing.T, tr *transcript, stdin string, args ...string) (string, error) {
	t.Helper()
	args = append(args, "--dev", "--data-dir", g.dataDir)
	out, err := g.cli(t, stdin, args...)
	tr.add(out)
	return out, err
}

func (g *gateway) mustRun(t *testing.T, tr *transcript, stdin string, args ...string) string {
	t.Helper()
	out, err := g.run(t, tr, stdin, args...)
	if err != nil {
		t.Fatalf("flowgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// canary is a fresh key-shaped secret that must never come back out of the gateway.
func canary(t *testing.T, name string) string {
	t.Helper()
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "sk-ant-canary-" + name + "-" + hex.EncodeToString(b[:])
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// swarmOutcome is what one swarm produced, as seen by the client.
type swarmOutcome struct {
	errCode  string // an error answered instead of task_created
	taskID   string
	status   string // of task_complete
	keyHash  string // sim_key.sha256
	hasKey   bool   // sim_key.present
	sawHash  bool
	complete client.Message
}

var requestSeq struct {
	sync.Mutex
	n int
}

func nextRequestID() string {
	requestSeq.Lock()
	defer requestSeq.Unlock()
	requestSeq.n++
	return fmt.Sprintf("req-%d", requestSeq.n)
}

// keySwarm runs one swarm whose engine reports the hash of the key it received, recording
// every frame. extra adds directives to the objective.
func keySwarm(t *testing.T, tr *transcript, c *client.Conn, extra string) swarmOutcome {
	t.Helper()
	reqID := nextRequestID()
	if err := c.Send(map[string]any{"type": "swarm", "objective": "which key " + extra + " sim:print-key-hash sim:pace=0 sim:events=2",
		"options": map[string]any{"agents": 1}, "requestId": reqID}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out swarmOutcome
	for {
		m, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		tr.add(string(m.Raw))
		switch {
		case m.Type == "error" && m.RequestID == reqID:
			out.errCode = m.Code
			return out
		case m.Type == "task_created" && m.RequestID == reqID:
			out.taskID = m.TaskID
		case out.taskID != "" && m.TaskID == out.taskID && m.Type == "sim_key":
			var k struct {
				SHA256  string `json:"sha256"`
				Present bool   `json:"present"`
			}
			if err := json.Unmarshal(m.Raw, &k); err != nil {
				t.Fatal(err)
			}
			out.keyHash, out.hasKey, out.sawHash = k.SHA256, k.Present, true
		case out.taskID != "" && m.TaskID == out.taskID && m.Type == "task_complete":
			out.status, out.complete = m.Status, m
			return out
		}
	}
}

// dialAs connects with token and records the welcome frame.
func (g *gateway) dialAs(t *testing.T, tr *transcript, token string) *client.Conn {
	t.Helper()
	c := g.dial(t, token)
	tr.add(string(c.Welcome.Raw))
	return c
}

// waitClosed reads until the server closes the connection, within d, and returns the close
// frame; tr, when set, records the frames read on the way.
func waitClosed(t *testing.T, tr *transcript, c *client.Conn, d time.Duration) *client.CloseError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		m, err := c.Read(ctx)
		if err != nil {
			ce, ok := client.IsClose(err)
			if !ok {
				t.Fatalf("connection not closed by the server within %v: %v", d, err)
			}
			return ce
		}
		tr.add(string(m.Raw))
	}
}

// TestSuspendAndResume: suspending a tenant (CLI against the running server, and API) closes
// its live sessions with 1008 within 5 s, cancels its running tasks (task.complete cancelled,
// tenant_suspended; no engine process left) and refuses new handshakes with 403
// tenant_suspended; resuming lets it back in.
func TestSuspendAndResume(t *testing.T) {
	g := startGateway(t, gwOptions{})
	tr := &transcript{}
	g.mustRun(t, tr, "", "tenant", "create", "--id", "delta", "--name", "Delta")
	g.mustRun(t, tr, canary(t, "delta")+"\n", "key", "set", "--tenant", "delta")
	user := g.token(t, "delta", "dora", "1h", "swarm:execute")
	admin := g.token(t, "delta", "dan", "1h", "tenant:admin")

	suspend := map[string]func(){
		"cli": func() { g.mustRun(t, tr, "", "tenant", "suspend", "--id", "delta") },
		"api": func() {
			g.mustAPI(t, tr, 200, "PATCH", "/v1/admin/tenants/delta", g.AdminToken, `{"status":"suspended"}`)
		},
	}
	resume := map[string]func(){
		"cli": func() { g.mustRun(t, tr, "", "tenant", "resume", "--id", "delta") },
		"api": func() {
			g.mustAPI(t, tr, 200, "PATCH", "/v1/admin/tenants/delta", g.AdminToken, `{"status":"active"}`)
		},
	}
	for _, via := range []string{"cli", "api"} {
		t.Run(via, func(t *testing.T) {
			c := g.dialAs(t, tr, user)
			// A live task too: the session goes, whatever it was doing.
			taskID := startSwarm(t, c, "long work sim:pace=200ms sim:events=500", map[string]any{"agents": 1})
			suspend[via]()
			done := time.Now()
			ce := waitClosed(t, tr, c, 15*time.Second)
			took := time.Since(done)
			t.Logf("suspension via %s closed the live session after %v (code %d %q)", via, took.Round(time.Millisecond), ce.Code, ce.Text)
			if ce.Code != 1008 {
				t.Fatalf("close code %d, want 1008", ce.Code)
			}
			if took > 5*time.Second {
				t.Fatalf("the session was closed %v after the suspension; the contract says within 5s", took)
			}
			he := g.dialErr(t, user)
			if he == nil || he.Status != 403 || he.Code != "tenant_suspended" {
				t.Fatalf("handshake of a suspended tenant: %+v", he)
			}
			if status, body := g.api(t, tr, "GET", "/v1/admin/tenants/delta", admin, ""); status != 403 || !strings.Contains(body, "tenant_suspended") {
				t.Fatalf("API call of a suspended tenant's admin: %d %s", status, body)
			}
			// The task was cancelled, not left spending the suspended tenant's key.
			waitFor(t, 15*time.Second, func() bool {
				return len(procsIn(t, filepath.Join(g.dataDir, "tasks"))) == 0 &&
					strings.Contains(g.mustRun(t, tr, "", "audit", "export", "--tenant", "delta"), `"reason":"tenant_suspended"`)
			})
			var rec struct {
				Outcome string
				Details struct{ Status string }
			}
			for _, line := range strings.Split(g.mustRun(t, tr, "", "audit", "export", "--tenant", "delta"), "\n") {
				if strings.Contains(line, `"action":"task.complete"`) && strings.Contains(line, taskID) {
					if err := json.Unmarshal([]byte(line), &rec); err != nil {
						t.Fatal(err)
					}
				}
			}
			if rec.Details.Status != "cancelled" {
				t.Fatalf("task.complete of the suspended tenant's task: %+v", rec)
			}

			resume[via]()
			deadline := time.Now().Add(15 * time.Second)
			for g.dialErr(t, user) != nil {
				if time.Now().After(deadline) {
					t.Fatal("the resumed tenant still cannot connect")
				}
				time.Sleep(100 * time.Millisecond)
			}
			c2 := g.dialAs(t, tr, user)
			if out := keySwarm(t, tr, c2, ""); out.status != "success" || !out.hasKey {
				t.Fatalf("swarm after resume: %+v %s", out, out.complete.Raw)
			}
		})
	}
	list := g.mustRun(t, tr, "", "tenant", "list", "--json")
	var tenants []struct{ ID, Status string }
	if err := json.Unmarshal([]byte(list), &tenants); err != nil {
		t.Fatalf("tenant list --json: %v\n%s", err, list)
	}
	found := false
	for _, tn := range tenants {
		found = found || (tn.ID == "delta" && tn.Status == "active")
	}
	if !found {
		t.Fatalf("tenant list --json = %s", list)
	}
}

// TestAdminRouteScope: a tenant admin of alpha gets 403 or 404 on every admin route of beta
// (tenants, key, tasks, tokens) and changes nothing; a token without the permission gets 403
// on its own tenant's routes; platform:admin can do everything.
func TestAdminRouteScope(t *testing.T) {
	g := startGateway(t, gwOptions{})
	tr := &transcript{}
	for _, id := range []string{"alpha", "beta"} {
		g.mustRun(t, tr, "", "tenant", "create", "--id", id)
	}
	betaKey := canary(t, "beta")
	g.mustAPI(t, tr, 201, "PUT", "/v1/admin/tenants/beta/key", g.AdminToken, `{"apiKey":"`+betaKey+`"}`)
	betaBefore := g.mustAPI(t, tr, 200, "GET", "/v1/admin/tenants/beta", g.AdminToken, "")
	keyBefore := g.mustAPI(t, tr, 200, "GET", "/v1/admin/tenants/beta/key", g.AdminToken, "")

	alphaAdmin := g.token(t, "alpha", "root", "1h", "tenant:admin", "task:admin", "audit:read", "swarm:execute")
	alphaUser := g.token(t, "alpha", "ann", "1h", "swarm:execute")
	key := `{"apiKey":"` + canary(t, "intruder") + `"}`
	type call struct{ method, path, body string }
	routes := func(tenant string) []call {
		return []call{
			{"GET", "/v1/admin/tenants", ""},
			{"POST", "/v1/admin/tenants", `{"id":"gamma"}`},
			{"GET", "/v1/admin/tenants/" + tenant, ""},
			{"PATCH", "/v1/admin/tenants/" + tenant, `{"name":"taken over"}`},
			{"POST", "/v1/admin/tenants/" + tenant + "/tokens", `{"sub":"mallory","permissions":["swarm:execute"],"ttl":"1h"}`},
			{"GET", "/v1/admin/tenants/" + tenant + "/key", ""},
			{"PUT", "/v1/admin/tenants/" + tenant + "/key", key},
			{"DELETE", "/v1/admin/tenants/" + tenant + "/key", ""},
			{"GET", "/v1/admin/tasks?tenant=" + tenant, ""},
			{"PATCH", "/v1/admin/tenants/" + tenant, `{"limits":{"concurrentTasks":1}}`},
			{"PATCH", "/v1/admin/tenants/" + tenant, `{"status":"suspended"}`},
		}
	}
	t.Run("tenant admin of alpha on beta", func(t *testing.T) {
		for _, c := range routes("beta") {
			status, body := g.api(t, tr, c.method, c.path, alphaAdmin, c.body)
			if status != 403 && status != 404 {
				t.Errorf("%s %s: %d %s", c.method, c.path, status, body)
			}
			if strings.Contains(body, "beta") && status == 404 {
				t.Errorf("%s %s: the 404 names the tenant: %s", c.method, c.path, body)
			}
		}
		if got := g.mustAPI(t, tr, 200, "GET", "/v1/admin/tenants/beta", g.AdminToken, ""); got != betaBefore {
			t.Fatalf("beta changed:\n%s\n%s", betaBefore, got)
		}
		if got := g.mustAPI(t, tr, 200, "GET", "/v1/admin/tenants/beta/key", g.AdminToken, ""); got != keyBefore {
			t.Fatalf("beta's key changed:\n%s\n%s", keyBefore, got)
		}
		g.mustAPI(t, tr, 404, "GET", "/v1/admin/tenants/gamma", g.AdminToken, "")
	})
	t.Run("no permission on own tenant", func(t *testing.T) {
		for _, c := range routes("alpha") {
			if status, body := g.api(t, tr, c.method, c.path, alphaUser, c.body); status != 403 {
				t.Errorf("%s %s: %d %s", c.method, c.path, status, body)
			}
		}
	})
	t.Run("platform admin on beta", func(t *testing.T) {
		want := []int{200, 201, 200, 200, 201, 200, 200, 204, 200, 200, 200}
		for i, c := range routes("beta") {
			if status, body := g.api(t, tr, c.method, c.path, g.AdminToken, c.body); status != want[i] {
				t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, status, want[i], body)
			}
		}
	})
}
