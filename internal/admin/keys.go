package admin

import (
	"context"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/tenant"
	"log/slog"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/secrets"
)

// ErrNotRecorded: the action's audit record could not be written, so the action was not
// performed (audit.fail_closed). The HTTP API answers 503; the CLI exits non-zero.
var ErrNotRecorded = errors.New("the action could not be recorded and was not performed")

// ErrUnavailable: this Service was built without what the use-case needs.
var ErrUnavailable = errors.New("admin: not available in this process")

// Auditor records security-relevant actions.
type Auditor interface {
	Record(ctx context.Context, r audit.Record) error
}

// KeyStore is the secrets provider's administrative side.
type KeyStore interface {
	Set(ctx context.Context, tenant, keyRef, value string) (secrets.Metadata, error)
	Delete(ctx context.Context, tenant, keyRef string) error
	Describe(ctx context.Context, tenant, keyRef string) (secrets.Metadata, error)
}

// Options configures a Service. Audit, Tenants and Logger are required; a use-case whose
// dependency is missing (Keys with Touch, Revoker, Signer) answers ErrUnavailable.
type Options struct {
	Audit   Auditor
	Keys    KeyStore
	Tenants TenantStore
	Revoker Revoker
	// Signer is nil when auth.signing is disabled: IssueToken answers ErrNoSigner.
	Signer Minter
	// TokenHorizon is the longest any token accepted now can stay valid (the larger of
	// auth.max_token_lifetime and auth.signing.max_ttl): a revocation given no expiry is kept
	// that long, which outlives every token it could name.
	TokenHorizon time.Duration
	AuditLog     Exporter
	// Touch moves a tenant's change marker (store.DB.TouchTenant): every other process polls it
	// and drops the tenant's cached key.
	Touch func(ctx context.Context, tenant string) error
	// Sessions ends live sessions (the server's hub, or the cluster); nil in the CLI, which
	// holds none: TerminateSession answers ErrUnavailable.
	Sessions SessionEnder
	// Notify, when set, tells this process (and, through it, its cluster) of a change at
	// once: caches, a suspended tenant's sessions and tasks, a revoked token's sessions. The
	// CLI has none: running servers learn from the store.
	Notify Notifier
	Logger *slog.Logger
}

// Notifier is told of every change the service made.
type Notifier interface {
	TenantChanged(ctx context.Context, t tenant.Tenant)
	TokenRevoked(ctx context.Context, tenant, jti string, keepUntil time.Time, cancelTasks bool)
	KeyChanged(ctx context.Context, tenant string)
}

// Service runs the admin use-cases.
type Service struct{ o Options }

// New builds a Service.
func New(o Options) (*Service, error) {
	if o.Audit == nil || o.Tenants == nil {
		return nil, errors.New("admin: Audit and Tenants are required")
	}
	if (o.Keys == nil) != (o.Touch == nil) {
		return nil, errors.New("admin: Keys and Touch go together")
	}
	if o.Logger == nil {
		return nil, errors.New("admin: Logger is required")
	}
	return &Service{o: o}, nil
}

// Actor is who asks and from where, for the audit records.
type Actor struct {
	Sub, TokenFP string
	Source       audit.Source
	RequestID    string
	// Via is "cli" for the command line (recorded in details), "" for the API.
	Via string
}

func (s *Service) record(ctx context.Context, a Actor, tenant, action, outcome, reason string, target audit.Target, details map[string]any) error {
	if a.Via != "" {
		if details == nil {
			details = map[string]any{}
		}
		details["via"] = a.Via
	}
	return s.o.Audit.Record(ctx, audit.Record{
		Action: action, Outcome: outcome, Reason: reason, Tenant: tenant,
		Actor: audit.Actor{Sub: a.Sub, TokenFP: a.TokenFP}, Target: target, Source: a.Source,
		RequestID: a.RequestID, Details: details,
	})
}

// KeyReason is the audit reason of a failed provider call: a class, never the provider's text.
func KeyReason(err error) string {
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		return "not found"
	case errors.Is(err, secrets.ErrInvalid):
		return "rejected by the secrets provider"
	case errors.Is(err, secrets.ErrUnavailable):
		return "secrets provider unavailable"
	}
	return "secrets provider error"
}

