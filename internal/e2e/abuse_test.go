package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/client"
	"github.com/flowgate/flowgate/internal/store"
)

// enginesStarted counts engine processes the gateway has started, from its debug log.
func enginesStarted(g *gateway) int { return strings.Count(g.Logs(), `"msg":"engine started"`) }

func TestValidationRejectsAndSpawnsNothing(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.dial(t, g.UserToken)
	tests := []struct {
		name  string
		raw   string
		field string
	}{
		{"missing objective", `{"type":"swarm"}`, "objective"},
		{"empty", `{"type":"swarm","objective":""}`, "objective"},
		{"blank", `{"type":"swarm","objective":" \t\n "}`, "objective"},
		{"1001 chars", `{"type":"swarm","objective":"` + strings.Repeat("a", 1001) + `"}`, "objective"},
		{"4001 bytes of emoji", `{"type":"swarm","objective":"` + strings.Repeat("😀", 1000) + `a"}`, "objective"},
		{"NUL", `{"type":"swarm","objective":"a\u0000b"}`, "objective"},
		{"ANSI escape", `{"type":"swarm","objective":"\u001b[31mred"}`, "objective"},
		{"bidi override", `{"type":"swarm","objective":"abc\u202Edef"}`, "objective"},
		{"leading dashes", `{"type":"swarm","objective":"--background"}`, "objective"},
		{"em dash", `{"type":"swarm","objective":"—dash"}`, "objective"},
		{"agents 0", `{"type":"swarm","objective":"x","options":{"agents":0}}`, "options.agents"},
		{"agents 21", `{"type":"swarm","objective":"x","options":{"agents":21}}`, "options.agents"},
		{"agents string", `{"type":"swarm","objective":"x","options":{"agents":"5"}}`, "options.agents"},
		{"agents fraction", `{"type":"swarm","objective":"x","options":{"agents":5.5}}`, "options.agents"},
		{"agents negative", `{"type":"swarm","objective":"x","options":{"agents":-1}}`, "options.agents"},
		{"agents exponent", `{"type":"swarm","objective":"x","options":{"agents":1e9}}`, "options.agents"},
		{"timeout 0", `{"type":"swarm","objective":"x","options":{"timeout":0}}`, "options.timeout"},
		{"timeout 3601", `{"type":"swarm","objective":"x","options":{"timeout":3601}}`, "options.timeout"},
		{"strategy evil", `{"type":"swarm","objective":"x","options":{"strategy":"evil"}}`, "options.strategy"},
		{"strategy flag", `{"type":"swarm","objective":"x","options":{"strategy":"--x"}}`, "options.strategy"},
		{"unknown option", `{"type":"swarm","objective":"x","options":{"sandbox":"off"}}`, "options.sandbox"},
	}
	before := enginesStarted(g)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := strings.Replace(tt.raw, `{"type":"swarm"`, fmt.Sprintf(`{"type":"swarm","requestId":"v%d"`, i), 1)
			if err := c.SendRaw([]byte(raw)); err != nil {
				t.Fatal(err)
			}
			m := readUntil(t, c, 10*time.Second, func(m client.Message) bool { return m.RequestID == fmt.Sprintf("v%d", i) || m.Type == "task_created" })
			if m.Type != "error" || m.Code != "validation_failed" || m.Fields[tt.field] == "" {
				t.Fatalf("got %s; want validation_failed naming %s", m.Raw, tt.field)
			}
		})
	}
	// An unknown top-level field is a malformed message, not a validation failure.
	if err := c.SendRaw([]byte(`{"type":"swarm","objective":"x","sandbox":false}`)); err != nil {
		t.Fatal(err)
	}
	m := readUntil(t, c, 10*time.Second, func(m client.Message) bool { return m.Type == "error" || m.Type == "task_created" })
	if m.Code != "invalid_message" {
		t.Fatalf("unknown top-level field: %s", m.Raw)
	}
	// Keys that differ only in case are one key to encoding/json: a duplicate, refused.
	// The refusal echoes the frame's requestId, invalid_message and unknown_type included.
	if err := c.SendRaw([]byte(`{"type":"swarm","requestId":"dup-1","objective":"harmless","OBJECTIVE":"something else"}`)); err != nil {
		t.Fatal(err)
	}
	m = readUntil(t, c, 10*time.Second, func(m client.Message) bool { return m.Type == "error" || m.Type == "task_created" })
	if m.Code != "invalid_message" || m.RequestID != "dup-1" {
		t.Fatalf("case-variant duplicate key: %s", m.Raw)
	}
	if err := c.SendRaw([]byte(`{"type":"teleport","requestId":"unk-1"}`)); err != nil {
		t.Fatal(err)
	}
	m = readUntil(t, c, 10*time.Second, func(m client.Message) bool { return m.Type == "error" })
	if m.Code != "unknown_type" || m.RequestID != "unk-1" {
		t.Fatalf("unknown type: %s", m.Raw)
	}
	// Then a valid swarm on the same connection, to its end: the server handles a
	// connection's frames in order, so it has handled every rejected request before this one.
	// The user's task list holds this task alone (a task is listed from its creation, before
	// the reply: nothing was created for a rejected request, so nothing can start for one
	// later), and the log shows its engine alone started.
	m = quickSwarm(t, c, "valid-after")
	if m.Type != "task_complete" || m.Status != "success" {
		t.Fatalf("a valid swarm after the rejected ones: %s", m.Raw)
	}
	if ids := taskIDs(t, c); len(ids) != 1 || ids[0] != m.TaskID {
		t.Fatalf("tasks after the rejected requests and one valid swarm (%s): %v", m.TaskID, ids)
	}
	if n := enginesStartedSince(t, g, before); n != 1 {
		t.Fatalf("%d engines started for rejected requests", n-1)
	}
}

