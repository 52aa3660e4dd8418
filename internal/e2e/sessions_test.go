package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/client"
)

type sessionsAnswer struct {
	Sessions []struct {
		SessionID, Sub, JTI, IP, ConnectedAt, Node string
		Subscriptions                              int
	}
	Complete bool
}

func listSessions(t *testing.T, g *gateway, token, tenant string) (int, sessionsAnswer) {
	t.Helper()
	status, body, _ := g.do(t, http.MethodGet, "/v1/admin/tenants/"+tenant+"/sessions", token, "")
	var a sessionsAnswer
	if status == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatalf("sessions answer %s: %v", body, err)
		}
	}
	return status, a
}

// A tenant admin lists its tenant's live sessions (never another tenant's) and ends one: the
// client is closed with 1008 session_terminated, the end is audited, and the session is gone
// from the list (DESIGN §19).
func TestSessionsListAndTerminate(t *testing.T) {
	g := startGateway(t, gwOptions{})
	idCreateTenant(t, g, "other")
	admin := g.token(t, "demo", "ops-lead", "1h", "tenant:admin")
	otherAdmin := g.token(t, "other", "oa", "1h", "tenant:admin")
	user := g.dial(t, g.UserToken)
	keep := g.dial(t, g.UserToken)
	id := user.Welcome.SessionID
	if id == "" {
		t.Fatalf("no session id in the welcome frame: %s", user.Welcome.Raw)
	}
	status, a := listSessions(t, g, admin, "demo")
	found := false
	for _, s := range a.Sessions {
		if s.SessionID == id && s.Sub != "" && s.ConnectedAt != "" && s.IP != "" {
			found = true
		}
	}
	if status != http.StatusOK || !a.Complete || len(a.Sessions) < 2 || !found {
		t.Fatalf("demo's sessions = %d %+v; want both of the user's, with %s", status, a, id)
	}
	if status, _ := listSessions(t, g, otherAdmin, "demo"); status != http.StatusNotFound {
		t.Fatalf("another tenant's admin listing demo's sessions = %d; want 404", status)
	}
	if status, _, _ := g.do(t, http.MethodDelete, "/v1/admin/tenants/demo/sessions/"+id, otherAdmin, ""); status != http.StatusNotFound {
		t.Fatalf("another tenant's admin ending demo's session = %d; want 404", status)
	}
	for _, bad := range []string{"/v1/admin/tenants/demo/sessions", "/v1/admin/tenants/demo/sessions?session=" + strings.Repeat("x", 200)} {
		if status, body, _ := g.do(t, http.MethodDelete, bad, admin, ""); status != http.StatusBadRequest || !strings.Contains(body, `"session"`) {
			t.Errorf("DELETE %s = %d %s; want 400 naming session", bad, status, body)
		}
	}

	// The CLI asks the running gateway the same.
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte(admin), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := g.cli(t, "", "sessions", "list", "--url", g.HTTP, "--tenant", "demo", "--token-file", tokenFile)
	if err != nil || !strings.Contains(out, id) || !strings.HasPrefix(out, "SESSION") {
		t.Fatalf("flowgate sessions list: %v\n%s", err, out)
	}
	if out, err := g.cli(t, "", "sessions", "end", "--url", g.HTTP, "--tenant", "other", "--session", id, "--token-file", tokenFile); err == nil || !strings.Contains(out, "404") {
		t.Fatalf("flowgate sessions end on another tenant: %v\n%s", err, out)
	}
	// Every user's tasks of the tenant, for a task:admin token, through the same API.
	startSwarm(t, keep, "listed by the admin sim:pace=0", nil)
	taskAdmin := filepath.Join(t.TempDir(), "task-admin.token")
	if err := os.WriteFile(taskAdmin, []byte(g.token(t, "demo", "lead", "1h", "task:admin")), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := g.cli(t, "", "tasks", "--url", g.HTTP, "--token-file", taskAdmin); err != nil || !strings.Contains(out, "listed by the admin") || !strings.Contains(out, "demo-user") {
		t.Fatalf("flowgate tasks: %v\n%s", err, out)
	}

	if status, body, _ := g.do(t, http.MethodDelete, "/v1/admin/tenants/demo/sessions/"+id, admin, ""); status != http.StatusNoContent {
		t.Fatalf("DELETE session = %d %s", status, body)
	}
	if ce := waitClosed(t, nil, user, 5*time.Second); ce.Code != 1008 || ce.Text != "session_terminated" {
		t.Fatalf("closed with %d %q; want 1008 session_terminated", ce.Code, ce.Text)
	}
	// The other session of the same user stays.
	if err := keep.Send(map[string]any{"type": "tasks", "requestId": "still"}); err != nil {
		t.Fatal(err)
	}
	readUntil(t, keep, 10*time.Second, func(m client.Message) bool { return m.RequestID == "still" })
	// Once closed, the session is gone: the list no longer has it, and ending it again is 404.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, a := listSessions(t, g, admin, "demo")
		gone := true
		for _, s := range a.Sessions {
			gone = gone && s.SessionID != id
		}
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s still listed after it was ended", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status, _, _ := g.do(t, http.MethodDelete, "/v1/admin/tenants/demo/sessions?session="+id, admin, ""); status != http.StatusNotFound {
		t.Fatalf("ending an ended session = %d; want 404", status)
	}
	out, err = g.cli(t, "", "audit", "export", "--dev", "--data-dir", g.dataDir, "--tenant", "demo", "--action", "session.terminate")
	if err != nil || strings.Count(out, `"action":"session.terminate"`) < 2 || !strings.Contains(out, `"outcome":"failure"`) || !strings.Contains(out, id) {
		t.Fatalf("session.terminate records: %v\n%s", err, out)
	}
}

// In a cluster the list spans replicas and a session is ended on whichever holds it.
func TestClusterSessionsAcrossReplicas(t *testing.T) {
	gs, _ := startCluster(t, 2, nil)
	a, b := gs[0], gs[1]
	admin := a.token(t, "demo", "ops-lead", "1h", "tenant:admin")
	onA, onB := a.dial(t, a.UserToken), b.dial(t, b.UserToken)
	status, l := listSessions(t, a, admin, "demo")
	nodes := map[string]string{}
	for _, s := range l.Sessions {
		nodes[s.SessionID] = s.Node
	}
	if status != http.StatusOK || !l.Complete || nodes[onA.Welcome.SessionID] != "node-a" || nodes[onB.Welcome.SessionID] != "node-b" {
		t.Fatalf("sessions from node-a = %d %+v; want node-a's and node-b's", status, l)
	}
	if status, body, _ := a.do(t, http.MethodDelete, "/v1/admin/tenants/demo/sessions/"+onB.Welcome.SessionID, admin, ""); status != http.StatusNoContent {
		t.Fatalf("DELETE node-b's session through node-a = %d %s", status, body)
	}
	if ce := waitClosed(t, nil, onB, 5*time.Second); ce.Code != 1008 || ce.Text != "session_terminated" {
		t.Fatalf("node-b's session closed with %d %q", ce.Code, ce.Text)
	}
}
