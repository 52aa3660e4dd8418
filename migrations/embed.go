// Package migrations embeds the SQL schema migrations of both store drivers.
// internal/store applies them with goose: sqlite/ for SQLite, postgres/ for PostgreSQL.
package migrations

import "embed"

// FS holds every migration, one directory per dialect, numbered 00001, 00002, … in both.
//
//go:embed sqlite/*.sql postgres/*.sql
var FS embed.FS
