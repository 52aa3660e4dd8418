package server

import (
	"errors"
	"github.com/flowgate/flowgate/internal/tenant"
	"net/http"
	"time"

	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/validation"
)

// Issued tokens and revocation (DESIGN §5, §9):
//
//	POST /v1/admin/tenants/{id}/tokens  {"sub","permissions","ttl"} → 201 {"token","jti","expiresAt"}
//	     tenant:admin of that tenant, or platform:admin.
//	POST /v1/admin/tokens/revoke        {"jti","expiresAt"} → 200
//	     tenant:admin (its own tenant's tokens only) or platform:admin (every tenant).
//
// Granting: a tenant admin grants only permissions it holds itself. Nobody grants
// platform:admin through the API, not even a platform admin: a leaked platform token must
// not be able to mint fresh, independently revocable platform tokens. Platform admins are
// bootstrapped with `flowgate token issue` on the host.
//
// Revocation scope: a tenant admin's revocation is stored for its own tenant and refuses only
// that tenant's token with the jti; it can never close or refuse another tenant's session,
// even if jtis collide. A platform admin's is stored for auth.AnyTenant and applies to every
// tenant. The revocation is kept until the token's exp, and at least as long as any token
// this gateway can issue lives (auth.signing.max_ttl), so an understated expiresAt cannot
// bring a revoked flowgate token back to life.

// tokenIssued is the answer to a token request. The token is shown once and never stored.
type tokenIssued struct {
	Token     string `json:"token"`
	JTI       string `json:"jti"`
	ExpiresAt string `json:"expiresAt"`
}

// tokenRevoked is the answer to a revocation.
type tokenRevoked struct {
	JTI     string `json:"jti"`
	Revoked bool   `json:"revoked"`
	// Scope is "tenant" (the caller's tenant only) or "platform" (every tenant).
	Scope  string `json:"scope"`
	Tenant string `json:"tenant,omitempty"`
	// KeptUntil is when the revocation is forgotten: the token's exp or later.
	KeptUntil string `json:"keptUntil"`
	// CancelTasks: the tasks the token started are being cancelled, on every node.
	CancelTasks bool `json:"cancelTasks"`
}

func handleTokenIssue(d *Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		p, ok := d.authenticate(w, r)
		if !ok || !d.authorize(w, r, p, id, auth.PermTenantAdmin) {
			return
		}
		if d.Signer == nil {
			writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "this gateway does not issue tokens (auth.signing is disabled)")
			return
		}
		var body validation.TokenIssue
		if !d.decodeJSON(w, r, &body) {
			return
		}
		req, err := d.Validator.TokenIssue(body, d.Signer.MaxTTL())
		if err != nil {
			d.invalid(w, r, p, id, err)
			return
		}
		for _, perm := range req.Permissions {
			if reason := grantRefusal(p, perm); reason != "" {
				d.auditDenied(r, p, reason, id)
				writeProblem(w, r, http.StatusForbidden, protocol.CodeForbidden, "this token may not grant "+perm)
				return
			}
		}
		iss, err := d.Admin.IssueToken(r.Context(), d.actor(r, p),
			auth.IssueRequest{Tenant: id, Subject: req.Sub, Permissions: req.Permissions, TTL: req.TTL})
		switch {
		case errors.Is(err, tenant.ErrNotFound):
			writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "no such resource")
			return
		case errors.Is(err, admin.ErrTenantSuspended):
			writeProblem(w, r, http.StatusConflict, protocol.CodeTenantSuspended, "the tenant is suspended")
			return
		case errors.Is(err, admin.ErrNotRecorded):
			d.auditUnavailable(w, r, err)
			return
		case err != nil:
			d.internalError(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, tokenIssued{Token: iss.Token, JTI: iss.JTI, ExpiresAt: apiTime(iss.ExpiresAt)})
	})
}

// grantRefusal says why p may not grant perm, or "" when it may.
func grantRefusal(p *auth.Principal, perm string) string {
	switch {
	case perm == auth.PermPlatformAdmin:
		return "platform:admin is never granted through the API"
	case p.Has(auth.PermPlatformAdmin):
		return ""
	case !p.Has(perm):
		return "cannot grant a permission it does not hold"
	}
	return ""
}

func handleTokenRevoke(d *Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := d.authenticate(w, r)
		if !ok || !d.authorize(w, r, p, "", auth.PermTenantAdmin) {
			return
		}
		var body validation.TokenRevoke
		if !d.decodeJSON(w, r, &body) {
			return
		}
		now := time.Now()
		in, err := d.Validator.TokenRevoke(body, now)
		if err != nil {
			d.invalid(w, r, p, p.Tenant, err)
			return
		}
		// The scope comes from who asks, never from the body.
		scope, view := p.Tenant, tokenRevoked{JTI: in.JTI, Revoked: true, Scope: "tenant", Tenant: p.Tenant}
		if p.Has(auth.PermPlatformAdmin) {
			scope, view = auth.AnyTenant, tokenRevoked{JTI: in.JTI, Revoked: true, Scope: "platform"}
		}
		keep := in.ExpiresAt.UTC()
		if d.Signer != nil {
			if floor := now.Add(d.Signer.MaxTTL()).UTC(); floor.After(keep) {
				keep = floor
			}
		}
		view.KeptUntil = apiTime(keep)
		view.CancelTasks = d.RevokeCancelsTasks
		if in.CancelTasks != nil {
			view.CancelTasks = *in.CancelTasks
		}
		if !d.Revocations.Room(scope) {
			writeProblemExt(w, r, http.StatusTooManyRequests, protocol.CodeQuotaExceeded, "too many live revocations for this tenant", time.Minute, nil)
			return
		}
		err = d.Admin.RevokeToken(r.Context(), d.actor(r, p), admin.Revocation{
			JTI: in.JTI, Tenant: scope, ExpiresAt: in.ExpiresAt, KeepUntil: keep, CancelTasks: view.CancelTasks,
		})
		switch {
		case errors.Is(err, admin.ErrNotRecorded):
			d.auditUnavailable(w, r, err)
			return
		case errors.Is(err, admin.ErrInvalidJTI):
			d.invalid(w, r, p, p.Tenant, &validation.Error{Fields: map[string]string{"jti": "is not a valid token id"}})
			return
		case err != nil:
			d.internalError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, view)
	})
}
