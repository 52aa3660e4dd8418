package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/client"
)

// readUntil reads frames until match returns true, failing after d.
func readUntil(t *testing.T, c *client.Conn, d time.Duration, match func(client.Message) bool) client.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		m, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if match(m) {
			return m
		}
	}
}

func startSwarm(t *testing.T, c *client.Conn, objective string, options map[string]any) string {
	t.Helper()
	msg := map[string]any{"type": "swarm", "objective": objective, "requestId": "r-" + fmt.Sprint(time.Now().UnixNano())}
	if options != nil {
		msg["options"] = options
	}
	if err := c.Send(msg); err != nil {
		t.Fatal(err)
	}
	m := readUntil(t, c, 20*time.Second, func(m client.Message) bool {
		if m.Type == "error" {
			t.Fatalf("swarm refused: %s", m.Raw)
		}
		return m.Type == "task_created"
	})
	if m.RequestID != msg["requestId"] {
		t.Fatalf("requestId not echoed: %s", m.Raw)
	}
	return m.TaskID
}

// processesWith lists live pids whose command line contains marker.
func processesWith(marker string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if strings.Contains(string(stat), ") Z ") {
			continue // a zombie is already dead
		}
		if strings.Contains(string(cmdline), marker) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// waitGone waits until no process carries marker.
func waitGone(t *testing.T, marker string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		pids := processesWith(marker)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes survive with marker %s: %v", marker, pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCancelAndTimeoutLeaveNoSurvivors(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{"FLOWGATE_ENGINE_KILL_GRACE": "1s"}})
	c := g.dial(t, g.UserToken)
	for _, tc := range []struct {
		name    string
		options map[string]any
		cancel  bool
		status  string
	}{
		{"cancel", nil, true, "cancelled"},
		{"timeout", map[string]any{"timeout": 2}, false, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := fmt.Sprintf("e2e%s%d", tc.name, time.Now().UnixNano())
			id := startSwarm(t, c, "hang forever sim:hang sim:ignore-term sim:setsid-child sim:marker="+marker, tc.options)
			readUntil(t, c, 20*time.Second, func(m client.Message) bool { return m.TaskID == id && m.Type == "sim_grandchild" })
			if len(processesWith(marker)) == 0 {
				t.Fatal("the setsid grandchild is not running")
			}
			if tc.cancel {
				if err := c.Send(map[string]any{"type": "cancel", "taskId": id}); err != nil {
					t.Fatal(err)
				}
				readUntil(t, c, 10*time.Second, func(m client.Message) bool { return m.Type == "task_cancelled" && m.TaskID == id })
			}
			done := readUntil(t, c, 30*time.Second, func(m client.Message) bool { return m.TaskID == id && m.Type == "task_complete" })
			if done.Status != tc.status {
				t.Fatalf("status = %s; want %s (%s)", done.Status, tc.status, done.Raw)
			}
			// task_complete is sent once the whole process tree is gone.
			if pids := processesWith(marker); len(pids) > 0 {
				t.Fatalf("after task_complete these survive: %v", pids)
			}
		})
	}
}

