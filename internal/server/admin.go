package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/validation"
)

// Helpers shared by the admin handlers (admin_*.go). Every admin handler follows the same
// shape: authenticate → authorize (permission and tenant scope) → decode strictly →
// validate (internal/validation) → audit (fail closed for changes) → act → answer.

// adminAPI is what every admin route family shares on top of authentication: the strict
// body reader, and how a request's refusals and changes are recorded and answered. Each
// family (tenantRoutes, tokenRoutes, …) adds only the services its own routes use.
type adminAPI struct {
	*authenticator
	maxBody int64 // server.max_body_bytes
}

// tenantAdmin authenticates a request on /v1/admin/tenants/{id}/… and authorizes it for that
// tenant's admin (or a platform admin); ok is false once the refusal has been answered.
func (a *authenticator) tenantAdmin(w http.ResponseWriter, r *http.Request) (id string, p *auth.Principal, ok bool) {
	id = r.PathValue("id")
	p, ok = a.authenticate(w, r)
	if !ok || !a.authorize(w, r, p, id, auth.PermTenantAdmin) {
		return "", nil, false
	}
	return id, p, true
}

// authorize checks that p holds one of perms and may act on tenant ("" = no tenant scope).
// A principal of another tenant gets 404 for a tenant-scoped resource, never 403: the
// answer must not confirm that the tenant exists.
func (a *authenticator) authorize(w http.ResponseWriter, r *http.Request, p *auth.Principal, tenant string, perms ...string) bool {
	allowed := false
	for _, perm := range perms {
		if p.Has(perm) {
			allowed = true
			break
		}
	}
	if p.Has(auth.PermPlatformAdmin) {
		allowed = true
	}
	if tenant != "" && !p.CanAccessTenant(tenant) {
		a.auditDenied(r, p, "tenant scope", tenant)
		writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "no such resource")
		return false
	}
	if !allowed {
		a.auditDenied(r, p, "missing permission", tenant)
		writeProblem(w, r, http.StatusForbidden, protocol.CodeForbidden, "this token lacks the permission for this action")
		return false
	}
	return true
}

func (a *authenticator) auditDenied(r *http.Request, p *auth.Principal, reason, tenant string) {
	rec := audit.Record{
		Action: audit.ActionAuthzDenied, Outcome: audit.OutcomeDenied, Reason: reason, Tenant: p.Tenant,
		Actor: audit.Actor{Sub: p.Subject, TokenFP: p.TokenFP}, Source: a.source(r), RequestID: requestIDFrom(r.Context()),
		Details: map[string]any{"method": r.Method, "path": r.URL.Path, "targetTenant": tenant},
	}
	if err := a.audit.Record(context.WithoutCancel(r.Context()), rec); err != nil {
		a.log.Error("audit write failed", "action", rec.Action, "err", err)
	}
}

// record writes the audit record of an admin action on tenant's chain ("" = platform).
// For a change, call it before acting and refuse with 503 when it fails (fail closed).
func (a *adminAPI) record(r *http.Request, p *auth.Principal, tenant, action, outcome, reason string, target audit.Target, details map[string]any) error {
	return a.audit.Record(r.Context(), audit.Record{
		Action: action, Outcome: outcome, Reason: reason, Tenant: tenant,
		Actor: audit.Actor{Sub: p.Subject, TokenFP: p.TokenFP}, Target: target, Source: a.source(r),
		RequestID: requestIDFrom(r.Context()), Details: details,
	})
}

// auditUnavailable answers a change refused because its audit record could not be written.
func (a *adminAPI) auditUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	a.log.Error("audit write failed; action refused", "path", r.URL.Path, "err", err)
	writeProblem(w, r, http.StatusServiceUnavailable, protocol.CodeInternal, "the action could not be recorded and was not performed")
}

// invalid answers a validation failure with every failing field.
func (a *adminAPI) invalid(w http.ResponseWriter, r *http.Request, p *auth.Principal, tenant string, err error) {
	var ve *validation.Error
	if !errors.As(err, &ve) {
		a.log.Error("validation", "err", err)
		writeProblem(w, r, http.StatusInternalServerError, protocol.CodeInternal, "internal error")
		return
	}
	_ = a.record(r, p, tenant, audit.ActionValidationRejected, audit.OutcomeDenied, "request failed validation", audit.Target{},
		map[string]any{"path": r.URL.Path, "fields": ve.Names()})
	writeProblemExt(w, r, http.StatusBadRequest, protocol.CodeValidationFailed, "the request is invalid", 0, ve.Fields)
}

// internalError logs err and answers 500 without its text.
func (a *adminAPI) internalError(w http.ResponseWriter, r *http.Request, err error) {
	a.log.Error("admin request failed", "path", r.URL.Path, "request_id", requestIDFrom(r.Context()), "err", err)
	writeProblem(w, r, http.StatusInternalServerError, protocol.CodeInternal, "internal error")
}

// apiTime formats a time for JSON answers (RFC 3339, UTC, ms).
func apiTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return protocol.Time(t)
}
