package store

import (
	"context"
	"fmt"
	"github.com/flowgate/flowgate/internal/auth"
	"time"
)

// Bounds for revocations. MaxRevokedList bounds one ListRevoked answer; page on with the
// RevokedAt of its last entry.
const (
	MaxJTIBytes       = 256
	MaxRevokedByBytes = 256
	MaxRevokedList    = 100_000
)

// AnyTenant as a revocation's Tenant revokes the jti in every tenant (a platform admin's
// revocation); any other value revokes only that tenant's token with the jti. It equals
// auth.AnyTenant.
const AnyTenant = "*"

// RevokedToken is package auth's: the store keeps it.
type RevokedToken = auth.RevokedToken

// RevokeToken records a revocation (RevokedAt defaults to now). Tenant is the scope: a tenant
// id, or AnyTenant. Revoking the same (tenant, jti) twice is not an error; the first record
// is kept.
func (db *DB) RevokeToken(ctx context.Context, r RevokedToken) error {
	if r.JTI == "" || len(r.JTI) > MaxJTIBytes {
		return kindErr(ErrInvalid, auth.ErrInvalidRevocation, "jti must be 1 to %d bytes", MaxJTIBytes)
	}
	if r.Tenant != AnyTenant && !ValidTenantID(r.Tenant) {
		return kindErr(ErrInvalid, auth.ErrInvalidRevocation, "revocation tenant must be a tenant id or %q", AnyTenant)
	}
	if len(r.RevokedBy) > MaxRevokedByBytes {
		return kindErr(ErrInvalid, auth.ErrInvalidRevocation, "revocation revokedBy too long")
	}
	if r.ExpiresAt.IsZero() {
		return kindErr(ErrInvalid, auth.ErrInvalidRevocation, "revocation needs the token's expiry")
	}
	if r.RevokedAt.IsZero() {
		r.RevokedAt = db.timeNow()
	}
	_, err := db.write(ctx, db.Rebind(
		`INSERT INTO revoked_tokens (jti, tenant, expires_at, revoked_at, revoked_by)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, jti) DO NOTHING`),
		r.JTI, r.Tenant, db.TimeArg(r.ExpiresAt), db.TimeArg(r.RevokedAt), r.RevokedBy)
	if err != nil {
		return fmt.Errorf("store: revoke token: %w", err)
	}
	return nil
}

// IsRevoked reports whether tenant's token jti has been revoked, by its tenant or for every
// tenant (and not yet pruned).
func (db *DB) IsRevoked(ctx context.Context, tenant, jti string) (bool, error) {
	var n int
	err := db.readRow(ctx, db.Rebind(
		"SELECT COUNT(*) FROM revoked_tokens WHERE jti = ? AND tenant IN (?, ?)"), jti, tenant, AnyTenant).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("store: check revocation: %w", err)
	}
	return n > 0, nil
}

// ListRevoked returns revocations recorded at or after since, oldest first, at most
// MaxRevokedList of them; a zero since lists all. Used to warm and refresh an in-memory set.
func (db *DB) ListRevoked(ctx context.Context, since time.Time) ([]RevokedToken, error) {
	rows, err := db.read(ctx, db.Rebind(
		`SELECT jti, tenant, expires_at, revoked_at, revoked_by FROM revoked_tokens
		WHERE revoked_at >= ? ORDER BY revoked_at, tenant, jti LIMIT ?`),
		db.TimeArg(since), MaxRevokedList)
	if err != nil {
		return nil, fmt.Errorf("store: list revoked tokens: %w", err)
	}
	defer rows.Close()
	var out []RevokedToken
	for rows.Next() {
		var r RevokedToken
		if err := rows.Scan(&r.JTI, &r.Tenant, TimeDest(&r.ExpiresAt), TimeDest(&r.RevokedAt), &r.RevokedBy); err != nil {
			return nil, fmt.Errorf("store: read revoked token: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list revoked tokens: %w", err)
	}
	return out, nil
}

// PruneRevoked deletes revocations of tokens that expired before now and returns how many.
func (db *DB) PruneRevoked(ctx context.Context, now time.Time) (int, error) {
	res, err := db.write(ctx, db.Rebind("DELETE FROM revoked_tokens WHERE expires_at < ?"), db.TimeArg(now))
	if err != nil {
		return 0, fmt.Errorf("store: prune revoked tokens: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: prune revoked tokens: %w", err)
	}
	return int(n), nil
}