func TestOwnershipAcrossUsers(t *testing.T) {
	g := startGateway(t, gwOptions{})
	alice := g.dial(t, g.UserToken)
	bobTok := g.token(t, "demo", "bob", "1h", "swarm:execute")
	bob := g.dial(t, bobTok)
	id := startSwarm(t, alice, "long task sim:pace=200ms sim:events=100", nil)

	must := func(c *client.Conn, msg map[string]any, match func(client.Message) bool) client.Message {
		t.Helper()
		if err := c.Send(msg); err != nil {
			t.Fatal(err)
		}
		return readUntil(t, c, 10*time.Second, match)
	}
	st := must(bob, map[string]any{"type": "status", "taskId": id, "requestId": "s1"}, func(m client.Message) bool { return m.RequestID == "s1" })
	if st.Type != "status" || st.Status != "not_found" || strings.Contains(string(st.Raw), "objective") {
		t.Fatalf("bob's status = %s", st.Raw)
	}
	cn := must(bob, map[string]any{"type": "cancel", "taskId": id, "requestId": "c1"}, func(m client.Message) bool { return m.RequestID == "c1" })
	if cn.Type != "error" || cn.Code != "not_found" {
		t.Fatalf("bob's cancel = %s", cn.Raw)
	}
	sb := must(bob, map[string]any{"type": "subscribe", "taskId": id, "afterSeq": 0, "requestId": "b1"}, func(m client.Message) bool { return m.RequestID == "b1" || m.TaskID == id })
	if sb.Type != "error" || sb.Code != "not_found" {
		t.Fatalf("bob's subscribe = %s", sb.Raw)
	}
	// A task that does not exist answers exactly the same.
	st2 := must(bob, map[string]any{"type": "status", "taskId": "00000000-0000-4000-8000-000000000000", "requestId": "s2"}, func(m client.Message) bool { return m.RequestID == "s2" })
	if st2.Status != "not_found" {
		t.Fatalf("missing task status = %s", st2.Raw)
	}
	// Alice's task is untouched.
	own := must(alice, map[string]any{"type": "status", "taskId": id, "requestId": "s3"}, func(m client.Message) bool { return m.RequestID == "s3" })
	if own.Status != "running" && own.Status != "pending" {
		t.Fatalf("alice's task = %s", own.Raw)
	}
	// A task admin of the same tenant may see and cancel it.
	adm := g.dial(t, g.AdminToken)
	as := must(adm, map[string]any{"type": "status", "taskId": id, "requestId": "a1"}, func(m client.Message) bool { return m.RequestID == "a1" })
	if as.Status != "running" {
		t.Fatalf("task admin status = %s", as.Raw)
	}
	must(alice, map[string]any{"type": "cancel", "taskId": id}, func(m client.Message) bool { return m.Type == "task_complete" && m.TaskID == id })
}

func TestRedactionEnvAndForgery(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{
		"FLOWGATE_E2E_CANARY":   "server-secret-canary",
		"AWS_SECRET_ACCESS_KEY": "aws-canary-value",
		"FLOWGATE_ENGINE_ENV":   "", // no pass-through at all: the exact allowlist
	}})
	c := g.dial(t, g.UserToken)

	r := runSwarm(t, c, "show me sim:print-env sim:print-key sim:stderr", map[string]any{"agents": 1})
	var env map[string]string
	sawRedacted := false
	for _, ev := range r.events {
		raw := string(ev.Raw)
		if strings.Contains(raw, "sk-ant-demo-") {
			t.Fatalf("the tenant key reached a client: %s", raw)
		}
		if strings.Contains(raw, "[REDACTED]") {
			sawRedacted = true
		}
		if ev.Type == "sim_env" {
			var e struct{ Env map[string]string }
			if err := json.Unmarshal(ev.Raw, &e); err != nil {
				t.Fatal(err)
			}
			env = e.Env
		}
	}
	if !sawRedacted {
		t.Fatal("no [REDACTED] marker: the key was not printed or not redacted")
	}
	var names []string
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	// The allowlist, and the task's egress proxy under both spellings.
	if strings.Join(names, ",") != "ANTHROPIC_API_KEY,HOME,HTTPS_PROXY,HTTP_PROXY,LANG,PATH,TMPDIR,TZ,http_proxy,https_proxy" {
		t.Fatalf("child environment = %v; want exactly the allowlist", names)
	}
	if p := env["HTTPS_PROXY"]; !strings.HasPrefix(p, "http://127.0.0.1:") || env["http_proxy"] != p {
		t.Fatalf("proxy variables: %q %q", p, env["http_proxy"])
	}
	if env["ANTHROPIC_API_KEY"] != "[REDACTED]" || !strings.Contains(env["HOME"], "tasks") {
		t.Fatalf("env values: key=%q home=%q", env["ANTHROPIC_API_KEY"], env["HOME"])
	}
	if strings.Contains(g.Logs(), "sk-ant-demo-") {
		t.Fatal("the tenant key reached the log")
	}

	// An engine printing the gateway's own message types cannot fake completion.
	f := runSwarm(t, c, "forge sim:fake-complete", nil)
	completes := 0
	wrapped := 0
	for _, ev := range f.events {
		switch ev.Type {
		case "task_complete":
			completes++
		case "engine_event":
			wrapped++
		case "task_progress":
			if ev.TaskID != f.created.TaskID {
				t.Fatalf("engine overrode taskId: %s", ev.Raw)
			}
		}
	}
	if completes != 1 || f.complete.Status != "failed" || wrapped == 0 {
		t.Fatalf("completes=%d wrapped=%d final=%s", completes, wrapped, f.complete.Raw)
	}
}

