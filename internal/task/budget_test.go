package task

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/protocol"
)

// assistantLines prints 10 assistant messages of 1,000 input and 100 output tokens each, 50 ms
// apart, then a result: a task that crosses a budget of a few thousand tokens mid-stream.
const assistantLines = `i=0; while [ $i -lt 10 ]; do
echo '{"type":"assistant","message":{"id":"msg_'$i'","type":"message","role":"assistant","content":[{"type":"text","text":"step"}],"usage":{"input_tokens":1000,"output_tokens":100}}}'
i=$((i+1)); sleep 0.05; done
echo '{"type":"result","is_error":false,"result":"done","total_cost_usd":0.5,"usage":{"input_tokens":10000,"output_tokens":1000}}'`

func TestBudgets(t *testing.T) {
	tests := []struct {
		name      string
		budget    Budget
		wantFirst string // the first task's status
		wantNext  bool   // a second swarm is refused
	}{
		{"no budget", Budget{}, protocol.StatusSuccess, false},
		{"tokens crossed mid-stream", Budget{TokensPerDay: 2500}, protocol.StatusFailed, true},
		// 1,100 tokens a message ≈ $0.0045 at list prices: $0.01 is crossed at the third.
		{"dollars crossed mid-stream", Budget{USDPerDay: 0.01}, protocol.StatusFailed, true},
		{"room for the whole task", Budget{TokensPerDay: 12000, USDPerDay: 0.6}, protocol.StatusSuccess, false},
		{"a whole task spends it", Budget{USDPerDay: 0.4}, protocol.StatusSuccess, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			m := newManager(t, e, assistantLines, func(o *Options) { o.Spend = e.db })
			p := principal("acme", "alice")
			req := request("spend")
			req.Budget = tt.budget
			tk, err := m.Create(context.Background(), p, req, Meta{})
			if err != nil {
				t.Fatal(err)
			}
			r := newReader(false)
			r.run(t, m.Attach(tk, p, r))
			frames := r.wait(t)
			final := frames[len(frames)-1]
			if final["status"] != tt.wantFirst {
				t.Fatalf("first task ended %v", final)
			}
			if tt.wantFirst == protocol.StatusFailed {
				if final["error"] != "budget exceeded" {
					t.Fatalf("first task's error %v", final["error"])
				}
				if n := len(frames); n > 8 {
					t.Fatalf("the task went on for %d frames after crossing its budget", n)
				}
			}
			_, err = m.Create(context.Background(), p, req, Meta{})
			var be *BudgetError
			if got := errors.As(err, &be); got != tt.wantNext {
				t.Fatalf("second swarm: %v; want refused=%v", err, tt.wantNext)
			}
			// Another tenant's budget is its own.
			if tt.wantNext {
				if _, err := m.Create(context.Background(), principal("other", "bob"), request("x"), Meta{}); errors.As(err, &be) {
					t.Fatalf("another tenant refused: %v", err)
				}
			}
		})
	}
}

// memSpend is a SharedSpend in memory: what Redis is to replicas, for managers in one test.
type memSpend struct {
	mu   sync.Mutex
	days map[string]DaySpend
	fail bool
}

func (s *memSpend) AddSpend(_ context.Context, tenant string, day time.Time, add, base DaySpend) (DaySpend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return DaySpend{}, errors.New("shared total unreachable")
	}
	k := tenant + day.Format(time.DateOnly)
	cur, ok := s.days[k]
	if !ok {
		cur = base
	}
	cur.NanoUSD += add.NanoUSD
	cur.Tokens += add.Tokens
	s.days[k] = cur
	return cur, nil
}

// slowSpender prints 40 assistant messages of 100 tokens, 100 ms apart: on its own it never
// reaches a budget of 5,000 tokens.
const slowSpender = `i=0; while [ $i -lt 40 ]; do
echo '{"type":"assistant","message":{"id":"msg_'$i'","type":"message","role":"assistant","content":[{"type":"text","text":"step"}],"usage":{"input_tokens":100,"output_tokens":0}}}'
i=$((i+1)); sleep 0.1; done
echo '{"type":"result","is_error":false,"result":"done","usage":{"input_tokens":4000,"output_tokens":0}}'`

