package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/flowgate/flowgate/internal/tenant"
)

// Tenant statuses.
const (
	TenantActive    = tenant.StatusActive
	TenantSuspended = tenant.StatusSuspended
)

// Tenant and TenantLimits are package tenant's: the store keeps them, the tenant package says
// what they are.
type (
	Tenant       = tenant.Tenant
	TenantLimits = tenant.Limits
)

// Input bounds for tenants.
const (
	MaxTenantNameBytes   = 200
	MaxKeyRefBytes       = 2048 // a full Secrets Manager ARN fits
	MaxAllowedStrategies = 32
	MaxStrategyBytes     = 64
)

// ValidTenantID reports whether id follows the tenant id rule ^[a-z0-9][a-z0-9-]{1,62}$.
func ValidTenantID(id string) bool { return tenant.ValidID(id) }

const tenantCols = "id, name, status, limits, key_ref, created_at, updated_at"

func validateTenant(t *Tenant) error {
	if !ValidTenantID(t.ID) {
		return fmt.Errorf("%w: tenant id must match %s", ErrInvalid, tenant.IDRule)
	}
	if len(t.Name) > MaxTenantNameBytes || !utf8.ValidString(t.Name) {
		return fmt.Errorf("%w: tenant name must be valid UTF-8 of at most %d bytes", ErrInvalid, MaxTenantNameBytes)
	}
	if t.Status != TenantActive && t.Status != TenantSuspended {
		return fmt.Errorf("%w: tenant status must be %q or %q", ErrInvalid, TenantActive, TenantSuspended)
	}
	if len(t.KeyRef) > MaxKeyRefBytes || !utf8.ValidString(t.KeyRef) {
		return fmt.Errorf("%w: tenant keyRef must be valid UTF-8 of at most %d bytes", ErrInvalid, MaxKeyRefBytes)
	}
	l := t.Limits
	for _, v := range []*int{l.ConcurrentTasks, l.SwarmsPerMinute, l.SwarmBurst, l.MaxAgents} {
		if v != nil && *v < 0 {
			return fmt.Errorf("%w: tenant limits must not be negative", ErrInvalid)
		}
	}
	if len(l.AllowedStrategies) > MaxAllowedStrategies {
		return fmt.Errorf("%w: at most %d allowed strategies", ErrInvalid, MaxAllowedStrategies)
	}
	for _, s := range l.AllowedStrategies {
		if s == "" || len(s) > MaxStrategyBytes || !utf8.ValidString(s) {
			return fmt.Errorf("%w: allowed strategy must be 1 to %d bytes of UTF-8", ErrInvalid, MaxStrategyBytes)
		}
	}
	return nil
}

// CreateTenant stores a new tenant. Status defaults to active, Name to the id, and zero times to
// now. It returns the stored tenant, or ErrConflict if the id is taken.
func (db *DB) CreateTenant(ctx context.Context, t Tenant) (Tenant, error) {
	if t.Status == "" {
		t.Status = TenantActive
	}
	if t.Name == "" {
		t.Name = t.ID
	}
	now := db.timeNow()
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now
	}
	if t.UpdatedAt.IsZero() {
		t.UpdatedAt = t.CreatedAt
	}
	t.CreatedAt, t.UpdatedAt = normTime(t.CreatedAt), normTime(t.UpdatedAt)
	if err := validateTenant(&t); err != nil {
		return Tenant{}, err
	}
	limits, err := json.Marshal(t.Limits)
	if err != nil {
		return Tenant{}, fmt.Errorf("store: encode tenant limits: %w", err)
	}
	_, err = db.write(ctx, db.Rebind(
		"INSERT INTO tenants ("+tenantCols+") VALUES (?, ?, ?, ?, ?, ?, ?)"),
		t.ID, t.Name, t.Status, string(limits), t.KeyRef, db.TimeArg(t.CreatedAt), db.TimeArg(t.UpdatedAt))
	if db.dialect.isUniqueViolation(err) {
		return Tenant{}, kindErr(ErrConflict, tenant.ErrExists, "tenant %s", t.ID)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("store: create tenant: %w", err)
	}
	return t, nil
}

// GetTenant returns the tenant or ErrNotFound.
func (db *DB) GetTenant(ctx context.Context, id string) (Tenant, error) {
	row := db.readRow(ctx, db.Rebind("SELECT "+tenantCols+" FROM tenants WHERE id = ?"), id)
	return scanTenant(row)
}

// ListTenants returns tenants ordered by id, starting after afterID ("" = from the start), at
// most limit of them (see DefaultListLimit, MaxListLimit).
func (db *DB) ListTenants(ctx context.Context, limit int, afterID string) ([]Tenant, error) {
	return queryRows(ctx, db, db.db, "list tenants", db.Rebind(
		"SELECT "+tenantCols+" FROM tenants WHERE id > ? ORDER BY id LIMIT ?"), scanTenant, afterID, clampLimit(limit))
}

// UpdateTenant reads the tenant, lets fn change it and writes it back, all in one transaction,
// so concurrent updates never lose each other's changes. fn must not change ID or CreatedAt
// (changes to CreatedAt are ignored); UpdatedAt is set to now. An error from fn aborts the update
// and is returned unchanged. It returns the stored tenant, or ErrNotFound.
func (db *DB) UpdateTenant(ctx context.Context, id string, fn func(*Tenant) error) (Tenant, error) {
	var out Tenant
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		row := tx.QueryRowContext(ctx, db.Rebind(
			"SELECT "+tenantCols+" FROM tenants WHERE id = ?"+db.ForUpdate()), id)
		orig, err := scanTenant(row)
		if err != nil {
			return err
		}
		t := orig
		t.Limits.AllowedStrategies = append([]string(nil), orig.Limits.AllowedStrategies...)
		if err := fn(&t); err != nil {
			return err
		}
		if t.ID != orig.ID {
			return fmt.Errorf("%w: tenant id cannot change", ErrInvalid)
		}
		t.CreatedAt = orig.CreatedAt
		t.UpdatedAt = db.timeNow()
		if err := validateTenant(&t); err != nil {
			return err
		}
		limits, err := json.Marshal(t.Limits)
		if err != nil {
			return fmt.Errorf("store: encode tenant limits: %w", err)
		}
		if _, err := tx.ExecContext(ctx, db.Rebind(
			"UPDATE tenants SET name = ?, status = ?, limits = ?, key_ref = ?, updated_at = ? WHERE id = ?"),
			t.Name, t.Status, string(limits), t.KeyRef, db.TimeArg(t.UpdatedAt), t.ID); err != nil {
			return fmt.Errorf("store: update tenant: %w", err)
		}
		out = t
		return nil
	})
	if err != nil {
		return Tenant{}, err
	}
	return out, nil
}

func scanTenant(s scanner) (Tenant, error) {
	var (
		t      Tenant
		limits []byte
	)
	err := s.Scan(&t.ID, &t.Name, &t.Status, &limits, &t.KeyRef, TimeDest(&t.CreatedAt), TimeDest(&t.UpdatedAt))
	if errors.Is(err, sql.ErrNoRows) {
		return Tenant{}, kindErr(ErrNotFound, tenant.ErrNotFound, "tenant")
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("store: read tenant: %w", err)
	}
	if err := json.Unmarshal(limits, &t.Limits); err != nil {
		return Tenant{}, fmt.Errorf("store: decode limits of tenant %s: %w", t.ID, err)
	}
	return t, nil
}
