package store

import (
	"context"
	"time"
)

// A tenant's updated_at is its change marker: every change that a running server must notice
// (status, limits, keyRef, and its engine key being set or deleted) moves it forward. Servers
// poll TenantsChangedSince, so a change made by `flowgate tenant|key` or by another replica
// reaches them without a message bus.

// TouchTenant moves the tenant's updated_at to now without changing anything else, to tell
// servers that something kept outside the tenants table (its engine key) changed. It returns
// the stored tenant, or ErrNotFound.
func (db *DB) TouchTenant(ctx context.Context, id string) (Tenant, error) {
	return db.UpdateTenant(ctx, id, func(*Tenant) error { return nil })
}

// TenantsChangedSince returns the tenants whose (updated_at, id) comes after (since, afterID),
// oldest change first, at most limit of them (see DefaultListLimit, MaxListLimit). With
// afterID "" every tenant updated at or after since is included. To page on, pass the
// UpdatedAt and ID of the last tenant returned.
func (db *DB) TenantsChangedSince(ctx context.Context, since time.Time, afterID string, limit int) ([]Tenant, error) {
	s := db.TimeArg(normTime(since))
	return queryRows(ctx, db, db.db, "tenants changed", db.Rebind(
		"SELECT "+tenantCols+" FROM tenants WHERE updated_at > ? OR (updated_at = ? AND id > ?)"+
			" ORDER BY updated_at, id LIMIT ?"), scanTenant, s, s, afterID, clampLimit(limit))
}
