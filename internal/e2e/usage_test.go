package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/client"
)

type usageFigures struct {
	Tasks                    int64   `json:"tasks"`
	InputTokens              int64   `json:"inputTokens"`
	OutputTokens             int64   `json:"outputTokens"`
	CacheReadInputTokens     int64   `json:"cacheReadInputTokens"`
	CacheCreationInputTokens int64   `json:"cacheCreationInputTokens"`
	CostUSD                  float64 `json:"costUsd"`
}

func (u usageFigures) equal(o usageFigures) bool {
	return u.Tasks == o.Tasks && u.InputTokens == o.InputTokens && u.OutputTokens == o.OutputTokens &&
		u.CacheReadInputTokens == o.CacheReadInputTokens && u.CacheCreationInputTokens == o.CacheCreationInputTokens &&
		math.Abs(u.CostUSD-o.CostUSD) < 1e-9
}

// GET /v1/admin/usage and `flowgate usage --json` sum exactly what the tasks' task_complete
// reported (DESIGN §18); bad ranges and groupings are refused naming the field; another
// tenant's usage is a 404 for a tenant admin.
func TestUsageLedger(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.dial(t, g.UserToken)
	var want usageFigures
	ids := map[string]bool{}
	for _, obj := range []string{"count the stars sim:pace=0", "write a haiku sim:pace=0 sim:events=12", "third sim:pace=0"} {
		id := startSwarm(t, c, obj, nil)
		final := readUntil(t, c, 60*time.Second, func(m client.Message) bool { return m.TaskID == id && m.Type == "task_complete" })
		var tc struct {
			Usage *usageFigures `json:"usage"`
		}
		if err := json.Unmarshal(final.Raw, &tc); err != nil || tc.Usage == nil || tc.Usage.InputTokens == 0 || tc.Usage.CostUSD <= 0 {
			t.Fatalf("task_complete without usage: %s", final.Raw)
		}
		want.Tasks++
		want.InputTokens += tc.Usage.InputTokens
		want.OutputTokens += tc.Usage.OutputTokens
		want.CacheReadInputTokens += tc.Usage.CacheReadInputTokens
		want.CacheCreationInputTokens += tc.Usage.CacheCreationInputTokens
		want.CostUSD += tc.Usage.CostUSD
		ids[id] = true
		// status returns the same usage, from the store.
		if err := c.Send(map[string]any{"type": "status", "taskId": id, "requestId": "st-" + id}); err != nil {
			t.Fatal(err)
		}
		st := readUntil(t, c, 20*time.Second, func(m client.Message) bool { return m.RequestID == "st-"+id })
		var sv struct {
			Usage *usageFigures `json:"usage"`
		}
		if err := json.Unmarshal(st.Raw, &sv); err != nil || sv.Usage == nil || !sv.Usage.equal(*tc.Usage) {
			t.Fatalf("status usage %s; want task_complete's %+v", st.Raw, *tc.Usage)
		}
	}
	admin := g.token(t, "demo", "ops-lead", "1h", "tenant:admin")
	type answer struct {
		Tenant  string `json:"tenant"`
		GroupBy string `json:"groupBy"`
		Rows    []struct {
			Key string `json:"key"`
			usageFigures
		} `json:"rows"`
		Total usageFigures `json:"total"`
	}
	get := func(query string) answer {
		t.Helper()
		status, body, _ := g.do(t, http.MethodGet, "/v1/admin/usage"+query, admin, "")
		if status != http.StatusOK {
			t.Fatalf("GET usage%s = %d %s", query, status, body)
		}
		var a answer
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, by := range []string{"day", "user", "task"} {
		a := get("?groupBy=" + by)
		if !a.Total.equal(want) {
			t.Fatalf("groupBy=%s total %+v; the tasks' task_complete sum to %+v", by, a.Total, want)
		}
		var sum usageFigures
		for _, r := range a.Rows {
			sum.Tasks += r.Tasks
			sum.InputTokens += r.InputTokens
			sum.OutputTokens += r.OutputTokens
			sum.CacheReadInputTokens += r.CacheReadInputTokens
			sum.CacheCreationInputTokens += r.CacheCreationInputTokens
			sum.CostUSD += r.CostUSD
			if by == "task" && !ids[r.Key] {
				t.Fatalf("groupBy=task row %q is not one of the tasks", r.Key)
			}
		}
		if !sum.equal(want) {
			t.Fatalf("groupBy=%s rows sum to %+v; want %+v", by, sum, want)
		}
	}
	if a := get("?groupBy=day&from=" + time.Now().UTC().Format(time.DateOnly)); len(a.Rows) != 1 || a.Rows[0].Key != time.Now().UTC().Format(time.DateOnly) {
		t.Fatalf("today's usage by day = %+v", a)
	}

	// The same figures reach the metrics, with no tenant label.
	_, metrics := g.get(t, g.Ops+"/metrics", "")
	for _, line := range []string{
		fmt.Sprintf(`flowgate_engine_tokens_total{kind="input"} %d`, want.InputTokens),
		fmt.Sprintf(`flowgate_engine_tokens_total{kind="output"} %d`, want.OutputTokens),
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
	if !strings.Contains(metrics, "flowgate_engine_cost_usd_total ") {
		t.Error("metrics lack flowgate_engine_cost_usd_total")
	}

	out, err := g.cli(t, "", "usage", "--dev", "--data-dir", g.dataDir, "--tenant", "demo", "--since", "24h", "--json")
	if err != nil {
		t.Fatalf("flowgate usage: %v\n%s", err, out)
	}
	var cli struct {
		Tenants []struct {
			Tenant string       `json:"tenant"`
			Total  usageFigures `json:"total"`
		} `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(out), &cli); err != nil || len(cli.Tenants) != 1 || !cli.Tenants[0].Total.equal(want) {
		t.Fatalf("flowgate usage --json = %s (%v); want total %+v", out, err, want)
	}
	if out, err := g.cli(t, "", "usage", "--dev", "--data-dir", g.dataDir, "--since", "yesterday-ish"); err == nil || !strings.Contains(out, "--since") {
		t.Fatalf("flowgate usage --since yesterday-ish = %v: %s", err, out)
	}

	for _, tt := range []struct {
		query, field string
	}{
		{"?from=2026-12-08&to=2026-12-01", "from"},
		{"?groupBy=week", "groupBy"},
		{"?from=yesterday", "from"},
		{"?to=" + url.QueryEscape("2026-13-40"), "to"},
		{"?budget=1", "budget"},
	} {
		status, body, _ := g.do(t, http.MethodGet, "/v1/admin/usage"+tt.query, admin, "")
		// Field errors answer 400 validation_failed with fields, as on every admin route.
		if status != http.StatusBadRequest || !strings.Contains(body, `"fields":{"`+tt.field+`"`) {
			t.Errorf("GET usage%s = %d %s; want 400 naming %s", tt.query, status, body, tt.field)
		}
	}
	if status, body, _ := g.do(t, http.MethodGet, "/v1/admin/usage?tenant=other-tenant", admin, ""); status != http.StatusNotFound {
		t.Errorf("another tenant's usage = %d %s; want 404", status, body)
	}
	if status, _, _ := g.do(t, http.MethodGet, "/v1/admin/usage", g.UserToken, ""); status != http.StatusNotFound && status != http.StatusForbidden {
		t.Errorf("usage with a swarm:execute token = %d; want refused", status)
	}
}

// A tenant's daily budget (DESIGN §18): set just above what it has spent, the next swarm runs
// until its live usage crosses it and is cancelled failed "budget exceeded"; after that swarms
// are refused budget_exceeded (audited budget.denied) and nothing is spawned. Bad budgets are
// refused naming the field.
func TestTenantBudget(t *testing.T) {
	g := startGateway(t, gwOptions{})
	c := g.dial(t, g.UserToken)
	first := startSwarm(t, c, "the first sim:pace=0", nil)
	done := readUntil(t, c, 60*time.Second, func(m client.Message) bool { return m.TaskID == first && m.Type == "task_complete" })
	var tc struct {
		Usage usageFigures `json:"usage"`
	}
	if err := json.Unmarshal(done.Raw, &tc); err != nil || tc.Usage.CostUSD <= 0 {
		t.Fatalf("first task: %s", done.Raw)
	}
	for _, bad := range []struct{ body, field string }{
		{`{"limits":{"budgetUsdPerDay":-1}}`, "limits.budgetUsdPerDay"},
		{`{"limits":{"budgetUsdPerDay":"ten"}}`, "limits.budgetUsdPerDay"},
		{`{"limits":{"tokensPerDay":-5}}`, "limits.tokensPerDay"},
		{`{"limits":{"tokensPerDay":1.5}}`, "limits.tokensPerDay"},
	} {
		status, body, _ := g.do(t, http.MethodPatch, "/v1/admin/tenants/demo", g.AdminToken, bad.body)
		if status != http.StatusBadRequest || !strings.Contains(body, bad.field) {
			t.Errorf("PATCH %s = %d %s; want 400 naming %s", bad.body, status, body, bad.field)
		}
	}
	// Just above today's spend: room for part of one more task.
	budget := tc.Usage.CostUSD * 1.5
	if status, body, _ := g.do(t, http.MethodPatch, "/v1/admin/tenants/demo", g.AdminToken,
		fmt.Sprintf(`{"limits":{"budgetUsdPerDay":%g}}`, budget)); status != http.StatusOK {
		t.Fatalf("PATCH budget = %d %s", status, body)
	}
	// No wait: a change through this gateway's API drops its cached tenant before answering.

	crossing := startSwarm(t, c, "the crossing one sim:pace=20ms sim:events=400", nil)
	end := readUntil(t, c, 60*time.Second, func(m client.Message) bool { return m.TaskID == crossing && m.Type == "task_complete" })
	if end.Status != "failed" || end.Error != "budget exceeded" {
		t.Fatalf("the task crossing the budget ended %s", end.Raw)
	}
	if end.Seq > 200 {
		t.Fatalf("the task crossing the budget ran on to seq %d", end.Seq)
	}
	before := processesWith("sim:marker=after-budget")
	if err := c.Send(map[string]any{"type": "swarm", "objective": "refused sim:marker=after-budget", "requestId": "over"}); err != nil {
		t.Fatal(err)
	}
	m := readUntil(t, c, 20*time.Second, func(m client.Message) bool { return m.RequestID == "over" })
	if m.Type != "error" || m.Code != "budget_exceeded" {
		t.Fatalf("swarm over budget = %s", m.Raw)
	}
	if after := processesWith("sim:marker=after-budget"); len(after) != len(before) {
		t.Fatalf("an engine was spawned for a refused swarm: %v", after)
	}
	out, err := g.cli(t, "", "audit", "export", "--dev", "--data-dir", g.dataDir, "--tenant", "demo")
	if err != nil || !strings.Contains(out, `"action":"budget.denied"`) {
		t.Fatalf("no budget.denied audit record: %v", err)
	}
	// The CLI sets budgets too, validated alike; lifting the cap (0) lets swarms run again.
	if out, err := g.cli(t, "", "tenant", "budget", "--dev", "--data-dir", g.dataDir, "--id", "demo", "--usd-per-day", "-3"); err == nil || !strings.Contains(out, "budgetUsdPerDay") {
		t.Fatalf("tenant budget --usd-per-day -3 = %v: %s", err, out)
	}
	if out, err := g.cli(t, "", "tenant", "budget", "--dev", "--data-dir", g.dataDir, "--id", "demo", "--usd-per-day", "0"); err != nil || !strings.Contains(out, "USD none") {
		t.Fatalf("tenant budget --usd-per-day 0 = %v: %s", err, out)
	}
	// The gateway sees a change made by the CLI when it polls the tenant's change marker.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := c.Send(map[string]any{"type": "swarm", "objective": "free again sim:pace=0", "requestId": "free"}); err != nil {
			t.Fatal(err)
		}
		m := readUntil(t, c, 20*time.Second, func(m client.Message) bool { return m.RequestID == "free" })
		if m.Type == "task_created" {
			return
		}
		if m.Code != "budget_exceeded" || time.Now().After(deadline) {
			t.Fatalf("a swarm after the budget was lifted: %s", m.Raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Three replicas share a tenant's budget (DESIGN §18) through its day total in Redis: one
// long task on each, started together, all stop "budget exceeded" once the tenant crosses the
// budget between them, and what they spent together passes it by no more than what each
// replica's task reported in flight (the message that crossed and what the engine printed
// before it was stopped), not by a budget per replica. Then every replica refuses swarms.
func TestClusterSharesTenantBudget(t *testing.T) {
	gs, _ := startCluster(t, 3, nil)
	const budget = 400_000 // tokens: the sim's tasks read ~15,000 a message, this is ~9 each
	if status, body := gs[0].api(t, nil, "PATCH", "/v1/admin/tenants/demo", gs[0].AdminToken,
		fmt.Sprintf(`{"limits":{"tokensPerDay":%d}}`, budget)); status != 200 {
		t.Fatalf("PATCH budget = %d %s", status, body)
	}
	type outcome struct {
		end        client.Message
		maxMessage int64 // the most tokens one assistant message reported
	}
	results := make([]outcome, len(gs))
	conns := make([]*client.Conn, len(gs))
	ids := make([]string, len(gs))
	for i, g := range gs {
		conns[i] = g.dial(t, g.UserToken)
		ids[i] = startSwarm(t, conns[i], fmt.Sprintf("spend on %d sim:pace=20ms sim:events=2000", i), nil)
	}
	var wg sync.WaitGroup
	for i := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := map[string]bool{}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			for {
				m, err := conns[i].Read(ctx)
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
					return
				}
				if m.TaskID != ids[i] {
					continue
				}
				if m.Type == "assistant" {
					var a struct {
						Message struct {
							ID    string      `json:"id"`
							Usage engineUsage `json:"usage"`
						} `json:"message"`
					}
					if err := json.Unmarshal(m.Raw, &a); err == nil && !seen[a.Message.ID] {
						seen[a.Message.ID] = true
						results[i].maxMessage = max(results[i].maxMessage, a.Message.Usage.total())
					}
				}
				if m.Type == "task_complete" {
					results[i].end = m
					return
				}
			}
		}()
	}
	wg.Wait()
	var inFlight int64
	for i, r := range results {
		if r.end.Status != "failed" || r.end.Error != "budget exceeded" {
			t.Errorf("replica %d's task ended %s; want failed, budget exceeded", i, r.end.Raw)
		}
		inFlight += 2 * r.maxMessage
	}
	admin := gs[0].token(t, "demo", "ops-lead", "1h", "tenant:admin")
	status, body, _ := gs[1].do(t, http.MethodGet, "/v1/admin/usage?groupBy=task", admin, "")
	if status != http.StatusOK {
		t.Fatalf("GET usage = %d %s", status, body)
	}
	var u struct {
		Total usageFigures `json:"total"`
	}
	if err := json.Unmarshal([]byte(body), &u); err != nil {
		t.Fatal(err)
	}
	spent := u.Total.InputTokens + u.Total.OutputTokens + u.Total.CacheReadInputTokens + u.Total.CacheCreationInputTokens
	t.Logf("budget %d tokens; the three tasks spent %d (over by %d; largest messages %d, %d, %d)",
		budget, spent, spent-budget, results[0].maxMessage, results[1].maxMessage, results[2].maxMessage)
	if spent < budget || spent > budget+inFlight {
		t.Errorf("three replicas spent %d tokens against a budget of %d; want at most %d over (two messages a replica)", spent, budget, inFlight)
	}
	for i, c := range conns {
		if err := c.Send(map[string]any{"type": "swarm", "objective": "over sim:pace=0", "requestId": "over"}); err != nil {
			t.Fatal(err)
		}
		if m := readUntil(t, c, 20*time.Second, func(m client.Message) bool { return m.RequestID == "over" }); m.Code != "budget_exceeded" {
			t.Errorf("replica %d after the budget was spent: %s; want budget_exceeded", i, m.Raw)
		}
	}
}

// engineUsage is an assistant message's usage as the engine reports it.
type engineUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
}

func (u engineUsage) total() int64 {
	return u.InputTokens + u.OutputTokens + u.CacheReadInputTokens + u.CacheCreationInputTokens
}
