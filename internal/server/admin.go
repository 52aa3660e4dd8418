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

// tenantAdmin authenticates a request on /v1/admin/tenants/{id}/… and authorizes it for that
// tenant's admin (or a platform admin); ok is false once the refusal has been answered.
func (d *Deps) tenantAdmin(w http.ResponseWriter, r *http.Request) (id string, p *auth.Principal, ok bool) {
	id = r.PathValue("id")
	p, ok = d.authenticate(w, r)
	if !ok || !d.authorize(w, r, p, id, auth.PermTenantAdmin) {
		return "", nil, false
	}
	return id, p, true
}

// authorize checks that p holds one of perms and may act on tenant ("" = no tenant scope).
// A principal of another tenant gets 404 for a tenant-scoped resource, never 403: the
// answer must not confirm that the tenant exists.
func (d *Deps) authorize(w http.ResponseWriter, r *http.Request, p *auth.Principal, tenant string, perms ...string) bool {
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
		d.auditDenied(r, p, "tenant scope", tenant)
		writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "no such resource")
		return false
	}
	if !allowed {
		d.auditDenied(r, p, "missing permission", tenant)
		writeProblem(w, r, http.StatusForbidden, protocol.CodeForbidden, "this token lacks the permission for this action")
		return false
	}
	return true
}

func (d *Deps) auditDenied(r *http.Request, p *auth.Principal, reason, tenant string) {
	rec := audit.Record{
		Action: audit.ActionAuthzDenied, Outcome: audit.OutcomeDenied, Reason: reason, Tenant: p.Tenant,
		Actor: audit.Actor{Sub: p.Subject, TokenFP: p.TokenFP}, Source: d.source(r), RequestID: requestIDFrom(r.Context()),
		Details: map[string]any{"method": r.Method, "path": r.URL.Path, "targetTenant": tenant},
	}
	if err := d.Audit.Record(context.WithoutCancel(r.Context()), rec); err != nil {
		d.Logger.Error("audit write failed", "action", rec.Action, "err", err)
	}
}

// record writes the audit record of an admin action on tenant's chain ("" = platform).
// For a change, call it before acting and refuse with 503 when it fails (fail closed).
func (d *Deps) record(r *http.Request, p *auth.Principal, tenant, action, outcome, reason string, target audit.Target, details map[string]any) error {
	return d.Audit.Record(r.Context(), audit.Record{
		Action: action, Outcome: outcome, Reason: reason, Tenant: tenant,
		Actor: audit.Actor{Sub: p.Subject, TokenFP: p.TokenFP}, Target: target, Source: d.source(r),
		RequestID: requestIDFrom(r.Context()), Details: details,
	})
}

// auditUnavailable answers a change refused because its audit record could not be written.
func (d *Deps) auditUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	d.Logger.Error("audit write failed; action refused", "path", r.URL.Path, "err", err)
	writeProblem(w, r, http.StatusServiceUnavailable, protocol.CodeInternal, "the action could not be recorded and was not performed")
}

// invalid answers a validation failure with every failing field.
func (d *Deps) invalid(w http.ResponseWriter, r *http.Request, p *auth.Principal, tenant string, err error) {
	var ve *validation.Error
	if !errors.As(err, &ve) {
		d.Logger.Error("validation", "err", err)
		writeProblem(w, r, http.StatusInternalServerError, protocol.CodeInternal, "internal error")
		return
	}
	fields := make([]string, 0, len(ve.Fields))
	for f := range ve.Fields {
		fields = append(fields, f)
	}
	_ = d.record(r, p, tenant, audit.ActionValidationRejected, audit.OutcomeDenied, "request failed validation", audit.Target{}, map[string]any{"path": r.URL.Path, "fields": fields})
	writeProblemExt(w, r, http.StatusBadRequest, protocol.CodeValidationFailed, "the request is invalid", 0, ve.Fields)
}

// internalError logs err and answers 500 without its text.
func (d *Deps) internalError(w http.ResponseWriter, r *http.Request, err error) {
	d.Logger.Error("admin request failed", "path", r.URL.Path, "request_id", requestIDFrom(r.Context()), "err", err)
	writeProblem(w, r, http.StatusInternalServerError, protocol.CodeInternal, "internal error")
}

// apiTime formats a time for JSON answers (RFC 3339, UTC, ms).
func apiTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return protocol.Time(t)
}
