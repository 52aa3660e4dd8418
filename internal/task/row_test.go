package task

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/task/record"
)

// slowInsert holds every new task's row until gate is closed, as a busy database does.
type slowInsert struct {
	Store
	gate <-chan struct{}
}

func (s slowInsert) CreateTask(ctx context.Context, t record.Task) (record.Task, error) {
	select {
	case <-s.gate:
	case <-ctx.Done():
		return record.Task{}, ctx.Err()
	}
	return s.Store.CreateTask(ctx, t)
}

// reservations is what two replicas share through Redis here: the tasks holding a
// concurrency slot. Nothing is published. Any other call reaches the nil Cluster and panics,
// failing the test.
type reservations struct {
	Cluster
	asked chan string // every TaskReserved call's task id, when someone listens

	mu   sync.Mutex
	held map[string]bool
}

func (r *reservations) ReserveTask(_ context.Context, _, _, id string, _, _ int) (func(), error) {
	r.mu.Lock()
	r.held[id] = true
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.held, id)
		r.mu.Unlock()
	}, nil
}

func (r *reservations) TaskReserved(_ context.Context, _, id string) (bool, error) {
	select {
	case r.asked <- id:
	default:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held[id], nil
}

func (*reservations) Publish(*Task)                                  {}
func (*reservations) LastSeq(context.Context, string) (int64, error) { return 0, nil }

// TestReplicaWaitsForANewTasksRow: task_created goes out before the task's row is stored,
// in a cluster too, and another replica asked about the task in that window (the client
// subscribes there at once) waits for the row while the task holds its reservation. An id
// no replica holds is answered at once; a reserved task whose row never comes, after the
// persist timeout.
func TestReplicaWaitsForANewTasksRow(t *testing.T) {
	e := newEnv(t)
	res := &reservations{held: map[string]bool{}, asked: make(chan string, 1)}
	gate := make(chan struct{})
	a := newManager(t, e, `echo '{"type":"result","is_error":false,"result":"ok"}'`, func(o *Options) {
		o.Store = slowInsert{Store: e.db, gate: gate}
		o.Cluster = res
		o.Node = "node-a"
	})
	b := newManager(t, e, "exit 0", func(o *Options) {
		o.Cluster = res
		o.Node = "node-b"
		o.PersistTimeout = 300 * time.Millisecond
	})
	alice := principal("acme", "alice", auth.PermSwarmExecute)

	tk, err := a.Create(t.Context(), alice, request("row"), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.GetTask(t.Context(), "acme", tk.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the row was written on the reply path (err %v); want it written by run, after", err)
	}
	type answer struct {
		snap Snapshot
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		s, err := b.Status(context.Background(), alice, tk.ID)
		got <- answer{s, err}
	}()
	select {
	case <-res.asked: // node-b has seen the reservation and waits for the row
	case g := <-got:
		t.Fatalf("node-b answered before node-a stored the row: %+v, %v", g.snap, g.err)
	}
	close(gate)
	select {
	case g := <-got:
		if g.err != nil || g.snap.ID != tk.ID {
			t.Fatalf("node-b: status of a task being stored on node-a = %+v, %v", g.snap, g.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node-b still waiting after the row was stored")
	}
	select {
	case <-tk.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("task did not finish")
	}
	if s := tk.Snapshot().Status; s != "success" {
		t.Fatalf("status %s, want success", s)
	}

	res.asked = nil // no one listens from here on
	if _, err := b.Status(t.Context(), alice, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v, want not found", err)
	}
	res.mu.Lock()
	res.held["11111111-1111-4111-8111-111111111111"] = true
	res.mu.Unlock()
	if _, err := b.Status(t.Context(), alice, "11111111-1111-4111-8111-111111111111"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reserved id whose row never comes: %v, want not found after the persist timeout", err)
	}
}