// enginesStartedSince is how many engines the log shows started since it showed before, once
// it shows at least one more: a task's "engine started" line may still be in the stderr pipe
// when its task_complete reaches the client.
func enginesStartedSince(t *testing.T, g *gateway, before int) int {
	t.Helper()
	waitFor(t, 30*time.Second, func() bool { return enginesStarted(g) > before })
	return enginesStarted(g) - before
}

func TestShellMetacharactersReachTheEngineUnchanged(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.dial(t, g.UserToken)
	for _, obj := range []string{"count files $(id) now", "list ; rm -rf / please", "quote `whoami` and \"this\" and 'that'", "pipe | and > redirect & bg; exit 1"} {
		r := runSwarm(t, c, obj+" sim:pace=0 sim:events=1", nil)
		var res struct{ Result string }
		if err := jsonUnmarshal(r.complete.Raw, &res); err != nil {
			t.Fatal(err)
		}
		want := obj + " sim:pace=0 sim:events=1"
		if r.complete.Status != "success" || !strings.Contains(res.Result, want) {
			t.Fatalf("engine saw %q; want it to contain %q", res.Result, want)
		}
	}
}

// taskIDs lists the ids of the connection's user's tasks (the tasks message), newest first.
func taskIDs(t *testing.T, c *client.Conn) []string {
	t.Helper()
	id := fmt.Sprint("tasks-", time.Now().UnixNano())
	if err := c.Send(map[string]any{"type": "tasks", "requestId": id}); err != nil {
		t.Fatal(err)
	}
	m := readUntil(t, c, 10*time.Second, func(m client.Message) bool { return m.RequestID == id })
	var reply struct{ Tasks []struct{ TaskID string } }
	if err := json.Unmarshal(m.Raw, &reply); err != nil || m.Type != "tasks" {
		t.Fatalf("tasks: %s", m.Raw)
	}
	ids := make([]string, len(reply.Tasks))
	for i, tk := range reply.Tasks {
		ids[i] = tk.TaskID
	}
	return ids
}

// quickSwarm runs one short swarm to completion and returns the error frame, if refused.
func quickSwarm(t *testing.T, c *client.Conn, id string) client.Message {
	t.Helper()
	if err := c.Send(map[string]any{"type": "swarm", "objective": "quick sim:pace=0 sim:events=1", "requestId": id}); err != nil {
		t.Fatal(err)
	}
	var created string
	for {
		m := readUntil(t, c, 20*time.Second, func(m client.Message) bool {
			return m.RequestID == id || (created != "" && m.TaskID == created && m.Type == "task_complete")
		})
		switch m.Type {
		case "error":
			return m
		case "task_created":
			created = m.TaskID
		case "task_complete":
			return m
		}
	}
}

