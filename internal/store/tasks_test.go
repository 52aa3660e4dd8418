package store_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

func strp(s string) *string     { return &s }
func i64p(v int64) *int64       { return &v }
func tp(t time.Time) *time.Time { return &t }

func newTask(id, tenant, owner string) store.Task {
	return store.Task{
		ID: id, Tenant: tenant, Owner: owner, Objective: "write a haiku; rm -rf / is just text",
		Agents: 3, Strategy: "auto", Mode: "centralized", TimeoutSec: 60,
	}
}

func TestTaskLifecycle(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.OpenWithTenants(t, driver, "acme", "other")

		created, err := db.CreateTask(ctx, newTask("task-1", "acme", "alice"))
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if created.Status != store.TaskPending || created.CreatedAt.IsZero() {
			t.Fatalf("created = %+v", created)
		}
		if _, err := db.CreateTask(ctx, newTask("task-1", "acme", "alice")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate = %v, want ErrConflict", err)
		}
		if _, err := db.CreateTask(ctx, newTask("task-x", "nope", "alice")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown tenant = %v, want ErrNotFound", err)
		}
		if _, err := db.CreateTask(ctx, store.Task{ID: "t", Tenant: "acme", Status: "weird"}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("bad status = %v, want ErrInvalid", err)
		}

		got, err := db.GetTask(ctx, "acme", "task-1")
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if got.Objective != created.Objective || !got.CreatedAt.Equal(created.CreatedAt) || got.StartedAt != nil || got.ExitCode != nil {
			t.Fatalf("get = %+v, want %+v", got, created)
		}
		// Tenant scoping: another tenant cannot see, update or tell it exists.
		if _, err := db.GetTask(ctx, "other", "task-1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("cross-tenant get = %v, want ErrNotFound", err)
		}
		if _, err := db.UpdateTask(ctx, "other", "task-1", store.TaskUpdate{Status: store.TaskCancelled}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("cross-tenant update = %v, want ErrNotFound", err)
		}

		start := time.Now()
		running, err := db.UpdateTask(ctx, "acme", "task-1", store.TaskUpdate{
			Status: store.TaskRunning, StartedAt: &start, Node: strp("node-a"),
		})
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		if running.Status != store.TaskRunning || running.Node != "node-a" || !running.StartedAt.Equal(start.Truncate(time.Microsecond)) {
			t.Fatalf("running = %+v", running)
		}
		if _, err := db.UpdateTask(ctx, "acme", "task-1", store.TaskUpdate{LastSeq: i64p(17)}); err != nil {
			t.Fatalf("progress: %v", err)
		}

		end := start.Add(1500 * time.Millisecond)
		longSummary := strings.Repeat("é", store.MaxResultSummaryBytes) // 2 bytes per rune
		done, err := db.UpdateTask(ctx, "acme", "task-1", store.TaskUpdate{
			Status: store.TaskFailed, EndedAt: &end, ExitCode: intp(2),
			ResultSummary: &longSummary, Error: strp("exit status 2"), LastSeq: i64p(42),
		})
		if err != nil {
			t.Fatalf("finish: %v", err)
		}
		if done.Status != store.TaskFailed || done.ExitCode == nil || *done.ExitCode != 2 || done.LastSeq != 42 ||
			done.Error != "exit status 2" || done.Node != "node-a" || !done.StartedAt.Equal(running.StartedAt.UTC()) ||
			!done.EndedAt.Equal(end.Truncate(time.Microsecond)) {
			t.Fatalf("done = %+v", done)
		}
		if len(done.ResultSummary) > store.MaxResultSummaryBytes || !utf8.ValidString(done.ResultSummary) || len(done.ResultSummary) < store.MaxResultSummaryBytes-1 {
			t.Fatalf("summary of %d bytes, valid=%v", len(done.ResultSummary), utf8.ValidString(done.ResultSummary))
		}
		// A final status is never overwritten.
		if _, err := db.UpdateTask(ctx, "acme", "task-1", store.TaskUpdate{Status: store.TaskSuccess}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("update after end = %v, want ErrConflict", err)
		}
		if _, err := db.UpdateTask(ctx, "acme", "nope", store.TaskUpdate{Status: store.TaskSuccess}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("update missing = %v, want ErrNotFound", err)
		}
		if _, err := db.UpdateTask(ctx, "acme", "task-1", store.TaskUpdate{Status: "bogus"}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("update bad status = %v, want ErrInvalid", err)
		}
		final, err := db.GetTask(ctx, "acme", "task-1")
		if err != nil || final.Status != store.TaskFailed || final.LastSeq != 42 {
			t.Fatalf("final = %+v, %v", final, err)
		}
	})
}

