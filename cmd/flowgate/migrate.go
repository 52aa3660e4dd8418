package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/flowgate/flowgate/internal/store"
)

const migrateUsage = "usage: flowgate migrate up|status [--config FILE | --dev --data-dir D]"

// runMigrate applies (up) or lists (status) the schema migrations. It opens only the store:
// no key files are needed to migrate a database. Safe to run while servers are up (goose
// takes a lock on PostgreSQL; SQLite serialises writers).
func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "status") {
		fmt.Fprintln(stderr, migrateUsage)
		return usageError("migrate: want up or status")
	}
	sub := args[0]
	fs := newFlagSet("migrate "+sub, stderr)
	var cf configFlags
	cf.register(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("migrate %s takes no arguments (got %q)", sub, fs.Arg(0))
	}
	cfg, err := cf.load(getenv)
	if err != nil {
		return err
	}
	// What was applied goes to stdout; the log only carries warnings and errors.
	logCfg := cfg
	if logCfg.Log.Level != "error" {
		logCfg.Log.Level = "warn"
	}
	log := newLogger(logCfg, stderr)
	db, err := store.Open(ctx, store.Config{
		Driver: cfg.Store.Driver, DSN: cfg.Store.DSN, Path: cfg.Path(cfg.Store.Path),
		MaxOpenConns: 2, SkipMigrations: true,
	}, log)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer db.Close()

	before, err := db.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	if sub == "status" {
		return printMigrations(stdout, before)
	}
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	after, err := db.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	applied := 0
	for i, m := range after {
		if m.Applied && (i >= len(before) || !before[i].Applied) {
			fmt.Fprintf(stdout, "applied %s\n", m.Name)
			applied++
		}
	}
	if applied == 0 {
		fmt.Fprintf(stdout, "schema is up to date (%s, version %d)\n", db.Driver(), latest(after))
	}
	return nil
}

func printMigrations(w io.Writer, list []store.MigrationState) error {
	for _, m := range list {
		state, at := "pending", ""
		if m.Applied {
			state, at = "applied", m.AppliedAt.UTC().Format(time.RFC3339)
		}
		line := strings.TrimRight(fmt.Sprintf("%05d  %-32s %-8s %s", m.Version, m.Name, state, at), " ")
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

func latest(list []store.MigrationState) int64 {
	var v int64
	for _, m := range list {
		if m.Applied && m.Version > v {
			v = m.Version
		}
	}
	return v
}