func TestSwarmRateLimitHoldsAcrossConnections(t *testing.T) {
	// A bucket of 10 that refills every 30 s (the default refills every 6 s): the test sends
	// its 11 swarms well within one refill however slow the machine is.
	g := startGateway(t, gwOptions{env: map[string]string{
		"FLOWGATE_LIMITS_SWARMS_PER_MINUTE":     "2",
		"FLOWGATE_LIMITS_USER_CONCURRENT_TASKS": "20",
	}})
	a1 := g.dial(t, g.UserToken)
	a2 := g.dial(t, g.UserToken)
	create := func(c *client.Conn, id string) client.Message {
		t.Helper()
		if err := c.Send(map[string]any{"type": "swarm", "objective": "quick sim:pace=0 sim:events=1", "requestId": id}); err != nil {
			t.Fatal(err)
		}
		return readUntil(t, c, 20*time.Second, func(m client.Message) bool { return m.RequestID == id })
	}
	for i := 0; i < 10; i++ {
		c := a1
		if i%2 == 1 {
			c = a2 // two connections share the user's bucket
		}
		if m := create(c, fmt.Sprintf("q%d", i)); m.Type != "task_created" {
			t.Fatalf("swarm %d refused: %s", i+1, m.Raw)
		}
	}
	m := create(a2, "q10")
	if m.Type != "error" || m.Code != "rate_limited" || m.RetryAfterMs <= 0 || m.RetryAfterMs > 30000 {
		t.Fatalf("11th swarm: %s; want rate_limited with retryAfterMs in (0, 30000]", m.Raw)
	}
	// A reconnect does not reset the bucket.
	a1.Close()
	a3 := g.dial(t, g.UserToken)
	if m := create(a3, "q11"); m.Code != "rate_limited" {
		t.Fatalf("after reconnect: %s", m.Raw)
	}
	// Another user of the same tenant is served.
	bob := g.dial(t, g.token(t, "demo", "bob", "1h", "swarm:execute"))
	if m := quickSwarm(t, bob, "b1"); m.Type != "task_complete" || m.Status != "success" {
		t.Fatalf("bob refused: %s", m.Raw)
	}
	if !auditHas(t, g, "ratelimit.denied") {
		t.Fatal("no audit record of the rate-limit denial")
	}
}

func TestConcurrencyQuotas(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{
		"FLOWGATE_LIMITS_EXECUTOR_POOL":           "2",
		"FLOWGATE_LIMITS_EXECUTOR_QUEUE":          "1",
		"FLOWGATE_LIMITS_USER_CONCURRENT_TASKS":   "2",
		"FLOWGATE_LIMITS_TENANT_CONCURRENT_TASKS": "4",
	}})
	alice := g.dial(t, g.UserToken)
	bob := g.dial(t, g.token(t, "demo", "bob", "1h", "swarm:execute"))
	carol := g.dial(t, g.token(t, "demo", "carol", "1h", "swarm:execute"))
	long := "long sim:hang"
	send := func(c *client.Conn, id string) client.Message {
		t.Helper()
		if err := c.Send(map[string]any{"type": "swarm", "objective": long, "requestId": id}); err != nil {
			t.Fatal(err)
		}
		return readUntil(t, c, 20*time.Second, func(m client.Message) bool { return m.RequestID == id })
	}
	a1, a2 := send(alice, "a1"), send(alice, "a2")
	if a1.Type != "task_created" || a2.Type != "task_created" {
		t.Fatalf("alice: %s %s", a1.Raw, a2.Raw)
	}
	if m := send(alice, "a3"); m.Code != "quota_exceeded" {
		t.Fatalf("alice's 3rd concurrent swarm: %s; want quota_exceeded (user)", m.Raw)
	}
	// The pool (2) is full; bob's swarm waits in the queue (1) and shows pending.
	b1 := send(bob, "b1")
	if b1.Type != "task_created" {
		t.Fatalf("bob: %s", b1.Raw)
	}
	if err := bob.Send(map[string]any{"type": "status", "taskId": b1.TaskID, "requestId": "s"}); err != nil {
		t.Fatal(err)
	}
	if st := readUntil(t, bob, 10*time.Second, func(m client.Message) bool { return m.RequestID == "s" }); st.Status != "pending" {
		t.Fatalf("queued task status = %s", st.Raw)
	}
	// Pool and queue are full: the executor bound answers quota_exceeded.
	if m := send(carol, "c1"); m.Code != "quota_exceeded" {
		t.Fatalf("carol past the executor bound: %s", m.Raw)
	}
	// Cancelling a running task lets the queued one run.
	if err := alice.Send(map[string]any{"type": "cancel", "taskId": a1.TaskID}); err != nil {
		t.Fatal(err)
	}
	readUntil(t, bob, 20*time.Second, func(m client.Message) bool { return m.TaskID == b1.TaskID && m.Type == "system" })
}

