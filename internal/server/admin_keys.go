package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/validation"
)

// Tenant engine keys (DESIGN §8, §9), tenant:admin of the tenant or platform:admin:
//
//	GET    /v1/admin/tenants/{id}/key   metadata and fingerprint, never the key; 404 without one
//	PUT    /v1/admin/tenants/{id}/key   {"apiKey":"…"} → 201 (first key) or 200 (rotation)
//	DELETE /v1/admin/tenants/{id}/key   204; 404 without one
//
// Keys are write-only. After a change the tenant's updated_at moves (the change marker other
// processes poll, see store.TouchTenant) and the TenantChanged and KeyChanged hooks run, so
// the next swarm anywhere uses the new key.

// keyView is a key's metadata as the API shows it.
type keyView struct {
	Tenant      string `json:"tenant"`
	Fingerprint string `json:"fingerprint"`
	Version     string `json:"version,omitempty"`
	Provider    string `json:"provider"`
	SecretID    string `json:"secretId,omitempty"`
	UpdatedAt   string `json:"updatedAt,omitempty"`
}

func viewKey(m secrets.Metadata) keyView {
	return keyView{
		Tenant: m.Tenant, Fingerprint: m.Fingerprint, Version: m.Version, Provider: m.Provider,
		SecretID: m.SecretID, UpdatedAt: apiTime(m.UpdatedAt),
	}
}

func handleKeyGet(d *Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, t, ok := d.tenantRequest(w, r, auth.PermTenantAdmin)
		if !ok {
			return
		}
		meta, err := d.Keys.Describe(r.Context(), t.ID, t.KeyRef)
		if err != nil {
			d.keyError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, viewKey(meta))
	})
}

func handleKeyPut(d *Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, t, ok := d.tenantRequest(w, r, auth.PermTenantAdmin)
		if !ok {
			return
		}
		id := t.ID
		var body validation.KeyPut
		if !d.decodeJSON(w, r, &body) {
			return
		}
		in, err := d.Validator.KeyPut(body)
		if err != nil {
			d.invalid(w, r, p, id, err)
			return
		}
		// The new key's fingerprint is computed by the provider as it stores the key, so the
		// record made before the change names the key it replaces; the answer (and every later
		// GET) names the new one.
		details := map[string]any{}
		hadKey := false
		prev, err := d.Keys.Describe(r.Context(), t.ID, t.KeyRef)
		switch {
		case err == nil:
			hadKey = true
			details["previousFingerprint"] = prev.Fingerprint
		case errors.Is(err, secrets.ErrNotFound):
			details["previousFingerprint"] = nil
		default:
			// The write may still succeed; the record says what was not known.
			details["previousFingerprint"] = "unknown"
		}
		target := audit.Target{Type: "key", ID: t.ID}
		if err := d.record(r, p, t.ID, audit.ActionKeySet, audit.OutcomeSuccess, "", target, details); err != nil {
			d.auditUnavailable(w, r, err)
			return
		}
		ctx, cancel := actionContext(r)
		defer cancel()
		meta, err := d.Keys.Set(ctx, t.ID, t.KeyRef, in.APIKey)
		if err != nil {
			d.recordKeyFailure(ctx, r, p, t.ID, audit.ActionKeySet, target, err)
			d.keyError(w, r, err)
			return
		}
		d.keyChanged(ctx, r, t.ID)
		status := http.StatusOK
		if !hadKey {
			status = http.StatusCreated
		}
		writeJSON(w, status, viewKey(meta))
	})
}

func handleKeyDelete(d *Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, t, ok := d.tenantRequest(w, r, auth.PermTenantAdmin)
		if !ok {
			return
		}
		meta, err := d.Keys.Describe(r.Context(), t.ID, t.KeyRef)
		if err != nil {
			d.keyError(w, r, err)
			return
		}
		target := audit.Target{Type: "key", ID: t.ID}
		details := map[string]any{"fingerprint": meta.Fingerprint, "provider": meta.Provider}
		if err := d.record(r, p, t.ID, audit.ActionKeyDelete, audit.OutcomeSuccess, "", target, details); err != nil {
			d.auditUnavailable(w, r, err)
			return
		}
		ctx, cancel := actionContext(r)
		defer cancel()
		if err := d.Keys.Delete(ctx, t.ID, t.KeyRef); err != nil {
			d.recordKeyFailure(ctx, r, p, t.ID, audit.ActionKeyDelete, target, err)
			d.keyError(w, r, err)
			return
		}
		d.keyChanged(ctx, r, t.ID)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	})
}

// keyChanged tells this process (hooks) and every other one (the tenant's change marker)
// that the tenant's key changed. The key change itself has happened: a failure here only
// delays other processes until their cache TTL, so it is logged, not answered.
func (d *Deps) keyChanged(ctx context.Context, r *http.Request, tenant string) {
	t, err := d.Store.UpdateTenant(ctx, tenant, func(*store.Tenant) error { return nil })
	if err != nil {
		d.Logger.Error("tenant change marker not updated after a key change; other processes see it after their cache TTL",
			"tenant", tenant, "request_id", requestIDFrom(r.Context()), "err", err)
	} else {
		d.tenantChanged(ctx, t)
	}
	if d.KeyChanged != nil {
		d.KeyChanged(ctx, tenant)
	}
}

// keyError answers a secrets provider error. Provider errors never carry key material, and
// their text stays in the log.
func (d *Deps) keyError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "this tenant has no engine key")
	case errors.Is(err, secrets.ErrInvalid) && r.Method == http.MethodPut:
		writeProblemExt(w, r, http.StatusUnprocessableEntity, protocol.CodeValidationFailed, "the request is invalid", 0,
			map[string]string{"apiKey": "was not accepted by the secrets provider"})
	case errors.Is(err, secrets.ErrInvalid):
		// The tenant's keyRef names a secret the provider refuses to use for it (e.g. one not
		// tagged with the tenant): a state problem for the platform admin to fix, not a request error.
		d.Logger.Warn("tenant key reference refused by the secrets provider", "path", r.URL.Path, "err", err)
		writeProblem(w, r, http.StatusConflict, codeConflict, "the tenant's key reference cannot be used; a platform admin must fix it")
	case errors.Is(err, secrets.ErrUnavailable):
		d.Logger.Error("secrets provider unavailable", "path", r.URL.Path, "request_id", requestIDFrom(r.Context()), "err", err)
		writeProblem(w, r, http.StatusServiceUnavailable, protocol.CodeTenantKeyUnavailable, "the secrets provider is unavailable; retry later")
	default:
		d.internalError(w, r, err)
	}
}

func (d *Deps) recordKeyFailure(ctx context.Context, r *http.Request, p *auth.Principal, tenant, action string, target audit.Target, cause error) {
	reason := "secrets provider error"
	switch {
	case errors.Is(cause, secrets.ErrNotFound):
		reason = "not found"
	case errors.Is(cause, secrets.ErrInvalid):
		reason = "rejected by the secrets provider"
	case errors.Is(cause, secrets.ErrUnavailable):
		reason = "secrets provider unavailable"
	}
	rec := audit.Record{
		Action: action, Outcome: audit.OutcomeFailure, Reason: reason, Tenant: tenant,
		Actor: audit.Actor{Sub: p.Subject, TokenFP: p.TokenFP}, Target: target, Source: d.source(r),
		RequestID: requestIDFrom(r.Context()),
	}
	if err := d.Audit.Record(ctx, rec); err != nil {
		d.Logger.Error("audit write failed", "action", action, "err", err)
	}
}
