package task_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/audit/audittest"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/executor"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
	"github.com/flowgate/flowgate/internal/task"
)

// BenchmarkForward is an engine line's path through the task: frame it (seq, taskId,
// serverTime spliced in), append it to the log, wake the subscribers, and each subscriber
// pulling it as a session writer does (Pending/Advance), without the socket. One op is one
// event; BenchmarkEngineFrame covers the framing alone.
func BenchmarkForward(b *testing.B) {
	for _, subs := range []int{1, 10} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			benchForward(b, subs)
		})
	}
}

// lineRunner stands in for the executor: it replays one stdout line n times once started.
type lineRunner struct {
	line  []byte
	n     int
	start chan struct{}
}

func (r *lineRunner) Run(ctx context.Context, spec executor.Spec, out executor.Output) (executor.Result, error) {
	<-r.start
	for range r.n {
		out.Stdout(r.line, false)
	}
	return executor.Result{ExitCode: 0}, nil
}

type staticKey struct{}

func (staticKey) Key(context.Context, string, string) (secrets.Key, error) {
	return secrets.Key{Value: "sk-ant-bench-0123456789", Version: "v1", Fingerprint: "sha256:000000000000"}, nil
}

// drainer is a subscriber that pulls frames as fast as they come.
type drainer struct {
	wake   chan struct{}
	frames atomic.Int64
	bytes  atomic.Int64
}

func (d *drainer) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}
func (d *drainer) SlowConsumer() {}

func (d *drainer) drain(s *task.Subscription, done chan<- struct{}) {
	defer close(done)
	var frames [][]byte
	for {
		var last, end int64
		frames, last, end = s.Pending(frames[:0], 128, 256<<10)
		if len(frames) > 0 {
			n := int64(0)
			for _, f := range frames {
				n += int64(len(f))
			}
			d.frames.Add(int64(len(frames)))
			d.bytes.Add(n)
			s.Advance(last, end)
			continue
		}
		if s.Finished() {
			return
		}
		<-d.wake
	}
}

func benchForward(b *testing.B, subs int) {
	ctx := context.Background()
	db := storetest.Open(b, store.DriverSQLite)
	if _, err := db.CreateTenant(ctx, store.Tenant{ID: "acme", Name: "acme", Status: "active"}); err != nil {
		b.Fatal(err)
	}
	rec := audittest.NewRecorder(b, audittest.NewMemory(), audit.Options{SigningKey: audittest.NewKey(b)})
	runner := &lineRunner{
		line:  []byte(`{"type":"assistant","message":{"id":"msg_sim_40ef7664f1e01649","type":"message","role":"assistant","model":"flowgate-sim","content":[{"type":"text","text":"coordinator agent-1: simulated plan for the objective"}]},"parent_tool_use_id":null,"session_id":"sim-458409fc16a45d6a","agentId":"agent-1","emittedAtNs":1795647266967519971}`),
		n:     b.N,
		start: make(chan struct{}),
	}
	opts := task.Options{Runner: runner, Keys: staticKey{}, Store: db, Audit: rec,
		MaxLogEvents: b.N + 10, MaxLogBytes: int64(b.N+10) * 1024}
	task.BoundLikeDefaults(&opts)
	m, err := task.NewManager(opts)
	if err != nil {
		b.Fatal(err)
	}
	p := &auth.Principal{Tenant: "acme", Subject: "bench", Permissions: []string{auth.PermSwarmExecute}, ExpiresAt: time.Now().Add(time.Hour)}
	t, err := m.Create(ctx, p, task.Request{Objective: "bench", Engine: engine.Request{Objective: "bench", Agents: 1, Timeout: time.Hour}}, task.Meta{})
	if err != nil {
		b.Fatal(err)
	}
	ds := make([]*drainer, subs)
	done := make([]chan struct{}, subs)
	for i := range ds {
		ds[i] = &drainer{wake: make(chan struct{}, 1)}
		done[i] = make(chan struct{})
		s := m.Attach(t, p, ds[i])
		defer s.Close()
		go ds[i].drain(s, done[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	close(runner.start)
	for _, d := range done {
		<-d
	}
	b.StopTimer()
	<-t.Done()
	if st := t.Snapshot(); st.Status != protocol.StatusSuccess || ds[0].frames.Load() != int64(b.N)+1 { // + task_complete
		b.Fatalf("status %s, %d frames for %d events", st.Status, ds[0].frames.Load(), b.N)
	}
	b.SetBytes(ds[0].bytes.Load() / int64(b.N+1))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
