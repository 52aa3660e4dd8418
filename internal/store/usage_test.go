package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
	"github.com/flowgate/flowgate/internal/task/record"
)

func TestUsageSummary(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.OpenWithTenants(t, driver, "acme", "other")
		day1 := time.Date(2026, 12, 6, 23, 59, 0, 0, time.UTC)
		day2 := time.Date(2026, 12, 7, 0, 1, 0, 0, time.UTC)
		for _, tk := range []struct {
			id, tenant, owner string
			ended             *time.Time
			usage             *record.Usage
		}{
			{"t1", "acme", "alice", &day1, &record.Usage{InputTokens: 10, OutputTokens: 5, CostUSD: 0.25, NumTurns: 1}},
			{"t2", "acme", "bob", &day2, &record.Usage{InputTokens: 7, OutputTokens: 3, CacheReadInputTokens: 2, CostUSD: 0.5, NumTurns: 2}},
			{"t3", "acme", "alice", &day2, nil},                              // failed before the engine reported anything
			{"t4", "acme", "alice", nil, &record.Usage{InputTokens: 1000}},   // still running: not counted
			{"t5", "other", "alice", &day2, &record.Usage{InputTokens: 999}}, // another tenant
		} {
			task := newTask(tk.id, tk.tenant, tk.owner)
			task.Usage = tk.usage
			if tk.ended != nil {
				task.Status, task.EndedAt = store.TaskSuccess, tk.ended
			} else {
				task.Status = store.TaskRunning
			}
			if _, err := db.CreateTask(ctx, task); err != nil {
				t.Fatal(err)
			}
		}
		from, to := day1.Add(-time.Hour), day2.Add(time.Hour)
		tests := []struct {
			by   string
			want []record.UsageRow
		}{
			{record.UsageByDay, []record.UsageRow{
				{Key: "2026-12-06", Tasks: 1, Usage: record.Usage{InputTokens: 10, OutputTokens: 5, CostUSD: 0.25, NumTurns: 1}},
				{Key: "2026-12-07", Tasks: 2, Usage: record.Usage{InputTokens: 7, OutputTokens: 3, CacheReadInputTokens: 2, CostUSD: 0.5, NumTurns: 2}},
			}},
			{record.UsageByUser, []record.UsageRow{
				{Key: "alice", Tasks: 2, Usage: record.Usage{InputTokens: 10, OutputTokens: 5, CostUSD: 0.25, NumTurns: 1}},
				{Key: "bob", Tasks: 1, Usage: record.Usage{InputTokens: 7, OutputTokens: 3, CacheReadInputTokens: 2, CostUSD: 0.5, NumTurns: 2}},
			}},
			{record.UsageByTask, []record.UsageRow{
				{Key: "t1", Tasks: 1, Usage: record.Usage{InputTokens: 10, OutputTokens: 5, CostUSD: 0.25, NumTurns: 1}},
				{Key: "t2", Tasks: 1, Usage: record.Usage{InputTokens: 7, OutputTokens: 3, CacheReadInputTokens: 2, CostUSD: 0.5, NumTurns: 2}},
				{Key: "t3", Tasks: 1},
			}},
		}
		for _, tt := range tests {
			got, err := db.UsageSummary(ctx, record.UsageFilter{Tenant: "acme", From: from, To: to, GroupBy: tt.by})
			if err != nil {
				t.Fatalf("%s: %v", tt.by, err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%s: got %+v; want %+v", tt.by, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("%s row %d: got %+v; want %+v", tt.by, i, got[i], tt.want[i])
				}
			}
		}
		// What budgets read: t1 and t2 reported dollars, t3 nothing, t4 is running, t5 is another
		// tenant's.
		sp, err := db.TenantSpend(ctx, "acme", day1.Add(-time.Hour))
		want := record.Spend{CostUSD: 0.75, Tokens: 27}
		if err != nil || sp != want {
			t.Fatalf("TenantSpend = %+v, %v; want %+v", sp, err, want)
		}
		if sp, err := db.TenantSpend(ctx, "acme", day2); err != nil || sp.Tokens != 12 {
			t.Fatalf("TenantSpend since day2 = %+v, %v", sp, err)
		}
		// The range is [from, to): a task that ended at to is outside.
		got, err := db.UsageSummary(ctx, record.UsageFilter{Tenant: "acme", From: from, To: day2, GroupBy: record.UsageByDay})
		if err != nil || len(got) != 1 || got[0].Key != "2026-12-06" {
			t.Fatalf("range ending at day2 = %+v, %v", got, err)
		}
		for _, bad := range []record.UsageFilter{
			{Tenant: "acme", From: from, To: to, GroupBy: "week"},
			{Tenant: "acme", From: to, To: from, GroupBy: record.UsageByDay},
			{From: from, To: to, GroupBy: record.UsageByDay},
		} {
			if _, err := db.UsageSummary(ctx, bad); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("UsageSummary(%+v) = %v; want ErrInvalid", bad, err)
			}
		}
	})
}
