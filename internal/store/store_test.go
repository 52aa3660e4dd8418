package store_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

func TestMigrationsIdempotentAndStatus(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		cfg := storetest.Config(t, driver)

		// A store opened without migrating sees everything pending.
		skip := cfg
		skip.SkipMigrations = true
		fresh := storetest.OpenConfig(t, skip)
		st, err := fresh.MigrationStatus(ctx)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if len(st) == 0 || st[0].Version != 1 || st[0].Name != "00001_init.sql" || st[0].Applied {
			t.Fatalf("fresh status = %+v, want 00001_init.sql pending first", st)
		}
		for _, m := range st {
			if m.Applied || !m.AppliedAt.IsZero() {
				t.Fatalf("fresh status has applied migration %+v", m)
			}
		}

		db := storetest.OpenConfig(t, cfg) // migrates
		for i := range 2 {
			if err := db.Migrate(ctx); err != nil {
				t.Fatalf("migrate again (%d): %v", i, err)
			}
		}
		st, err = db.MigrationStatus(ctx)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		for _, m := range st {
			if !m.Applied || m.AppliedAt.IsZero() || m.AppliedAt.Location() != time.UTC {
				t.Fatalf("after migrate: %+v, want applied with UTC time", m)
			}
		}
		if db.Driver() != driver {
			t.Fatalf("Driver() = %q, want %q", db.Driver(), driver)
		}
		if err := db.Ping(ctx); err != nil {
			t.Fatalf("ping: %v", err)
		}
	})
}

// Several replicas starting at once against one PostgreSQL must not trip over each other.
func TestConcurrentMigratePostgres(t *testing.T) {
	t.Parallel()
	cfg := store.Config{Driver: store.DriverPostgres, DSN: storetest.PostgresDSN(t), SkipMigrations: true}
	const replicas = 3
	dbs := make([]*store.DB, replicas)
	for i := range dbs {
		dbs[i] = storetest.OpenConfig(t, cfg)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*replicas)
	for _, db := range dbs {
		wg.Go(func() {
			ctx := t.Context()
			if _, err := db.MigrationStatus(ctx); err != nil {
				errs <- err
			}
			if err := db.Migrate(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent migrate: %v", err)
	}
	for _, db := range dbs {
		st, err := db.MigrationStatus(t.Context())
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		for _, m := range st {
			if !m.Applied {
				t.Fatalf("migration %s not applied", m.Name)
			}
		}
	}
	if _, err := dbs[0].CreateTenant(t.Context(), store.Tenant{ID: "acme"}); err != nil {
		t.Fatalf("schema unusable after concurrent migrate: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	for _, cfg := range []store.Config{
		{Driver: "mysql"},
		{Driver: store.DriverSQLite},
		{Driver: store.DriverSQLite, Path: filepath.Join(dir, "x.db?mode=ro")},
		{Driver: store.DriverSQLite, Path: "file:" + filepath.Join(dir, "x.db")},
		{Driver: store.DriverPostgres},
	} {
		if db, err := store.Open(ctx, cfg, nil); err == nil {
			db.Close()
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
}

func TestSQLiteSettings(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "dir", "flowgate.db")
	db := storetest.OpenConfig(t, store.Config{Driver: store.DriverSQLite, Path: path})
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"foreign_keys": "1",
		"synchronous":  "1", // NORMAL
		"busy_timeout": "10000",
	} {
		var got string
		if err := db.SQL().QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", pragma, err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	for _, p := range []string{path, filepath.Dir(path)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group/other access", p, perm)
		}
	}
}

func TestRebind(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, pg string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = $1 AND b = $2"},
		{"SELECT '?', \"we?rd\" FROM t WHERE a = ?", "SELECT '?', \"we?rd\" FROM t WHERE a = $1"},
		{"SELECT 'it''s ?' WHERE x IN (?, ?)", "SELECT 'it''s ?' WHERE x IN ($1, $2)"},
	}
	storetest.Each(t, func(t *testing.T, driver string) {
		db := storetest.Open(t, driver)
		for _, tc := range tests {
			want := tc.in
			if driver == store.DriverPostgres {
				want = tc.pg
			}
			if got := db.Rebind(tc.in); got != want {
				t.Errorf("Rebind(%q) = %q, want %q", tc.in, got, want)
			}
		}
	})
}

// The way another package (audit) uses the store: its own table, SQL(), Rebind, TimeArg, TimeDest.
func TestOwnTableThroughSQL(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.Open(t, driver)
		ts := "TEXT"
		if driver == store.DriverPostgres {
			ts = "TIMESTAMPTZ"
		}
		if _, err := db.SQL().ExecContext(ctx, "CREATE TABLE extra (id INTEGER PRIMARY KEY, at "+ts+" NOT NULL, maybe "+ts+")"); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 3, 4, 5, 6, 7, 891234567, time.FixedZone("X", 3600))
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, db.Rebind("INSERT INTO extra (id, at, maybe) VALUES (?, ?, ?)"), 1, db.TimeArg(at), db.NullTimeArg(nil))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var got time.Time
		var maybe *time.Time
		if err := db.SQL().QueryRowContext(ctx, db.Rebind("SELECT at, maybe FROM extra WHERE id = ? AND at >= ?"), 1, db.TimeArg(at)).
			Scan(store.TimeDest(&got), store.NullTimeDest(&maybe)); err != nil {
			t.Fatal(err)
		}
		want := at.UTC().Truncate(time.Microsecond)
		if !got.Equal(want) || got.Location() != time.UTC || maybe != nil {
			t.Fatalf("got %v, %v; want %v, nil", got, maybe, want)
		}
		// A failing transaction leaves nothing behind.
		boom := errors.New("boom")
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, db.Rebind("INSERT INTO extra (id, at) VALUES (?, ?)"), 2, db.TimeArg(at)); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("InTx error = %v, want boom", err)
		}
		var n int
		if err := db.SQL().QueryRowContext(ctx, "SELECT COUNT(*) FROM extra").Scan(&n); err != nil || n != 1 {
			t.Fatalf("rows = %d, %v; want 1", n, err)
		}
	})
}

func TestContextCancelled(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		db := storetest.Open(t, driver)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := db.GetTenant(ctx, "acme"); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetTenant on cancelled ctx = %v, want a context error", err)
		}
	})
}
