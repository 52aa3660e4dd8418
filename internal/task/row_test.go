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

// slowInsert delays every new task's row, as a busy database does.
type slowInsert struct {
	Store
	delay time.Duration
}

func (s slowInsert) CreateTask(ctx context.Context, t record.Task) (record.Task, error) {
	time.Sleep(s.delay)
	return s.Store.CreateTask(ctx, t)
}

// oneNodeCluster is a cluster of one replica: it grants every reservation and has nothing
// to mirror. Enough for what Create asks of a cluster.
type oneNodeCluster struct{}

var _ Cluster = oneNodeCluster{}

func (oneNodeCluster) ReserveTask(context.Context, string, string, string, int, int) (func(), error) {
	return func() {}, nil
}
func (oneNodeCluster) Publish(*Task) {}
func (oneNodeCluster) Follow(context.Context, string, int64, func(int64, []byte)) error {
	return errors.New("not in this test")
}
func (oneNodeCluster) Cancel(context.Context, string, string) error { return nil }
func (oneNodeCluster) Hold(context.Context, string, string) error   { return nil }
func (oneNodeCluster) LastSeq(context.Context, string) (int64, error) {
	return 0, nil
}

// TestClusterTaskRowBeforeTaskCreated: in a cluster the task's row is in the store when
// Create returns (when task_created goes out), however slow the insert, because another
// replica finds a task only through its row and a client may subscribe there at once. On
// one node the row stays off the reply path: there the task is found in memory.
func TestClusterTaskRowBeforeTaskCreated(t *testing.T) {
	const delay = 300 * time.Millisecond
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
			m := newManager(t, e, `echo '{"type":"result","is_error":false,"result":"ok"}'`, func(o *Options) {
				o.Store = slowInsert{Store: e.db, delay: delay}
				o.Cluster = tt.cluster
			})
			tk, err := m.Create(t.Context(), principal("acme", "alice", auth.PermSwarmExecute), request("row"), Meta{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.db.GetTask(t.Context(), "acme", tk.ID)
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
