package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

func TestNodes(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.Open(t, driver)
		now := time.Now()
		if err := db.TouchNode(ctx, "n1", now); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("touch unknown = %v", err)
		}
		if err := db.UpsertNode(ctx, "n1", now); err != nil {
			t.Fatal(err)
		}
		if err := db.UpsertNode(ctx, "n1", now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := db.TouchNode(ctx, "n1", now.Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := db.UpsertNode(ctx, "", now); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("empty node id = %v", err)
		}
		var started, beat time.Time
		if err := db.SQL().QueryRowContext(ctx, db.Rebind("SELECT started_at, heartbeat_at FROM nodes WHERE id = ?"), "n1").
			Scan(store.TimeDest(&started), store.TimeDest(&beat)); err != nil {
			t.Fatal(err)
		}
		if !started.Equal(now.Add(time.Second).Truncate(time.Microsecond)) || !beat.Equal(now.Add(2*time.Second).Truncate(time.Microsecond)) {
			t.Fatalf("node times = %v, %v", started, beat)
		}
	})
}