func TestConnectionCaps(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{
		"FLOWGATE_LIMITS_USER_CONNECTIONS":         "3",
		"FLOWGATE_LIMITS_IP_HANDSHAKES_PER_SECOND": "1000",
		"FLOWGATE_LIMITS_IP_HANDSHAKE_BURST":       "1000",
	}})
	for i := 0; i < 3; i++ {
		g.dial(t, g.UserToken)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := client.Dial(ctx, g.URL, client.Options{Token: g.UserToken})
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != 429 || he.Code != "rate_limited" {
		t.Fatalf("4th connection of one user: %v; want 429 rate_limited", err)
	}
	// Another user is not affected.
	g.dial(t, g.AdminToken)

	h := startGateway(t, gwOptions{env: map[string]string{
		"FLOWGATE_LIMITS_IP_HANDSHAKES_PER_SECOND": "1",
		"FLOWGATE_LIMITS_IP_HANDSHAKE_BURST":       "3",
	}})
	refused := 0
	for i := 0; i < 6; i++ {
		c, err := client.Dial(ctx, h.URL, client.Options{Token: h.UserToken})
		if err == nil {
			c.Close()
			continue
		}
		if errors.As(err, &he) && he.Status == 429 {
			refused++
		}
	}
	if refused < 2 {
		t.Fatalf("%d of 6 rapid handshakes refused; want the per-IP rate to refuse past the burst of 3", refused)
	}
	// The refusal tells a well-behaved client when to come back: Retry-After in whole seconds
	// (rounded up) and retryAfterMs in the problem body.
	resp := rawHandshake(t, ctx, h.URL, "Bearer "+h.UserToken)
	defer resp.Body.Close()
	var p struct {
		Code         string `json:"code"`
		RetryAfterMs int64  `json:"retryAfterMs"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&p)
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || p.Code != "rate_limited" || ra < 1 || ra > 2 ||
		p.RetryAfterMs <= 0 || p.RetryAfterMs > 1000 || int64(ra)*1000 < p.RetryAfterMs {
		t.Fatalf("handshake past the per-IP rate: %d Retry-After=%q body=%+v; want 429 rate_limited, Retry-After 1..2 s covering retryAfterMs in (0, 1000]",
			resp.StatusCode, resp.Header.Get("Retry-After"), p)
	}
}

func TestFloodDoesNotStarveOthers(t *testing.T) {
	g := startGateway(t, gwOptions{})
	flooder := g.dial(t, g.UserToken)
	bob := g.dial(t, g.token(t, "demo", "bob", "1h", "swarm:execute"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // writer: messages as fast as the socket takes them
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if flooder.Send(map[string]any{"type": "ping", "requestId": fmt.Sprint(i)}) != nil {
				return
			}
		}
	}()
	limited := make(chan bool, 1)
	go func() { // reader: the flood is answered with rate_limited, not served
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for {
			m, err := flooder.Read(ctx)
			if err != nil {
				return
			}
			if m.Code == "rate_limited" {
				select {
				case limited <- true:
				default:
				}
			}
		}
	}()
	// Meanwhile another user of the same tenant runs a swarm to success.
	r := runSwarm(t, bob, "fair share sim:pace=10ms sim:events=30", nil)
	if r.complete.Status != "success" {
		t.Fatalf("bob's swarm: %s", r.complete.Raw)
	}
	select {
	case <-limited:
	case <-time.After(10 * time.Second):
		t.Fatal("the flood was never rate limited")
	}
	close(stop)
	flooder.Abort()
	wg.Wait()
}

// TestAuthFailureFloodIsSummarised: an unauthenticated client hammering the admin API and the
// WebSocket handshake gets at most audit.auth_failure_burst (10) auth.failure records per
// reason and minute; the rest are counted into auth.failure.summary records (written when the
// window ends, or at shutdown).
func TestAuthFailureFloodIsSummarised(t *testing.T) {
	g := startGateway(t, gwOptions{})
	const n = 300
	refused := 0 // 401s: the per-address limiter answers the rest with 429 before any of it
	for i := range n {
		req, _ := http.NewRequest("GET", g.HTTP+"/v1/admin/tenants", nil)
		req.Header.Set("Authorization", "Bearer not-a-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case 401:
			refused++
		case 429:
		default:
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if refused == n {
		t.Error("the per-address limiter let every request of the flood through")
	}
	for range 50 {
		he := g.dialErr(t, "not-a-token-either")
		switch {
		case he == nil:
			t.Fatal("handshake accepted")
		case he.Status == 401:
			refused++
		case he.Status != 429:
			t.Fatalf("handshake: %+v", he)
		}
	}
	if !g.signal(syscall.SIGTERM, 40*time.Second) {
		t.Fatal("the gateway did not stop")
	}
	out, err := g.cli(t, "", "audit", "export", "--dev", "--data-dir", g.dataDir, "--tenant", "@platform")
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, out)
	}
	failures, summarised := 0, 0
	for _, line := range strings.Split(out, "\n") {
		var r struct {
			Action  string
			Details map[string]any
		}
		if line == "" || json.Unmarshal([]byte(line), &r) != nil {
			continue
		}
		switch r.Action {
		case "auth.failure":
			failures++
		case "auth.failure.summary":
			c, _ := r.Details["count"].(float64)
			summarised += int(c)
		}
	}
	if failures > 20 || failures+summarised != refused {
		t.Fatalf("%d auth.failure records and %d summarised, want at most 20 and %d in all", failures, summarised, refused)
	}
	t.Logf("%d requests, %d refused after the limiter: %d auth.failure records, %d counted in summaries", n+50, refused, failures, summarised)
}

// auditBytes is the audit table's size by content: rows and the bytes of their columns.
func auditBytes(t *testing.T, g *gateway) (rows, bytes int64) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{Driver: store.DriverSQLite, Path: filepath.Join(g.dataDir, "flowgate.db"), SkipMigrations: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.SQL().QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(LENGTH(body) + LENGTH(hash) + LENGTH(prev_hash) +
		LENGTH(id) + LENGTH(action) + LENGTH(outcome) + LENGTH(actor_sub) + LENGTH(chain) + 24), 0) FROM audit_records`).Scan(&rows, &bytes); err != nil {
		t.Fatal(err)
	}
	return rows, bytes
}

