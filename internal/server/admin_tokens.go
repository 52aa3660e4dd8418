package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/flowgate/flowgate/internal/tenant"

	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/validation"
)

// Issued tokens and revocation (DESIGN §5, §9):
//
//	POST /v1/admin/tenants/{id}/tokens  {"sub","permissions","ttl"} → 201 {"token","jti","expiresAt"}
//	     tenant:admin of that tenant, or platform:admin.
//	GET  /v1/admin/tenants/{id}/tokens  ?limit= → 200 {"tokens":[{"jti","sub","permissions",…,"revoked"}]}
//	POST /v1/admin/tokens/revoke        {"jti","expiresAt"?} → 200
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

// tokenRoutes serves token issuing, listing and revocation. The revocation list it checks
// for room is the authenticator's, the one that refuses revoked tokens.
type tokenRoutes struct {
	*adminAPI
	signer    *auth.Signer // nil: this gateway does not issue tokens
	validator *validation.Validator
	// admin issues, lists and revokes, recording each.
	admin *admin.Service
	// revokeCancelsTasks is auth.revoke_cancels_tasks: a revocation's default for cancelTasks.
	revokeCancelsTasks bool
}

func handleTokenIssue(rt *tokenRoutes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, p, ok := rt.tenantAdmin(w, r)
		if !ok {
			return
		}
		if rt.signer == nil {
			writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "this gateway does not issue tokens (auth.signing is disabled)")
			return
		}
		var body validation.TokenIssue
		if !rt.decodeJSON(w, r, &body) {
			return
		}
		req, err := rt.validator.TokenIssue(body, rt.signer.MaxTTL())
		if err != nil {
			rt.invalid(w, r, p, id, err)
			return
		}
		for _, perm := range req.Permissions {
			if reason := grantRefusal(p, perm); reason != "" {
				rt.auditDenied(r, p, reason, id)
				writeProblem(w, r, http.StatusForbidden, protocol.CodeForbidden, "this token may not grant "+perm)
				return
			}
		}
		iss, err := rt.admin.IssueToken(r.Context(), rt.actor(r, p),
			auth.IssueRequest{Tenant: id, Subject: req.Sub, Permissions: req.Permissions, TTL: req.TTL})
		switch {
		case errors.Is(err, tenant.ErrNotFound):
			writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "no such resource")
			return
		case errors.Is(err, admin.ErrTenantSuspended):
			writeProblem(w, r, http.StatusConflict, protocol.CodeTenantSuspended, "the tenant is suspended")
			return
		case errors.Is(err, admin.ErrNotRecorded):
			rt.auditUnavailable(w, r, err)
			return
		case err != nil:
			rt.internalError(w, r, err)
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

func handleTokenRevoke(rt *tokenRoutes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := rt.authenticate(w, r)
		if !ok || !rt.authorize(w, r, p, "", auth.PermTenantAdmin) {
			return
		}
		var body validation.TokenRevoke
		if !rt.decodeJSON(w, r, &body) {
			return
		}
		now := time.Now()
		in, err := rt.validator.TokenRevoke(body, now)
		if err != nil {
			rt.invalid(w, r, p, p.Tenant, err)
			return
		}
		// The scope comes from who asks, never from the body.
		scope, view := p.Tenant, tokenRevoked{JTI: in.JTI, Revoked: true, Scope: "tenant", Tenant: p.Tenant}
		if p.Has(auth.PermPlatformAdmin) {
			scope, view = auth.AnyTenant, tokenRevoked{JTI: in.JTI, Revoked: true, Scope: "platform"}
		}
		// Without the token's expiry the service keeps the revocation as long as any token
		// accepted now may live.
		var keep time.Time
		if !in.ExpiresAt.IsZero() {
			keep = in.ExpiresAt.UTC()
			if rt.signer != nil {
				if floor := now.Add(rt.signer.MaxTTL()).UTC(); floor.After(keep) {
					keep = floor
				}
			}
		}
		view.CancelTasks = rt.revokeCancelsTasks
		if in.CancelTasks != nil {
			view.CancelTasks = *in.CancelTasks
		}
		if !rt.revocations.Room(scope) {
			writeProblemExt(w, r, http.StatusTooManyRequests, protocol.CodeQuotaExceeded, "too many live revocations for this tenant", time.Minute, nil)
			return
		}
		keep, err = rt.admin.RevokeToken(r.Context(), rt.actor(r, p), admin.Revocation{
			JTI: in.JTI, Tenant: scope, ExpiresAt: in.ExpiresAt, KeepUntil: keep, CancelTasks: view.CancelTasks,
		})
		switch {
		case errors.Is(err, admin.ErrNotRecorded):
			rt.auditUnavailable(w, r, err)
			return
		case errors.Is(err, admin.ErrInvalidJTI):
			rt.invalid(w, r, p, p.Tenant, &validation.Error{Fields: map[string]string{"jti": "is not a valid token id"}})
			return
		case err != nil:
			rt.internalError(w, r, err)
			return
		}
		view.KeptUntil = apiTime(keep)
		writeJSON(w, http.StatusOK, view)
	})
}

// tokenListed is one issued token in GET /v1/admin/tenants/{id}/tokens: what identifies it,
// never the token.
type tokenListed struct {
	JTI         string   `json:"jti"`
	Sub         string   `json:"sub"`
	Permissions []string `json:"permissions"`
	IssuedAt    string   `json:"issuedAt"`
	ExpiresAt   string   `json:"expiresAt,omitempty"`
	IssuedBy    string   `json:"issuedBy"`
	Revoked     bool     `json:"revoked"`
	Expired     bool     `json:"expired"`
}

// defaultTokenList is a page without ?limit=.
const defaultTokenList = 50

// handleTokenList lists the tokens issued for a tenant, newest first, from its audit chain
// (token.issue), each with whether it is revoked or expired: what a tenant admin needs to
// revoke one without knowing its expiry. tenant:admin of that tenant, or platform:admin.
func handleTokenList(rt *tokenRoutes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, p, ok := rt.tenantAdmin(w, r)
		if !ok {
			return
		}
		q, errs := queryParams(r.URL.Query(), "limit")
		limit := limitParam(q, errs, defaultTokenList, admin.MaxTokenList)
		if errs.any() {
			rt.invalid(w, r, p, id, errs.err())
			return
		}
		toks, err := rt.admin.ListTokens(r.Context(), id, time.Time{}, limit)
		if err != nil {
			rt.internalError(w, r, err)
			return
		}
		now := time.Now()
		out := struct {
			Tokens []tokenListed `json:"tokens"`
		}{Tokens: make([]tokenListed, 0, len(toks))}
		for _, t := range toks {
			perms := t.Permissions
			if perms == nil {
				perms = []string{}
			}
			out.Tokens = append(out.Tokens, tokenListed{JTI: t.JTI, Sub: t.Subject, Permissions: perms,
				IssuedAt: apiTime(t.IssuedAt), ExpiresAt: apiTime(t.ExpiresAt), IssuedBy: t.IssuedBy,
				Revoked: t.Revoked, Expired: !t.ExpiresAt.IsZero() && !t.ExpiresAt.After(now)})
		}
		writeJSON(w, http.StatusOK, out)
	})
}