// Two replicas share a tenant's budget through the shared total: a task on A that crosses it
// stops, and so does B's running task, which on its own spends far less; then both refuse new
// swarms. Without the shared total B's task would run to its end (its replica learns of A's
// spend only from the store, on its next admission).
func TestSharedBudgetStopsTasksOnEveryReplica(t *testing.T) {
	e := newEnv(t)
	shared := &memSpend{days: map[string]DaySpend{}}
	withShared := func(o *Options) { o.Spend, o.SharedSpend = e.db, shared }
	a := newManager(t, e, assistantLines, withShared)
	b := newManager(t, e, slowSpender, withShared)
	p := principal("acme", "alice")
	req := request("spend")
	req.Budget = Budget{TokensPerDay: 5000}

	slow, err := b.Create(context.Background(), p, req, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	rb := newReader(false)
	rb.run(t, b.Attach(slow, p, rb))
	fast, err := a.Create(context.Background(), p, req, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	ra := newReader(false)
	ra.run(t, a.Attach(fast, p, ra))

	var reported int64 // the tokens both tasks reported, from their task_complete
	for name, frames := range map[string][]map[string]any{"A's": ra.wait(t), "B's": rb.wait(t)} {
		final := frames[len(frames)-1]
		if final["status"] != protocol.StatusFailed || final["error"] != "budget exceeded" {
			t.Errorf("%s task ended %v; want failed, budget exceeded", name, final)
		}
		u, _ := final["usage"].(map[string]any)
		for _, k := range []string{"inputTokens", "outputTokens"} {
			n, _ := u[k].(float64)
			reported += int64(n)
		}
	}
	if n := len(rb.frames); n > 30 {
		t.Errorf("B's task went on for %d frames after the tenant crossed its budget on A", n)
	}
	// Counted exactly, once: the shared total is what the two tasks reported. It passes the
	// budget by what they printed before their engines stopped: about one message each on an
	// idle machine (A's 1,100 tokens, B's 100), more when a loaded machine is slow to stop
	// them, so that is not asserted; a budget each would be 10,000.
	// The final figures reach the total behind task_complete (the book's flusher): wait.
	var total int64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		shared.mu.Lock()
		total = shared.days["acme"+time.Now().UTC().Format(time.DateOnly)].Tokens
		shared.mu.Unlock()
		if total == reported || time.Now().After(deadline) {
			break
		}
	}
	if total != reported || total < 5000 || total >= 2*5000 {
		t.Errorf("shared total %d tokens, the tasks reported %d; want them equal, at least the budget (5,000) and below two budgets", total, reported)
	}
	for name, m := range map[string]*Manager{"A": a, "B": b} {
		_, err := m.Create(context.Background(), p, req, Meta{})
		var be *BudgetError
		if !errors.As(err, &be) {
			t.Errorf("a swarm on %s after the budget was spent: %v; want a BudgetError", name, err)
		}
	}
}

// A replica that cannot reach the shared total refuses budgeted swarms (fail closed, as its
// concurrency slots do) and keeps counting its running tasks' spend locally, sending it once
// the total answers again.
func TestSharedBudgetUnreachable(t *testing.T) {
	e := newEnv(t)
	shared := &memSpend{days: map[string]DaySpend{}}
	m := newManager(t, e, assistantLines, func(o *Options) { o.Spend, o.SharedSpend = e.db, shared })
	p := principal("acme", "alice")
	req := request("spend")
	req.Budget = Budget{TokensPerDay: 1 << 40}
	tk, err := m.Create(context.Background(), p, req, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	shared.mu.Lock()
	shared.fail = true
	shared.mu.Unlock()
	if _, err := m.Create(context.Background(), p, req, Meta{}); err == nil {
		t.Fatal("a budgeted swarm was admitted without the shared total")
	}
	r := newReader(false)
	r.run(t, m.Attach(tk, p, r))
	r.wait(t)
	shared.mu.Lock()
	shared.fail = false
	shared.mu.Unlock()
	// The task's final figure (10,000 + 1,000 tokens) reaches the total once it answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		shared.mu.Lock()
		got := shared.days["acme"+time.Now().UTC().Format(time.DateOnly)].Tokens
		shared.mu.Unlock()
		if got == 11000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shared total %d tokens; want 11000 once it answers again", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
