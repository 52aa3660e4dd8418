package store_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

// BenchmarkCreateTaskParallel measures task inserts under concurrent writers
// (SetParallelism(8) × GOMAXPROCS goroutines). "sqlite-1conn" is the single-writer-connection
// alternative to the default pool with _txlock=immediate.
func BenchmarkCreateTaskParallel(b *testing.B) {
	eachPool(b, func(b *testing.B, db *store.DB) {
		var n atomic.Int64
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := db.CreateTask(b.Context(), newTask(fmt.Sprint("t", n.Add(1)), "acme", "alice")); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
	})
}

// BenchmarkUpdateTenantParallel measures contended read-modify-write transactions on one row.
func BenchmarkUpdateTenantParallel(b *testing.B) {
	eachPool(b, func(b *testing.B, db *store.DB) {
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := db.UpdateTenant(b.Context(), "acme", func(t *store.Tenant) error {
					t.Name += "x"
					if len(t.Name) > 100 {
						t.Name = "acme"
					}
					return nil
				}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "txs/s")
	})
}

// eachPool runs bench against a store holding tenant "acme" under each writer pool:
// "sqlite" (the default pool with _txlock=immediate), "sqlite-1conn" (one writer
// connection) and "postgres".
func eachPool(b *testing.B, bench func(b *testing.B, db *store.DB)) {
	for _, tc := range []struct {
		name, driver string
		conns        int
	}{
		{"sqlite", store.DriverSQLite, 0},
		{"sqlite-1conn", store.DriverSQLite, 1},
		{"postgres", store.DriverPostgres, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := storetest.Config(b, tc.driver)
			cfg.MaxOpenConns = tc.conns
			db := storetest.OpenConfig(b, cfg)
			storetest.CreateTenant(b, db, "acme")
			bench(b, db)
		})
	}
}
