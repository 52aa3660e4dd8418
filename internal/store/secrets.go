package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Bounds for stored secrets: an API key sealed with AES-GCM is far smaller.
const (
	MaxCiphertextBytes  = 64 << 10
	MaxNonceBytes       = 64
	MaxFingerprintBytes = 128
)

// SecretRecord is a tenant's engine key as the local secrets provider seals it. This package
// stores only the ciphertext; it never sees the key.
type SecretRecord struct {
	Tenant      string
	Ciphertext  []byte
	Nonce       []byte
	Fingerprint string
	Version     int64 // 1 for the first PutSecret, +1 on each later one
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

const secretCols = "tenant, ciphertext, nonce, fingerprint, version, created_at, updated_at"

// GetSecret returns the tenant's sealed key, or ErrNotFound.
func (db *DB) GetSecret(ctx context.Context, tenant string) (SecretRecord, error) {
	row := db.readRow(ctx, db.Rebind("SELECT "+secretCols+" FROM local_secrets WHERE tenant = ?"), tenant)
	return scanSecret(row)
}

// PutSecret stores rec's Ciphertext, Nonce and Fingerprint for rec.Tenant, replacing any
// previous value. The version is incremented in the same statement, so concurrent writers each
// get a distinct version; rec.Version and the times are ignored. It returns the stored row, or
// ErrNotFound if the tenant does not exist.
func (db *DB) PutSecret(ctx context.Context, rec SecretRecord) (SecretRecord, error) {
	switch {
	case len(rec.Ciphertext) == 0 || len(rec.Ciphertext) > MaxCiphertextBytes:
		return SecretRecord{}, fmt.Errorf("%w: ciphertext must be 1 to %d bytes", ErrInvalid, MaxCiphertextBytes)
	case len(rec.Nonce) == 0 || len(rec.Nonce) > MaxNonceBytes:
		return SecretRecord{}, fmt.Errorf("%w: nonce must be 1 to %d bytes", ErrInvalid, MaxNonceBytes)
	case len(rec.Fingerprint) > MaxFingerprintBytes:
		return SecretRecord{}, fmt.Errorf("%w: fingerprint longer than %d bytes", ErrInvalid, MaxFingerprintBytes)
	}
	now := db.TimeArg(db.timeNow())
	row := db.readRow(ctx, db.Rebind(
		`INSERT INTO local_secrets (`+secretCols+`) VALUES (?, ?, ?, ?, 1, ?, ?)
		ON CONFLICT (tenant) DO UPDATE SET
			ciphertext = excluded.ciphertext,
			nonce = excluded.nonce,
			fingerprint = excluded.fingerprint,
			version = local_secrets.version + 1,
			updated_at = excluded.updated_at
		RETURNING `+secretCols),
		rec.Tenant, rec.Ciphertext, rec.Nonce, rec.Fingerprint, now, now)
	out, err := scanSecret(row)
	if db.dialect.isForeignKeyViolation(err) {
		return SecretRecord{}, fmt.Errorf("tenant %s: %w", rec.Tenant, ErrNotFound)
	}
	return out, err
}

// DeleteSecret removes the tenant's sealed key, or returns ErrNotFound if there is none.
func (db *DB) DeleteSecret(ctx context.Context, tenant string) error {
	res, err := db.write(ctx, db.Rebind("DELETE FROM local_secrets WHERE tenant = ?"), tenant)
	if err != nil {
		return fmt.Errorf("store: delete secret: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: delete secret: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("secret of tenant %s: %w", tenant, ErrNotFound)
	}
	return nil
}

func scanSecret(s scanner) (SecretRecord, error) {
	var r SecretRecord
	err := s.Scan(&r.Tenant, &r.Ciphertext, &r.Nonce, &r.Fingerprint, &r.Version,
		TimeDest(&r.CreatedAt), TimeDest(&r.UpdatedAt))
	if errors.Is(err, sql.ErrNoRows) {
		return SecretRecord{}, fmt.Errorf("secret: %w", ErrNotFound)
	}
	if err != nil {
		return SecretRecord{}, fmt.Errorf("store: read secret: %w", err)
	}
	return r, nil
}
