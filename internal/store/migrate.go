package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/flowgate/flowgate/migrations"
)

// MigrationState is one migration as `flowgate migrate status` shows it.
type MigrationState struct {
	Version   int64     `json:"version"`
	Name      string    `json:"name"` // file name, e.g. "00001_init.sql"
	Applied   bool      `json:"applied"`
	AppliedAt time.Time `json:"appliedAt,omitzero"` // UTC; zero when pending
}

func newProvider(ctx context.Context, sqlDB *sql.DB, d dialect, logger *slog.Logger) (*goose.Provider, error) {
	dir, err := fs.Sub(migrations.FS, d.migrationsDir())
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	opts := []goose.ProviderOption{
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(logger.With("component", "migrate")),
	}
	if d.name() == DriverPostgres {
		// Replicas starting together against one database take turns on a session advisory
		// lock. Its id is derived from the schema so that separate schemas (tests, several
		// deployments in one database) do not wait on each other.
		var schema sql.NullString
		if err := sqlDB.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
			return nil, fmt.Errorf("store: read current schema: %w", err)
		}
		if !schema.Valid {
			return nil, errors.New("store: postgres search_path names no existing schema")
		}
		h := fnv.New64a()
		h.Write([]byte("flowgate/migrate/" + schema.String))
		locker, err := lock.NewPostgresSessionLocker(
			lock.WithLockID(int64(h.Sum64())),
			lock.WithLockTimeout(1, 300),  // retry every second, up to 5 minutes
			lock.WithUnlockTimeout(1, 60), // the lock also ends with the session
		)
		if err != nil {
			return nil, fmt.Errorf("store: migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(d.gooseDialect(), sqlDB, dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	return p, nil
}

// Migrate applies every pending migration. It is idempotent and, on PostgreSQL, safe to run
// from several processes at once.
func (db *DB) Migrate(ctx context.Context) error {
	results, err := db.provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	for _, r := range results {
		db.logger.InfoContext(ctx, "migration applied",
			"driver", db.Driver(), "version", r.Source.Version,
			"name", path.Base(r.Source.Path), "duration", r.Duration)
	}
	return nil
}

// MigrationStatus lists every known migration in version order with whether it is applied.
func (db *DB) MigrationStatus(ctx context.Context) ([]MigrationState, error) {
	st, err := db.provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migration status: %w", err)
	}
	out := make([]MigrationState, 0, len(st))
	for _, s := range st {
		m := MigrationState{
			Version: s.Source.Version,
			Name:    path.Base(s.Source.Path),
			Applied: s.State == goose.StateApplied,
		}
		if m.Applied {
			m.AppliedAt = s.AppliedAt.UTC()
		}
		out = append(out, m)
	}
	return out, nil
}
