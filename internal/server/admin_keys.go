package server

import (
	"errors"
	"net/http"

	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/secrets"
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

func handleKeyGet(rt *tenantRoutes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, t, ok := rt.tenantRequest(w, r, auth.PermTenantAdmin)
		if !ok {
			return
		}
		meta, err := rt.keys.Describe(r.Context(), t.ID, t.KeyRef)
		if err != nil {
			rt.keyError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, viewKey(meta))
	})
}

func handleKeyPut(rt *tenantRoutes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, t, ok := rt.tenantRequest(w, r, auth.PermTenantAdmin)
		if !ok {
			return
		}
		id := t.ID
		var body validation.KeyPut
		if !rt.decodeJSON(w, r, &body) {
			return
		}
		in, err := rt.validator.KeyPut(body)
		if err != nil {
			rt.invalid(w, r, p, id, err)
			return
		}
		meta, created, err := rt.admin.SetKey(r.Context(), rt.actor(r, p), t.ID, t.KeyRef, in.APIKey)
		if err != nil {
			rt.adminError(w, r, err)
			return
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		writeJSON(w, status, viewKey(meta))
	})
}

func handleKeyDelete(rt *tenantRoutes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, t, ok := rt.tenantRequest(w, r, auth.PermTenantAdmin)
		if !ok {
			return
		}
		if _, err := rt.admin.DeleteKey(r.Context(), rt.actor(r, p), t.ID, t.KeyRef); err != nil {
			rt.adminError(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	})
}

// actor is who asks, for the admin service's audit records.
func (a *adminAPI) actor(r *http.Request, p *auth.Principal) admin.Actor {
	return admin.Actor{Sub: p.Subject, TokenFP: p.TokenFP, Source: a.source(r), RequestID: requestIDFrom(r.Context())}
}

// adminError answers an admin service error: a refused change whose record could not be
// written, or a provider error.
func (rt *tenantRoutes) adminError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, admin.ErrNotRecorded) {
		rt.auditUnavailable(w, r, err)
		return
	}
	rt.keyError(w, r, err)
}

// keyError answers a secrets provider error. Provider errors never carry key material, and
// their text stays in the log.
func (rt *tenantRoutes) keyError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "this tenant has no engine key")
	case errors.Is(err, secrets.ErrInvalid) && r.Method == http.MethodPut:
		writeProblemExt(w, r, http.StatusBadRequest, protocol.CodeValidationFailed, "the request is invalid", 0,
			map[string]string{"apiKey": "was not accepted by the secrets provider"})
	case errors.Is(err, secrets.ErrInvalid):
		// The tenant's keyRef names a secret the provider refuses to use for it (e.g. one not
		// tagged with the tenant): a state problem for the platform admin to fix, not a request error.
		rt.log.Warn("tenant key reference refused by the secrets provider", "path", r.URL.Path, "err", err)
		writeProblem(w, r, http.StatusConflict, codeConflict, "the tenant's key reference cannot be used; a platform admin must fix it")
	case errors.Is(err, secrets.ErrUnavailable):
		rt.log.Error("secrets provider unavailable", "path", r.URL.Path, "request_id", requestIDFrom(r.Context()), "err", err)
		writeProblem(w, r, http.StatusServiceUnavailable, protocol.CodeTenantKeyUnavailable, "the secrets provider is unavailable; retry later")
	default:
		rt.internalError(w, r, err)
	}
}
