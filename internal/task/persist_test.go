package task

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/task/record"
)

// lines prints n engine lines of about 100 bytes and a result.
const lines = `i=0; while [ $i -lt $N ]; do echo "{\"type\":\"assistant\",\"line\":$i,\"pad\":\"0123456789012345678901234567890123456789\"}"; i=$((i+1)); done
echo '{"type":"result","is_error":false,"result":"done"}'`

func linesScript(n int) string { return "N=" + strconv.Itoa(n) + "; " + lines }

// subscribeAll subscribes afresh with afterSeq and returns every frame until the
// subscription finishes.
func subscribeAll(t *testing.T, m *Manager, id string, afterSeq int64) []map[string]any {
	t.Helper()
	r := newReader(false)
	s, err := m.Subscribe(context.Background(), principal("acme", "alice"), id, afterSeq, r)
	if err != nil {
		t.Fatal(err)
	}
	r.run(t, s)
	got := r.wait(t)
	s.Close()
	return got
}

// A finished task that left memory is replayed from the event log across pages and
// batches: exactly the events after the resume point, byte for byte what the live
// subscriber saw, then nothing for a resume point at or past the end.
func TestReplayFromEventLog(t *testing.T) {
	e := newEnv(t)
	m := newManager(t, e, linesScript(2500), func(o *Options) { o.Retention = time.Millisecond })
	p := principal("acme", "alice")
	live := run(t, m, p, "ok")
	id := live[0]["taskId"].(string)
	n := int64(len(live))
	if n < 2500 {
		t.Fatalf("live subscriber got %d frames", n)
	}
	time.Sleep(2 * time.Millisecond)
	settle(t, m)
	if _, ok := m.Get(p, id); ok {
		t.Fatal("task still in memory")
	}
	if seq, err := e.db.LastEventSeq(context.Background(), id); err != nil || seq != n {
		t.Fatalf("event log holds up to seq %d (%v), want %d", seq, err, n)
	}
	for _, tt := range []struct {
		name  string
		after int64
		want  []map[string]any
	}{
		{"from the start", 0, live},
		{"mid-stream", 1234, live[1234:]},
		{"across a page boundary", 999, live[999:]},
		{"just before the end", n - 1, live[n-1:]},
		{"at the end", n, nil},
		{"beyond the end", n + 1000, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := subscribeAll(t, m, id, tt.after)
			if len(got) != len(tt.want) || (len(got) > 0 && !reflect.DeepEqual(got, tt.want)) {
				t.Fatalf("afterSeq %d: got %d frames, want %d", tt.after, len(got), len(tt.want))
			}
		})
	}
	snap, err := m.Status(context.Background(), p, id)
	if err != nil || snap.LastSeq != n || snap.Status != protocol.StatusSuccess {
		t.Fatalf("status = %+v, %v", snap, err)
	}
}

// A task a crash left running ends interrupted after its last persisted event: a client
// resuming where it stopped gets the events it missed once, then task_complete with the
// next seq; status agrees.
func TestResumeAcrossInterruption(t *testing.T) {
	e := newEnv(t)
	// 400 lines, then the engine hangs: the "crash" happens mid-stream.
	before := newManager(t, e, "N=400; i=0; while [ $i -lt $N ]; do echo \"{\\\"type\\\":\\\"assistant\\\",\\\"line\\\":$i}\"; i=$((i+1)); done; sleep 60", nil)
	p := principal("acme", "alice")
	tk, err := before.Create(context.Background(), p, request("ok"), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var persisted int64
	for persisted < 400 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		persisted, _ = e.db.LastEventSeq(context.Background(), tk.ID)
	}
	if persisted < 400 {
		t.Fatalf("only %d events persisted", persisted)
	}
	// What the next process does at start.
	ended, err := e.db.InterruptTasks(context.Background(), "", "interrupted: server stopped before the task ended", InterruptedFrame)
	if err != nil || len(ended) != 1 || ended[0].LastSeq != persisted+1 {
		t.Fatalf("InterruptTasks = %+v, %v (persisted %d)", ended, err, persisted)
	}
	after := newManager(t, e, script, nil)
	got := subscribeAll(t, after, tk.ID, persisted-10)
	if len(got) != 11 {
		t.Fatalf("resume got %d frames, want 11", len(got))
	}
	for i, f := range got {
		if f["seq"] != float64(persisted-9+int64(i)) {
			t.Fatalf("frame %d has seq %v", i, f["seq"])
		}
	}
	final := got[10]
	if final["type"] != "task_complete" || final["status"] != "interrupted" || final["seq"] != float64(persisted+1) {
		t.Fatalf("final frame %v", final)
	}
	snap, err := after.Status(context.Background(), p, tk.ID)
	if err != nil || snap.Status != protocol.StatusInterrupted || snap.LastSeq != persisted+1 {
		t.Fatalf("status = %+v, %v", snap, err)
	}
}

