package store_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

func TestTenantsChangedSince(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		var (
			mu  sync.Mutex
			now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		)
		clock := func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return now
		}
		advance := func(d time.Duration) {
			mu.Lock()
			now = now.Add(d)
			mu.Unlock()
		}
		cfg := storetest.Config(t, driver)
		cfg.Now = clock
		db := storetest.OpenConfig(t, cfg)

		t0 := clock()
		for _, id := range []string{"bb", "aa", "cc"} { // all at t0
			if _, err := db.CreateTenant(ctx, store.Tenant{ID: id}); err != nil {
				t.Fatal(err)
			}
		}
		ids := func(ts []store.Tenant) []string {
			out := []string{}
			for _, t := range ts {
				out = append(out, t.ID)
			}
			return out
		}
		got, err := db.TenantsChangedSince(ctx, t0, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if g := ids(got); len(g) != 3 || g[0] != "aa" || g[1] != "bb" || g[2] != "cc" {
			t.Fatalf("changed since t0 = %v, want [aa bb cc] (ties by id)", g)
		}
		// Paging within one timestamp.
		got, err = db.TenantsChangedSince(ctx, t0, "aa", 1)
		if err != nil {
			t.Fatal(err)
		}
		if g := ids(got); len(g) != 1 || g[0] != "bb" {
			t.Fatalf("page after aa = %v, want [bb]", g)
		}

		advance(time.Second)
		touched, err := db.TouchTenant(ctx, "bb")
		if err != nil {
			t.Fatal(err)
		}
		if !touched.UpdatedAt.After(t0) || !touched.CreatedAt.Equal(t0) || touched.Name != "bb" || touched.Status != store.TenantActive {
			t.Fatalf("touched = %+v", touched)
		}
		got, err = db.TenantsChangedSince(ctx, t0.Add(time.Millisecond), "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if g := ids(got); len(g) != 1 || g[0] != "bb" || !got[0].UpdatedAt.Equal(touched.UpdatedAt) {
			t.Fatalf("changed after t0 = %v, want [bb]", g)
		}
		// The last change sorts last; nothing comes after it.
		got, err = db.TenantsChangedSince(ctx, touched.UpdatedAt, "bb", 0)
		if err != nil || len(got) != 0 {
			t.Fatalf("after the last change = %v, %v; want nothing", ids(got), err)
		}
		if _, err := db.TouchTenant(ctx, "zz"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("touch missing = %v, want ErrNotFound", err)
		}
	})
}
