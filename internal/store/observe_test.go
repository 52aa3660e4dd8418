package store_test

import (
	"database/sql"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
	"github.com/flowgate/flowgate/internal/task/record"
)

type observation struct {
	op     string
	d      time.Duration
	failed bool
}

// opLog is a store.Observer that keeps what it is told.
type opLog struct {
	mu  sync.Mutex
	obs []observation
}

func (l *opLog) Observe(op string, d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.obs = append(l.obs, observation{op, d, err != nil})
}

// take returns what was observed since the last take.
func (l *opLog) take() []observation {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.obs
	l.obs = nil
	return out
}

// Each store operation is reported once under its name; only the database's own failures
// count as failures, not the outcomes callers branch on.
func TestObserver(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.Open(t, driver)
		l := &opLog{}
		db.SetObserver(l)
		expect := func(what string, want ...observation) {
			t.Helper()
			got := l.take()
			if len(got) != len(want) {
				t.Fatalf("%s: observed %+v, want %+v", what, got, want)
			}
			for i, o := range got {
				if o.op != want[i].op || o.failed != want[i].failed || o.d <= 0 {
					t.Fatalf("%s: observed %+v, want %+v", what, got, want)
				}
			}
		}
		ok := func(op string) observation { return observation{op: op} }

		if err := db.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		expect("ping", ok(store.OpPing))

		if _, err := db.CreateTenant(ctx, store.Tenant{ID: "acme"}); err != nil {
			t.Fatal(err)
		}
		expect("create tenant", ok(store.OpExec))
		if _, err := db.CreateTenant(ctx, store.Tenant{ID: "acme"}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate tenant: %v", err)
		}
		expect("duplicate tenant (a conflict, not a failure)", ok(store.OpExec))
		if _, err := db.GetTenant(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing tenant: %v", err)
		}
		expect("missing tenant (not found, not a failure)", ok(store.OpQuery))

		if _, err := db.CreateTask(ctx, newTask("t1", "acme", "alice")); err != nil {
			t.Fatal(err)
		}
		expect("create task", ok(store.OpTaskWrite))
		if _, err := db.UpdateTask(ctx, "acme", "t1", store.TaskUpdate{Status: store.TaskRunning}); err != nil {
			t.Fatal(err)
		}
		expect("update task", ok(store.OpTaskWrite))
		if _, err := db.ListTasks(ctx, store.TaskFilter{Tenant: "acme"}); err != nil {
			t.Fatal(err)
		}
		expect("list tasks", ok(store.OpQuery))

		if err := db.AppendEvents(ctx, []record.Event{{TaskID: "t1", Seq: 1, Frame: []byte(`{"seq":1}`)}}); err != nil {
			t.Fatal(err)
		}
		expect("append events", ok(store.OpAppendEvents))
		if err := db.AppendAudit(ctx, []string{"acme"}, func(map[string]audit.Head) ([]audit.StoredRecord, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
		expect("append audit", ok(store.OpAppendAudit))

		// A statement the database refuses is a failure of the transaction.
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO no_such_table VALUES (1)")
			return err
		})
		if err == nil {
			t.Fatal("insert into a missing table succeeded")
		}
		expect("failed transaction", observation{op: store.OpTx, failed: true})

		db.SetObserver(nil)
		if err := db.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		expect("no observer")
	})
}

func TestOpsListed(t *testing.T) {
	ops := store.Ops()
	for _, op := range []string{store.OpQuery, store.OpExec, store.OpTx, store.OpTaskWrite, store.OpAppendEvents, store.OpAppendAudit, store.OpPing} {
		if !slices.Contains(ops, op) {
			t.Errorf("Ops() lacks %q", op)
		}
	}
}
