package store_test

import (
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/clocktest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

func TestValidTenantID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want bool
	}{
		{"acme", true},
		{"ab", true},
		{"0a", true},
		{"a-b-c", true},
		{"9-", true},
		{"a" + strings.Repeat("b", 62), true},
		{"a" + strings.Repeat("b", 63), false},
		{"", false},
		{"a", false},
		{"-ab", false},
		{"Acme", false},
		{"ac_me", false},
		{"ac.me", false},
		{"ac me", false},
		{"acme\n", false},
		{"ácme", false},
		{"../x", false},
	}
	for _, tc := range tests {
		if got := store.ValidTenantID(tc.id); got != tc.want {
			t.Errorf("ValidTenantID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func intp(v int) *int { return &v }

func TestTenantCRUD(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.Open(t, driver)

		if _, err := db.GetTenant(ctx, "acme"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("get missing = %v, want ErrNotFound", err)
		}
		in := store.Tenant{
			ID: "acme", Name: "Acme Corp", KeyRef: "arn:aws:secretsmanager:eu-west-1:1:secret:x",
			Limits: store.TenantLimits{ConcurrentTasks: intp(7), MaxAgents: intp(0), AllowedStrategies: []string{"auto", "research"}},
		}
		created, err := db.CreateTenant(ctx, in)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if created.Status != store.TenantActive || created.CreatedAt.IsZero() || !created.UpdatedAt.Equal(created.CreatedAt) {
			t.Fatalf("created = %+v, want active with times set", created)
		}
		got, err := db.GetTenant(ctx, "acme")
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if !tenantEqual(got, created) {
			t.Fatalf("get = %+v, want %+v", got, created)
		}
		if *got.Limits.ConcurrentTasks != 7 || *got.Limits.MaxAgents != 0 || got.Limits.SwarmBurst != nil {
			t.Fatalf("limits = %+v", got.Limits)
		}

		if _, err := db.CreateTenant(ctx, store.Tenant{ID: "acme"}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate create = %v, want ErrConflict", err)
		}
		for _, bad := range []store.Tenant{
			{ID: "A"},
			{ID: "okay", Status: "deleted"},
			{ID: "okay", Name: strings.Repeat("n", store.MaxTenantNameBytes+1)},
			{ID: "okay", Limits: store.TenantLimits{SwarmBurst: intp(-1)}},
			{ID: "okay", Limits: store.TenantLimits{AllowedStrategies: []string{""}}},
		} {
			if _, err := db.CreateTenant(ctx, bad); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("create %+v = %v, want ErrInvalid", bad, err)
			}
		}

		// Default name is the id.
		beta := storetest.CreateTenant(t, db, "beta")
		if beta.Name != "beta" {
			t.Fatalf("default name = %q", beta.Name)
		}
	})
}

func tenantEqual(a, b store.Tenant) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Status == b.Status && a.KeyRef == b.KeyRef &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) &&
		fmt.Sprint(derefLimits(a.Limits)) == fmt.Sprint(derefLimits(b.Limits))
}

func derefLimits(l store.TenantLimits) []any {
	var out []any
	for _, p := range []*int{l.ConcurrentTasks, l.SwarmsPerMinute, l.SwarmBurst, l.MaxAgents} {
		if p == nil {
			out = append(out, nil)
		} else {
			out = append(out, *p)
		}
	}
	return append(out, l.AllowedStrategies)
}

func TestListTenants(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.Open(t, driver)
		var ids []string
		for i := range 7 {
			id := fmt.Sprintf("t%02d", 6-i) // created out of order
			storetest.CreateTenant(t, db, id)
			ids = append(ids, id)
		}
		slices.Sort(ids)
		var got []string
		after := ""
		for {
			page, err := db.ListTenants(ctx, 3, after)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > 3 {
				t.Fatalf("page of %d, limit 3", len(page))
			}
			if len(page) == 0 {
				break
			}
			for _, tn := range page {
				got = append(got, tn.ID)
			}
			after = page[len(page)-1].ID
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("paged ids = %v, want %v", got, ids)
		}
		all, err := db.ListTenants(ctx, 0, "")
		if err != nil || len(all) != 7 {
			t.Fatalf("default limit: %d, %v", len(all), err)
		}
	})
}

func TestUpdateTenant(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		clock := newClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		cfg := storetest.Config(t, driver)
		cfg.Now = clock.Now
		db := storetest.OpenConfig(t, cfg)
		orig := storetest.CreateTenant(t, db, "acme")

		if _, err := db.UpdateTenant(ctx, "nobody", func(*store.Tenant) error { return nil }); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("update missing = %v, want ErrNotFound", err)
		}

		clock.Advance(time.Minute)
		upd, err := db.UpdateTenant(ctx, "acme", func(tn *store.Tenant) error {
			tn.Status = store.TenantSuspended
			tn.Name = "Acme"
			tn.CreatedAt = time.Time{} // ignored
			tn.Limits.SwarmsPerMinute = intp(3)
			return nil
		})
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		if upd.Status != store.TenantSuspended || upd.Name != "Acme" || *upd.Limits.SwarmsPerMinute != 3 ||
			!upd.CreatedAt.Equal(orig.CreatedAt) || !upd.UpdatedAt.Equal(orig.CreatedAt.Add(time.Minute)) {
			t.Fatalf("updated = %+v", upd)
		}
		if got, _ := db.GetTenant(ctx, "acme"); !tenantEqual(got, upd) {
			t.Fatalf("stored = %+v, want %+v", got, upd)
		}

		// Errors from fn and invalid results abort without writing.
		boom := errors.New("boom")
		for _, fn := range []struct {
			f    func(*store.Tenant) error
			want error
		}{
			{func(tn *store.Tenant) error { tn.Name = "x"; return boom }, boom},
			{func(tn *store.Tenant) error { tn.ID = "other"; return nil }, store.ErrInvalid},
			{func(tn *store.Tenant) error { tn.Status = "gone"; return nil }, store.ErrInvalid},
		} {
			if _, err := db.UpdateTenant(ctx, "acme", fn.f); !errors.Is(err, fn.want) {
				t.Fatalf("update = %v, want %v", err, fn.want)
			}
		}
		if got, _ := db.GetTenant(ctx, "acme"); !tenantEqual(got, upd) {
			t.Fatalf("aborted updates changed the tenant: %+v", got)
		}

		// Concurrent read-modify-write loses nothing.
		const writers = 20
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() {
				_, err := db.UpdateTenant(ctx, "acme", func(tn *store.Tenant) error {
					tn.Limits.SwarmsPerMinute = intp(*tn.Limits.SwarmsPerMinute + 1)
					return nil
				})
				if err != nil {
					t.Errorf("concurrent update: %v", err)
				}
			})
		}
		wg.Wait()
		got, err := db.GetTenant(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if *got.Limits.SwarmsPerMinute != 3+writers {
			t.Fatalf("after %d concurrent increments: %d, want %d", writers, *got.Limits.SwarmsPerMinute, 3+writers)
		}
	})
}

func newClock(t time.Time) *clocktest.Clock { return clocktest.New(t) }
