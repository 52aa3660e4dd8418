package task

import (
	"context"
	"errors"
	"testing"

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