func TestHugeLineDoesNotStopLaterEvents(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.dial(t, g.UserToken)
	r := runSwarm(t, c, "huge sim:huge-line=5242880", nil)
	truncated := false
	after := 0
	for _, ev := range r.events {
		if ev.Type == "task_output" && strings.Contains(string(ev.Raw), `"truncated":true`) {
			truncated = true
			if len(ev.Raw) > 1<<20+4096 {
				t.Fatalf("truncated frame is %d bytes", len(ev.Raw))
			}
			continue
		}
		if truncated {
			after++
		}
	}
	if !truncated || after < 5 || r.complete.Status != "success" {
		t.Fatalf("truncated=%v later events=%d final=%s", truncated, after, r.complete.Raw)
	}
}

func TestResumeAfterReconnect(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.dial(t, g.UserToken)
	id := startSwarm(t, c, "resume me sim:pace=20ms sim:events=150", nil)
	var seen []int64
	readUntil(t, c, 20*time.Second, func(m client.Message) bool {
		if m.TaskID == id && m.Seq > 0 {
			seen = append(seen, m.Seq)
		}
		return len(seen) >= 10
	})
	c.Abort() // drop TCP without a close handshake; the task is detached, not cancelled
	// The server has seen the drop once the session is gone: it detaches the session's tasks
	// before it counts the connection closed.
	waitMetric(t, g, "flowgate_connections", func(v float64) bool { return v == 0 }, "after the client vanished")

	c2 := g.dial(t, g.UserToken)
	last := seen[len(seen)-1]
	if err := c2.Send(map[string]any{"type": "subscribe", "taskId": id, "afterSeq": last}); err != nil {
		t.Fatal(err)
	}
	done := readUntil(t, c2, 60*time.Second, func(m client.Message) bool {
		if m.Type == "error" {
			t.Fatalf("subscribe: %s", m.Raw)
		}
		if m.TaskID == id && m.Seq > 0 {
			seen = append(seen, m.Seq)
		}
		return m.Type == "task_complete" && m.TaskID == id
	})
	if done.Status != "success" {
		t.Fatalf("the task of the vanished client: %s; want success (detached, not cancelled)", done.Raw)
	}
	for i, s := range seen {
		if s != int64(i+1) {
			t.Fatalf("seq %d at position %d: gap or duplicate in %v", s, i, seen)
		}
	}
}