// TestUnauthenticatedFloodAuditGrowth: 60 s of unauthenticated requests to the admin API and
// WebSocket handshakes, from eight addresses at once, add less than 1 MiB to the audit table
// (DESIGN §16), and every refusal is accounted for: recorded, or counted in a summary.
func TestUnauthenticatedFloodAuditGrowth(t *testing.T) {
	g := startGateway(t, gwOptions{})
	rows0, bytes0 := auditBytes(t, g)
	host := strings.TrimPrefix(g.HTTP, "http://")
	deadline := time.Now().Add(60 * time.Second)
	var refused, requests atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(20+i))}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext:         (&net.Dialer{LocalAddr: src}).DialContext,
			MaxIdleConnsPerHost: 4,
		}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer client.CloseIdleConnections()
			for n := 0; time.Now().Before(deadline); n++ {
				path, hdr := "/v1/admin/tenants", http.Header{"Authorization": {"Bearer not-a-token"}}
				if n%2 == 1 { // a handshake with a bad token
					path = "/ws"
					hdr.Set("Connection", "Upgrade")
					hdr.Set("Upgrade", "websocket")
					hdr.Set("Sec-WebSocket-Version", "13")
					hdr.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
				}
				req, _ := http.NewRequest("GET", "http://"+host+path, nil)
				req.Header = hdr
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				requests.Add(1)
				if resp.StatusCode == http.StatusUnauthorized {
					refused.Add(1)
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if !g.signal(syscall.SIGTERM, 40*time.Second) { // flushes the open summaries
		t.Fatal("the gateway did not stop")
	}
	rows1, bytes1 := auditBytes(t, g)
	growth := bytes1 - bytes0
	t.Logf("60 s flood from 8 addresses: %d requests, %d refused 401 (the rest 429 by the per-address limiter); the audit table grew by %d rows, %.1f KiB",
		requests.Load(), refused.Load(), rows1-rows0, float64(growth)/1024)
	if growth >= 1<<20 {
		t.Fatalf("the audit table grew by %d bytes under the flood; want < 1 MiB", growth)
	}
	failures, summarised := 0, 0
	for _, r := range auditRecords(t, g, audit.ScopePlatform) {
		switch r.Action {
		case audit.ActionAuthFailure:
			failures++
		case audit.ActionAuthFailureSummary:
			c, _ := r.Details["count"].(float64)
			summarised += int(c)
		}
	}
	if int64(failures+summarised) != refused.Load() {
		t.Fatalf("%d auth.failure records + %d summarised; want all %d refusals accounted for", failures, summarised, refused.Load())
	}
}
