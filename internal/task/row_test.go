package task

import (
	"context"
	"errors"
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

// oneNodeCluster grants every reservation and publishes nowhere: what Create asks of a
// cluster. Any other call reaches the nil Cluster and panics, failing the test.
type oneNodeCluster struct{ Cluster }

func (oneNodeCluster) ReserveTask(context.Context, string, string, string, int, int) (func(), error) {
	return func() {}, nil
}
func (oneNodeCluster) Publish(*Task) {}

// TestClusterTaskRowBeforeTaskCreated: in a cluster the task's row is in the store when
// Create returns (when task_created goes out), however slow the insert, because another
// replica finds a task only through its row and a client may subscribe there at once. On
// one node the row stays off the reply path: Create returns while the insert is held, and
// the task is found in memory.
func TestClusterTaskRowBeforeTaskCreated(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cluster Cluster
		wantRow bool
	}{
		{"cluster", oneNodeCluster{}, true},
		{"one node", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			gate := make(chan struct{})
			if tt.wantRow {
				// Create waits for the insert: let it through after a while, so an insert
				// left to run would still be pending when Create returned.
				time.AfterFunc(300*time.Millisecond, func() { close(gate) })
			}
			m := newManager(t, e, `echo '{"type":"result","is_error":false,"result":"ok"}'`, func(o *Options) {
				o.Store = slowInsert{Store: e.db, gate: gate}
				o.Cluster = tt.cluster
			})
			tk, err := m.Create(t.Context(), principal("acme", "alice", auth.PermSwarmExecute), request("row"), Meta{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.db.GetTask(t.Context(), "acme", tk.ID)
			if !tt.wantRow {
				close(gate)
			}
			switch {
			case tt.wantRow && err != nil:
				t.Fatalf("task_created before the task's row was stored: %v", err)
			case !tt.wantRow && !errors.Is(err, store.ErrNotFound):
				t.Fatalf("one node: the row was written on the reply path (err %v); want it written by run, after", err)
			}
			select {
			case <-tk.Done():
			case <-time.After(30 * time.Second):
				t.Fatal("task did not finish")
			}
			if s := tk.Snapshot().Status; s != "success" {
				t.Fatalf("status %s, want success", s)
			}
		})
	}
}
