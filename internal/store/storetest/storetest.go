package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/flowgate/flowgate/internal/store"
)

// DefaultPostgresURL is the test server; FLOWGATE_TEST_POSTGRES_URL overrides it.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Drivers lists every driver a store test should run against.
var Drivers = []string{store.DriverSQLite, store.DriverPostgres}

func postgresURL() string {
	if u := os.Getenv("FLOWGATE_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// Each runs fn as a parallel subtest per driver, named after the driver.
func Each(t *testing.T, fn func(t *testing.T, driver string)) {
	t.Helper()
	for _, d := range Drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, d)
		})
	}
}

// Logger writes to the test's output.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Config returns a store.Config for a fresh, empty database of driver, removed when the test
// ends: a file in t.TempDir() for SQLite, a new schema (PostgresDSN) for PostgreSQL. Opening
// it several times gives several pools on the same database.
func Config(t testing.TB, driver string) store.Config {
	t.Helper()
	switch driver {
	case store.DriverSQLite:
		return store.Config{Driver: driver, Path: filepath.Join(t.TempDir(), "flowgate.db")}
	case store.DriverPostgres:
		return store.Config{Driver: driver, DSN: PostgresDSN(t)}
	}
	t.Fatalf("storetest: unknown driver %q", driver)
	return store.Config{}
}

// Open opens a migrated store on a fresh database of driver (see Config), closed at cleanup.
func Open(t testing.TB, driver string) *store.DB {
	t.Helper()
	return OpenConfig(t, Config(t, driver))
}

// OpenConfig opens cfg, failing the test on error, and closes the store at cleanup.
func OpenConfig(t testing.TB, cfg store.Config) *store.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := store.Open(ctx, cfg, Logger(t))
	if err != nil {
		t.Fatalf("storetest: open %s: %v", cfg.Driver, err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("storetest: close %s: %v", cfg.Driver, err)
		}
	})
	return db
}

// PostgresDSN creates a schema t_<random> on the test server and returns a DSN whose
// search_path is that schema; the schema is dropped at cleanup. It skips the test when the
// server cannot be reached.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := postgresURL()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("storetest: bad postgres url: %v", err)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("storetest: open postgres: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		if os.Getenv("FLOWGATE_TEST_REQUIRE_SERVICES") != "" {
			t.Fatalf("postgres not reachable at %s (FLOWGATE_TEST_REQUIRE_SERVICES is set): %v", u.Host, err)
		}
		t.Skipf("postgres not reachable at %s: %v", u.Host, err)
	}
	schema := "t_" + randomHex(t, 8)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("storetest: create schema: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			t.Errorf("storetest: open postgres: %v", err)
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("storetest: drop schema %s: %v", schema, err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// CreateTenant creates an active tenant id (tasks and secrets need their tenant to exist).
func CreateTenant(t testing.TB, db *store.DB, id string) store.Tenant {
	t.Helper()
	ten, err := db.CreateTenant(context.Background(), store.Tenant{ID: id})
	if err != nil {
		t.Fatalf("storetest: create tenant %s: %v", id, err)
	}
	return ten
}

// OpenWithTenants opens a fresh store (see Open) holding the given active tenants.
func OpenWithTenants(t testing.TB, driver string, tenants ...string) *store.DB {
	t.Helper()
	db := Open(t, driver)
	for _, id := range tenants {
		CreateTenant(t, db, id)
	}
	return db
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("storetest: random: %v", err)
	}
	return strings.ToLower(hex.EncodeToString(b))
}
