package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

// Many task writes at once: on SQLite they share transactions (group commit); a failing write
// (duplicate id, unknown tenant) is undone alone, and every other write of its group lands.
func TestConcurrentTaskWrites(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.OpenWithTenants(t, driver, "acme")
		const n = 300
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tk := newTask(fmt.Sprintf("t-%d", i), "acme", "alice")
				switch {
				case i%50 == 7:
					tk.ID = "dup" // many writers race for one id: exactly one wins
				case i%50 == 9:
					tk.Tenant = "nope"
				}
				if _, errs[i] = db.CreateTask(ctx, tk); errs[i] != nil {
					return
				}
				_, errs[i] = db.UpdateTask(ctx, "acme", tk.ID, store.TaskUpdate{Status: store.TaskRunning, StartedAt: tp(time.Now())})
			}()
		}
		wg.Wait()
		dupWins := 0
		for i, err := range errs {
			switch {
			case i%50 == 7 && err == nil:
				dupWins++
			case i%50 == 7 && !errors.Is(err, store.ErrConflict):
				t.Errorf("writer %d of the duplicate id: %v, want ErrConflict", i, err)
			case i%50 == 9 && !errors.Is(err, store.ErrNotFound):
				t.Errorf("writer %d for an unknown tenant: %v, want ErrNotFound", i, err)
			case i%50 != 7 && i%50 != 9 && err != nil:
				t.Errorf("writer %d: %v", i, err)
			}
		}
		if dupWins != 1 {
			t.Errorf("%d writers created the duplicate id; want 1", dupWins)
		}
		running, err := db.ListTasks(ctx, store.TaskFilter{Tenant: "acme", Status: store.TaskRunning, Limit: store.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		if want := n - 2*(n/50) + 1; len(running) != want {
			t.Errorf("%d running tasks stored; want %d", len(running), want)
		}
	})
}

// A write whose context has ended before its turn is not made.
func TestWriteWithEndedContextIsNotMade(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		db := storetest.OpenWithTenants(t, driver, "acme")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := db.CreateTask(ctx, newTask("late", "acme", "alice")); !errors.Is(err, context.Canceled) {
			t.Fatalf("create with a cancelled context: %v", err)
		}
		if _, err := db.GetTask(t.Context(), "acme", "late"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the cancelled write was made: %v", err)
		}
	})
}

// Writes after Close fail instead of hanging.
func TestWriteAfterClose(t *testing.T) {
	t.Parallel()
	cfg := storetest.Config(t, store.DriverSQLite)
	db, err := store.Open(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := db.CreateTask(context.Background(), newTask("after", "acme", "alice"))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a write after Close succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write after Close hangs")
	}
}