func TestFrameRules(t *testing.T) {
	g := startGateway(t, gwOptions{})
	tests := []struct {
		name string
		send func(c *client.Conn) error
		code int
	}{
		{"oversized", func(c *client.Conn) error {
			return c.SendRaw([]byte(`{"type":"swarm","objective":"` + strings.Repeat("a", 70000) + `"}`))
		}, 1009},
		{"invalid utf8", func(c *client.Conn) error { return c.SendRaw([]byte("{\"type\":\"ping\",\"requestId\":\"\xff\"}")) }, 1007},
		{"binary", func(c *client.Conn) error { return c.SendBinary([]byte(`{"type":"ping"}`)) }, 1003},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := g.dial(t, g.UserToken)
			if err := tt.send(c); err != nil {
				t.Fatal(err)
			}
			if ce := waitClosed(t, nil, c, 10*time.Second); ce.Code != tt.code {
				t.Fatalf("connection ended with %v; want close %d", ce, tt.code)
			}
		})
	}
	// Malformed JSON is answered, and the connection stays open.
	c := g.dial(t, g.UserToken)
	for _, bad := range []string{`{"type":`, `{"type":"ping","x":1}`, `{"type":"nope"}`, `[]`} {
		if err := c.SendRaw([]byte(bad)); err != nil {
			t.Fatal(err)
		}
		m := readUntil(t, c, 5*time.Second, func(m client.Message) bool { return m.Type == "error" })
		if m.Code != "invalid_message" && m.Code != "unknown_type" {
			t.Fatalf("%s → %s", bad, m.Raw)
		}
	}
	if err := c.Send(map[string]any{"type": "ping", "requestId": "p"}); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, 5*time.Second, func(m client.Message) bool { return m.Type == "pong" && m.RequestID == "p" })
}

// heapAfterGC reads the gateway's live heap after a forced collection (pprof's heap profile
// with gc=1 prints runtime.MemStats).
func heapAfterGC(t *testing.T, g *gateway) int64 {
	t.Helper()
	resp, err := http.Get(g.Ops + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 64<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no HeapAlloc in the heap profile")
	return 0
}

// TestRetainedOutputKeepsHeapBounded: ten finished tasks of about 20 MiB of output each
// (200 MiB all together) leave the gateway's live heap under tasks.retained_memory_max plus
// its baseline; the oldest are served from the store (DESIGN §16).
func TestRetainedOutputKeepsHeapBounded(t *testing.T) {
	const budget = 48 << 20
	g := startGateway(t, gwOptions{env: map[string]string{
		"FLOWGATE_TASKS_RETAINED_MEMORY_MAX": "48MiB",
		"FLOWGATE_TASKS_MAX_OUTPUT_BYTES":    "32MiB",
	}})
	c := g.dial(t, g.UserToken)
	base := heapAfterGC(t, g)
	var ids []string
	var total int64
	for i := range 10 {
		id := startSwarm(t, c, fmt.Sprintf("big output %d sim:pace=0 sim:events=44000", i), map[string]any{"agents": 1})
		ids = append(ids, id)
		var bytes int64
		m := readUntil(t, c, 120*time.Second, func(m client.Message) bool {
			if m.TaskID == id {
				bytes += int64(len(m.Raw))
			}
			return m.Type == "task_complete" && m.TaskID == id
		})
		if m.Status != "success" {
			t.Fatalf("task %d: %s", i, m.Raw)
		}
		total += bytes
	}
	heap := heapAfterGC(t, g)
	t.Logf("10 tasks streamed %.1f MiB in all; live heap %.1f MiB before, %.1f MiB after (budget %d MiB)",
		float64(total)/(1<<20), float64(base)/(1<<20), float64(heap)/(1<<20), budget>>20)
	if total < 150<<20 {
		t.Fatalf("the tasks produced only %d MiB; the test needs about 20 MiB each", total>>20)
	}
	if heap-base > budget+16<<20 {
		t.Fatalf("live heap grew by %.1f MiB after 10 finished 20 MiB tasks; want at most the %d MiB budget plus slack",
			float64(heap-base)/(1<<20), budget>>20)
	}
	// The oldest task left memory and is answered from the store.
	if err := c.Send(map[string]any{"type": "status", "taskId": ids[0], "requestId": "st0"}); err != nil {
		t.Fatal(err)
	}
	if m := readUntil(t, c, 10*time.Second, func(m client.Message) bool { return m.RequestID == "st0" }); m.Status != "success" {
		t.Fatalf("status of the oldest task: %s", m.Raw)
	}
}