// SetKey stores value as tenant's engine key and reports whether the tenant had none.
//
// The sequence: key.set.requested (with the fingerprint of the key it replaces) — if that
// cannot be written nothing changes (ErrNotRecorded); the write; then key.set with the real
// outcome: the new key's fingerprint and version, or the failure's class. A key.set that
// cannot be written after a successful write is logged: the key is set, and the requested
// record shows it was asked for. Then the tenant's change marker moves and KeyChanged runs.
// Provider errors are returned wrapped (secrets.ErrInvalid, ErrUnavailable, …).
func (s *Service) SetKey(ctx context.Context, a Actor, tenant, keyRef, value string) (meta secrets.Metadata, created bool, err error) {
	if s.o.Keys == nil {
		return secrets.Metadata{}, false, ErrUnavailable
	}
	target := audit.Target{Type: "key", ID: tenant}
	var prevFP any
	switch prev, err := s.o.Keys.Describe(ctx, tenant, keyRef); {
	case err == nil:
		prevFP = prev.Fingerprint
	case errors.Is(err, secrets.ErrNotFound):
		created = true
	default:
		prevFP = "unknown" // the write may still succeed; the record says what was not known
	}
	if err := s.record(ctx, a, tenant, audit.ActionKeySetRequested, audit.OutcomeSuccess, "", target,
		map[string]any{"previousFingerprint": prevFP}); err != nil {
		return secrets.Metadata{}, false, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	meta, err = s.o.Keys.Set(ctx, tenant, keyRef, value)
	outcome := context.WithoutCancel(ctx)
	if err != nil {
		if rerr := s.record(outcome, a, tenant, audit.ActionKeySet, audit.OutcomeFailure, KeyReason(err), target,
			map[string]any{"previousFingerprint": prevFP}); rerr != nil {
			s.o.Logger.Error("audit write failed", "action", audit.ActionKeySet, "err", rerr)
		}
		return secrets.Metadata{}, false, fmt.Errorf("set key: %w", err)
	}
	if rerr := s.record(outcome, a, tenant, audit.ActionKeySet, audit.OutcomeSuccess, "", target, map[string]any{
		"previousFingerprint": prevFP, "fingerprint": meta.Fingerprint, "version": meta.Version, "provider": meta.Provider,
	}); rerr != nil {
		s.o.Logger.Error("audit write failed after the key was set; key.set.requested records the request",
			"tenant", tenant, "request_id", a.RequestID, "err", rerr)
	}
	s.keyChanged(outcome, a, tenant)
	return meta, created, nil
}

// DeleteKey deletes tenant's engine key and returns what it was. key.delete (with the
// fingerprint of the key deleted) is written first: if it cannot be, nothing changes. A failed
// delete is recorded as a failure.
func (s *Service) DeleteKey(ctx context.Context, a Actor, tenant, keyRef string) (secrets.Metadata, error) {
	if s.o.Keys == nil {
		return secrets.Metadata{}, ErrUnavailable
	}
	meta, err := s.o.Keys.Describe(ctx, tenant, keyRef)
	if err != nil {
		return secrets.Metadata{}, fmt.Errorf("describe key: %w", err)
	}
	target := audit.Target{Type: "key", ID: tenant}
	if err := s.record(ctx, a, tenant, audit.ActionKeyDelete, audit.OutcomeSuccess, "", target,
		map[string]any{"fingerprint": meta.Fingerprint, "provider": meta.Provider}); err != nil {
		return secrets.Metadata{}, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	if err := s.o.Keys.Delete(ctx, tenant, keyRef); err != nil {
		if rerr := s.record(context.WithoutCancel(ctx), a, tenant, audit.ActionKeyDelete, audit.OutcomeFailure, KeyReason(err), target, nil); rerr != nil {
			s.o.Logger.Error("audit write failed", "action", audit.ActionKeyDelete, "err", rerr)
		}
		return secrets.Metadata{}, fmt.Errorf("delete key: %w", err)
	}
	s.keyChanged(context.WithoutCancel(ctx), a, tenant)
	return meta, nil
}

// keyChanged tells every process that tenant's key changed. The change itself is done: a
// failure here only delays other processes until their cache TTL, so it is logged.
func (s *Service) keyChanged(ctx context.Context, a Actor, tenant string) {
	if err := s.o.Touch(ctx, tenant); err != nil {
		s.o.Logger.Error("tenant change marker not updated after a key change; other processes see it after their cache TTL",
			"tenant", tenant, "request_id", a.RequestID, "err", err)
	}
	if s.o.Notify != nil {
		s.o.Notify.KeyChanged(ctx, tenant)
	}
}
