package admin

import (
	"context"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/tenant"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
)

// ErrNoSigner: this gateway does not issue tokens (auth.signing is disabled).
var ErrNoSigner = errors.New("this gateway does not issue tokens (auth.signing is disabled)")

// ErrInvalidJTI: the store refused the token id of a revocation.
var ErrInvalidJTI = errors.New("not a valid token id")

// ErrTenantSuspended: tokens are not issued for a suspended tenant.
var ErrTenantSuspended = errors.New("the tenant is suspended")

// Minter issues flowgate's own tokens (auth.Signer).
type Minter interface {
	Issue(req auth.IssueRequest) (auth.Issued, error)
}

// Revoker stores revocations and answers whether a token is revoked (internal/store).
type Revoker interface {
	RevokeToken(ctx context.Context, r auth.RevokedToken) error
	IsRevoked(ctx context.Context, tenant, jti string) (bool, error)
}

// IssueToken mints a token for req.Tenant, which must exist and be active (read from the
// store, not a cache: a token is never minted for a tenant just suspended). Who may grant
// what is the caller's check. token.issue is on record before the token leaves: a token
// nobody can account for is never issued (ErrNotRecorded).
func (s *Service) IssueToken(ctx context.Context, a Actor, req auth.IssueRequest) (auth.Issued, error) {
	if s.o.Signer == nil {
		return auth.Issued{}, ErrNoSigner
	}
	t, err := s.o.Tenants.GetTenant(ctx, req.Tenant)
	if err != nil {
		return auth.Issued{}, fmt.Errorf("tenant %s: %w", req.Tenant, err)
	}
	if t.Status != tenant.StatusActive {
		return auth.Issued{}, ErrTenantSuspended
	}
	iss, err := s.o.Signer.Issue(req)
	if err != nil {
		return auth.Issued{}, err
	}
	details := map[string]any{"sub": req.Subject, "permissions": req.Permissions, "expiresAt": protocol.Time(iss.ExpiresAt), "kid": iss.KID}
	if err := s.record(ctx, a, req.Tenant, audit.ActionTokenIssue, audit.OutcomeSuccess, "", audit.Target{Type: "token", ID: iss.JTI}, details); err != nil {
		return auth.Issued{}, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	return iss, nil
}

// Revocation is a token to refuse from now on.
type Revocation struct {
	JTI string
	// Tenant scopes it: that tenant's token only, or auth.AnyTenant (every tenant, a platform
	// revocation, recorded on the platform chain).
	Tenant string
	// ExpiresAt is the token's exp when known (zero: unknown); KeepUntil is when the
	// revocation may be forgotten (the exp, or later). Zero KeepUntil: the exp when known,
	// else Options.TokenHorizon from now.
	ExpiresAt, KeepUntil time.Time
	// CancelTasks also cancels the running tasks the token started, on every node.
	CancelTasks bool
}

// RevokeToken records token.revoke (fail-closed), stores the revocation durably, then tells
// the running processes (TokenRevoked): they refuse the token and close its sessions. It
// returns when the revocation may be forgotten.
func (s *Service) RevokeToken(ctx context.Context, a Actor, rv Revocation) (time.Time, error) {
	if s.o.Revoker == nil {
		return time.Time{}, ErrUnavailable
	}
	if rv.KeepUntil.IsZero() {
		rv.KeepUntil = rv.ExpiresAt
		if rv.ExpiresAt.IsZero() {
			rv.KeepUntil = time.Now().Add(s.o.TokenHorizon)
		}
	}
	scope, chain := "tenant", rv.Tenant
	if rv.Tenant == auth.AnyTenant {
		scope, chain = "platform", ""
	}
	target := audit.Target{Type: "token", ID: rv.JTI}
	details := map[string]any{"scope": scope, "keptUntil": protocol.Time(rv.KeepUntil), "cancelTasks": rv.CancelTasks}
	if !rv.ExpiresAt.IsZero() {
		details["expiresAt"] = protocol.Time(rv.ExpiresAt)
	}
	if err := s.record(ctx, a, chain, audit.ActionTokenRevoke, audit.OutcomeSuccess, "", target, details); err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	ctx = context.WithoutCancel(ctx)
	if err := s.o.Revoker.RevokeToken(ctx, auth.RevokedToken{JTI: rv.JTI, Tenant: rv.Tenant, ExpiresAt: rv.KeepUntil.UTC(), RevokedBy: a.Sub}); err != nil {
		s.recordFailure(ctx, a, chain, audit.ActionTokenRevoke, target, storeReason(err))
		if errors.Is(err, auth.ErrInvalidRevocation) {
			return time.Time{}, fmt.Errorf("%w: %w", ErrInvalidJTI, err)
		}
		return time.Time{}, err
	}
	if s.o.Notify != nil {
		s.o.Notify.TokenRevoked(ctx, rv.Tenant, rv.JTI, rv.KeepUntil, rv.CancelTasks)
	}
	return rv.KeepUntil, nil
}

// IssuedToken is a token the audit log shows was issued (token.issue), with whether it has
// been revoked since. The token itself is never stored: only what identifies it.
type IssuedToken struct {
	JTI         string
	Subject     string
	Permissions []string
	IssuedAt    time.Time
	ExpiresAt   time.Time
	IssuedBy    string // the actor's subject
	Revoked     bool
}

// MaxTokenList bounds one ListTokens answer.
const MaxTokenList = 200

// ListTokens returns the tokens issued for tenant, newest first: at most limit (1…
// MaxTokenList) issued since since. It reads the tenant's audit chain, so it lists exactly
// what was accounted for, including tokens issued by the CLI.
func (s *Service) ListTokens(ctx context.Context, tenant string, since time.Time, limit int) ([]IssuedToken, error) {
	if s.o.AuditLog == nil || s.o.Revoker == nil {
		return nil, ErrUnavailable
	}
	limit = min(max(limit, 1), MaxTokenList)
	recs, _, err := s.o.AuditLog.Query(ctx, audit.Filter{Tenant: tenant, Action: audit.ActionTokenIssue,
		Outcome: audit.OutcomeSuccess, Since: since, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("admin: list tokens: %w", err)
	}
	out := make([]IssuedToken, 0, len(recs))
	for _, r := range recs {
		it := IssuedToken{JTI: r.Target.ID, IssuedAt: r.Time, IssuedBy: r.Actor.Sub}
		it.Subject, _ = r.Details["sub"].(string)
		if ps, ok := r.Details["permissions"].([]any); ok {
			for _, p := range ps {
				if p, ok := p.(string); ok {
					it.Permissions = append(it.Permissions, p)
				}
			}
		}
		if e, ok := r.Details["expiresAt"].(string); ok {
			it.ExpiresAt, _ = time.Parse(time.RFC3339Nano, e)
		}
		if it.Revoked, err = s.o.Revoker.IsRevoked(ctx, tenant, it.JTI); err != nil {
			return nil, fmt.Errorf("admin: list tokens: %w", err)
		}
		out = append(out, it)
	}
	return out, nil
}