func TestListTasks(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.OpenWithTenants(t, driver, "acme", "other")
		base := time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)
		// 10 tasks of acme alternating alice/bob, one second apart, plus two with the same time.
		for i := range 10 {
			tk := newTask(fmt.Sprintf("a%02d", i), "acme", []string{"alice", "bob"}[i%2])
			tk.CreatedAt = base.Add(time.Duration(i) * time.Second)
			if i == 9 {
				tk.Status = store.TaskRunning
			}
			if _, err := db.CreateTask(ctx, tk); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range []string{"tie-1", "tie-2"} {
			tk := newTask(id, "acme", "carol")
			tk.CreatedAt = base.Add(time.Hour)
			if _, err := db.CreateTask(ctx, tk); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.CreateTask(ctx, newTask("o1", "other", "alice")); err != nil {
			t.Fatal(err)
		}

		ids := func(ts []store.Task) string {
			var s []string
			for _, tk := range ts {
				s = append(s, tk.ID)
			}
			return strings.Join(s, ",")
		}
		tests := []struct {
			name string
			f    store.TaskFilter
			want string
		}{
			{"owner newest first", store.TaskFilter{Tenant: "acme", Owner: "alice"}, "a08,a06,a04,a02,a00"},
			{"limit", store.TaskFilter{Tenant: "acme", Owner: "bob", Limit: 2}, "a09,a07"},
			{"before", store.TaskFilter{Tenant: "acme", Owner: "bob", Before: base.Add(7 * time.Second)}, "a05,a03,a01"},
			{"status", store.TaskFilter{Tenant: "acme", Status: store.TaskRunning}, "a09"},
			{"tenant scope", store.TaskFilter{Tenant: "other"}, "o1"},
			{"ties by id", store.TaskFilter{Tenant: "acme", Limit: 3}, "tie-2,tie-1,a09"},
			{"tie cursor", store.TaskFilter{Tenant: "acme", Limit: 2, Before: base.Add(time.Hour), BeforeID: "tie-2"}, "tie-1,a09"},
			{"all tenants", store.TaskFilter{Owner: "alice", Limit: 2}, "o1,a08"},
		}
		for _, tc := range tests {
			got, err := db.ListTasks(ctx, tc.f)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if ids(got) != tc.want {
				t.Errorf("%s: got %s, want %s", tc.name, ids(got), tc.want)
			}
		}
		all, err := db.ListTasks(ctx, store.TaskFilter{Limit: 100000})
		if err != nil || len(all) != 13 {
			t.Fatalf("huge limit: %d tasks, %v", len(all), err)
		}
	})
}

func TestTimesRoundTripUTC(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.Open(t, driver)
		zone := time.FixedZone("UTC-7", -7*3600)
		created := time.Date(2026, 7, 8, 23, 59, 58, 123456789, zone)
		storetest.CreateTenant(t, db, "acme")
		ten, err := db.CreateTenant(ctx, store.Tenant{ID: "zoned", CreatedAt: created, UpdatedAt: created})
		if err != nil {
			t.Fatal(err)
		}
		want := created.UTC().Truncate(time.Microsecond)
		got, err := db.GetTenant(ctx, "zoned")
		if err != nil {
			t.Fatal(err)
		}
		for _, tm := range []time.Time{ten.CreatedAt, got.CreatedAt, got.UpdatedAt} {
			if !tm.Equal(want) || tm.Location() != time.UTC || tm != want {
				t.Errorf("time = %v (%v), want %v in UTC", tm, tm.Location(), want)
			}
		}

		tk := newTask("t1", "acme", "alice")
		tk.CreatedAt = created
		tk.StartedAt = tp(created.Add(time.Millisecond))
		if _, err := db.CreateTask(ctx, tk); err != nil {
			t.Fatal(err)
		}
		gt, err := db.GetTask(ctx, "acme", "t1")
		if err != nil {
			t.Fatal(err)
		}
		if gt.CreatedAt != want || *gt.StartedAt != want.Add(time.Millisecond) || gt.EndedAt != nil {
			t.Fatalf("task times = %v %v %v", gt.CreatedAt, gt.StartedAt, gt.EndedAt)
		}
		// Ordering across the midnight/zone boundary holds (TEXT comparison on SQLite).
		tk2 := newTask("t2", "acme", "alice")
		tk2.CreatedAt = time.Date(2026, 7, 9, 1, 0, 0, 0, time.UTC) // earlier than t1 (06:59:58Z)
		if _, err := db.CreateTask(ctx, tk2); err != nil {
			t.Fatal(err)
		}
		list, err := db.ListTasks(ctx, store.TaskFilter{Tenant: "acme"})
		if err != nil || len(list) != 2 || list[0].ID != "t1" {
			t.Fatalf("order = %+v, %v; want t1 first", list, err)
		}
	})
}