// slowLog is an event log whose writes wait until released: a stalled disk.
type slowLog struct {
	EventLog
	mu      sync.Mutex
	release chan struct{}
	calls   int
}

func (s *slowLog) AppendEvents(ctx context.Context, evs []record.Event) error {
	s.mu.Lock()
	s.calls++
	rel := s.release
	s.mu.Unlock()
	select {
	case <-rel:
		return s.EventLog.AppendEvents(ctx, evs)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A stalled store never holds the live stream: subscribers get every event at once; the
// finished task stays in memory until its events are written; past the backlog bound new
// swarms are refused, and accepted again once the store catches up.
func TestStalledEventLogDoesNotStallTheStream(t *testing.T) {
	e := newEnv(t)
	slow := &slowLog{EventLog: e.db, release: make(chan struct{})}
	m := newManager(t, e, linesScript(300), func(o *Options) {
		o.Events = slow
		o.EventBacklogMax = 16 << 10
		o.Retention = time.Millisecond
		o.PersistTimeout = 200 * time.Millisecond
	})
	p := principal("acme", "alice")
	start := time.Now()
	live := run(t, m, p, "ok")
	t.Logf("300 lines streamed in %v with the event log stalled", time.Since(start))
	id := live[0]["taskId"].(string)
	if last := live[len(live)-1]; last["type"] != "task_complete" || last["status"] != "success" {
		t.Fatalf("last frame %v", last)
	}
	time.Sleep(5 * time.Millisecond)
	m.Sweep()
	if _, ok := m.Get(p, id); !ok {
		t.Fatal("a task whose events are not written left memory")
	}
	if _, err := m.Create(context.Background(), p, request("ok"), Meta{}); !errors.Is(err, ErrEventLogBehind) {
		t.Fatalf("Create with a %d-byte backlog = %v, want ErrEventLogBehind", m.events.backlog(), err)
	}
	close(slow.release)
	settle(t, m)
	if _, ok := m.Get(p, id); ok {
		t.Fatal("task still in memory after its events were written")
	}
	if got := subscribeAll(t, m, id, 0); !reflect.DeepEqual(got, live) {
		t.Fatalf("replay after the stall differs: %d frames, want %d", len(got), len(live))
	}
	run(t, m, p, "ok") // accepted again
}

// refusingLog is a store that will never take the events of the first task it is sent (as
// it refuses a frame past its bound).
type refusingLog struct {
	EventLog
	mu     sync.Mutex
	refuse string
}

func (r *refusingLog) AppendEvents(ctx context.Context, evs []record.Event) error {
	r.mu.Lock()
	if r.refuse == "" && len(evs) > 0 {
		r.refuse = evs[0].TaskID
	}
	refuse := r.refuse
	r.mu.Unlock()
	for _, e := range evs {
		if e.TaskID == refuse {
			return fmt.Errorf("frame too big: %w", record.ErrInvalidEvent)
		}
	}
	return r.EventLog.AppendEvents(ctx, evs)
}

// A run the store refuses for good is dropped from the log alone: it does not stop every
// other task's events behind it, and its task still leaves memory.
func TestRefusedEventsDoNotStallTheLog(t *testing.T) {
	e := newEnv(t)
	log := &refusingLog{EventLog: e.db}
	m := newManager(t, e, linesScript(50), func(o *Options) { o.Events = log; o.Retention = time.Millisecond })
	p := principal("acme", "alice")
	var tasks []*Task
	for _, obj := range []string{"one", "two"} {
		tk, err := m.Create(context.Background(), p, request(obj), Meta{})
		if err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, tk)
	}
	for _, tk := range tasks {
		<-tk.Done()
	}
	time.Sleep(2 * time.Millisecond)
	settle(t, m) // fails unless both tasks' logs were settled, the refused one included
	for _, tk := range tasks {
		snap, err := m.Status(context.Background(), p, tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		seq, err := e.db.LastEventSeq(context.Background(), tk.ID)
		switch {
		case err != nil:
			t.Fatal(err)
		case tk.ID == log.refuse && seq != 0:
			t.Fatalf("the refused task's events were stored up to %d", seq)
		case tk.ID != log.refuse && seq != snap.LastSeq:
			t.Fatalf("the other task's log holds up to %d; want %d", seq, snap.LastSeq)
		}
	}
}
