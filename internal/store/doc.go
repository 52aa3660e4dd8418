// Package store persists tenants, tasks, revoked tokens, sealed secrets and nodes in SQLite or
// PostgreSQL behind one *DB, applying the embedded goose migrations of package migrations.
package store

// Adding tables from another package (e.g. audit):
//
//   - Add migrations/sqlite/0000N_x.sql and migrations/postgres/0000N_x.sql with the same next
//     number (goose annotations "-- +goose Up" / "-- +goose Down"). SQLite tables are STRICT and
//     keep times as TEXT; PostgreSQL uses TIMESTAMPTZ, BYTEA, JSONB.
//   - Write each query once with "?" placeholders and run db.Rebind(q) on db.SQL() or on the tx
//     of db.InTx; append db.ForUpdate() to a SELECT of rows the transaction will change.
//   - Pass times as db.TimeArg(t) / db.NullTimeArg(p) and scan them with TimeDest / NullTimeDest:
//     UTC, microseconds, and on SQLite a fixed-width text that sorts like the time.
//   - A duplicate key of either driver is ErrConflict (the dialect recognises it).
//   - Test against both drivers with storetest.Each and storetest.Open.
