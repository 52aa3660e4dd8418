package server

import (
	"context"
	"errors"
	"github.com/flowgate/flowgate/internal/tenant"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/validation"
)

// Tenant administration (DESIGN §8, §9):
//
//	GET   /v1/admin/tenants        platform:admin; ?limit=1-200 (default 50) &after=<id>
//	POST  /v1/admin/tenants        platform:admin; {"id","name"?,"limits"?} → 201, 409 if taken
//	GET   /v1/admin/tenants/{id}   platform:admin, or tenant:admin of that tenant
//	PATCH /v1/admin/tenants/{id}   platform:admin; tenant:admin of that tenant for "name" only
//
// PATCH sets the fields it names; "limits" replaces the tenant's limits as a whole ({} goes
// back to the server defaults).

// codeConflict answers a create whose id is taken.
const codeConflict = "conflict"

// Page sizes of the admin lists.
const (
	defaultAdminPage = 50
	maxAdminPage     = 200
)

// actionTimeout bounds the work of an admin change once it is on record. The work runs
// without the request's cancellation: a change that is recorded is carried through even if
// the client goes away.
const actionTimeout = 30 * time.Second

// tenantRoutes serves /v1/admin/tenants and a tenant's engine key (admin_keys.go).
type tenantRoutes struct {
	*adminAPI
	// store is read directly, not through the tenant cache: an admin sees the stored state.
	store TenantStore
	// admin makes every change, so the CLI and the API record and notify them alike.
	admin     *admin.Service
	validator *validation.Validator
	defaults  validation.Limits // the global bounds a tenant's limits are checked against
	keys      KeyAdmin
}

func handleTenantList(rt *tenantRoutes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := rt.authenticate(w, r)
		if !ok || !rt.authorize(w, r, p, "", auth.PermPlatformAdmin) {
			return
		}
		q, errs := queryParams(r.URL.Query(), "limit", "after")
		limit := pageLimit(q, errs)
		after, hasAfter := q["after"]
		if hasAfter && !tenant.ValidID(after) {
			errs.add("after", "must be a tenant id (the next value of the previous page)")
		}
		if errs.any() {
			rt.invalid(w, r, p, p.Tenant, errs.err())
			return
		}
		list, lerr := rt.store.ListTenants(r.Context(), limit+1, after)
		if lerr != nil {
			rt.internalError(w, r, lerr)
			return
		}
		out := struct {
			Tenants []admin.TenantView `json:"tenants"`
			Next    string             `json:"next,omitempty"`
		}{Tenants: make([]admin.TenantView, 0, min(len(list), limit))}
		if len(list) > limit {
			list = list[:limit]
			out.Next = list[limit-1].ID
		}
		for _, t := range list {
			out.Tenants = append(out.Tenants, admin.ViewTenant(t))
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func handleTenantCreate(rt *tenantRoutes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := rt.authenticate(w, r)
		if !ok || !rt.authorize(w, r, p, "", auth.PermPlatformAdmin) {
			return
		}
		var body validation.TenantCreate
		if !rt.decodeJSON(w, r, &body) {
			return
		}
		in, err := rt.validator.TenantCreate(body, rt.defaults)
		if err != nil {
			rt.invalid(w, r, p, p.Tenant, err)
			return
		}
		created, err := rt.admin.CreateTenant(r.Context(), rt.actor(r, p),
			tenant.Tenant{ID: in.ID, Name: in.Name, Limits: storeLimits(in.Limits)})
		if err != nil {
			rt.tenantError(w, r, err)
			return
		}
		w.Header().Set("Location", "/v1/admin/tenants/"+created.ID)
		writeJSON(w, http.StatusCreated, admin.ViewTenant(created))
	})
}

func handleTenantGet(rt *tenantRoutes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, t, ok := rt.tenantRequest(w, r, auth.PermTenantAdmin)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, admin.ViewTenant(t))
	})
}

func handleTenantPatch(rt *tenantRoutes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, current, ok := rt.tenantRequest(w, r, auth.PermTenantAdmin)
		if !ok {
			return
		}
		id := current.ID
		var body validation.TenantPatch
		if !rt.decodeJSON(w, r, &body) {
			return
		}
		in, err := rt.validator.TenantPatch(body, rt.defaults)
		if err != nil {
			rt.invalid(w, r, p, id, err)
			return
		}
		// A tenant admin may rename its tenant; suspending it or raising its own limits is
		// the platform's decision.
		if (in.Status != nil || in.Limits != nil) && !p.Has(auth.PermPlatformAdmin) {
			rt.auditDenied(r, p, "status and limits need platform:admin", id)
			writeProblem(w, r, http.StatusForbidden, protocol.CodeForbidden, "only a platform admin may change a tenant's status or limits")
			return
		}
		updated, err := rt.admin.UpdateTenant(r.Context(), rt.actor(r, p), id, func(t *tenant.Tenant) {
			if in.Name != nil {
				t.Name = *in.Name
			}
			if in.Status != nil {
				t.Status = *in.Status
			}
			if in.Limits != nil {
				t.Limits = storeLimits(in.Limits)
			}
		})
		if err != nil {
			rt.tenantError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, admin.ViewTenant(updated))
	})
}

// tenantRequest is the start of every /v1/admin/tenants/{id}/… handler: authenticate, check
// perms and the tenant scope, then read the tenant.
func (rt *tenantRoutes) tenantRequest(w http.ResponseWriter, r *http.Request, perms ...string) (*auth.Principal, tenant.Tenant, bool) {
	id := r.PathValue("id")
	p, ok := rt.authenticate(w, r)
	if !ok || !rt.authorize(w, r, p, id, perms...) {
		return nil, tenant.Tenant{}, false
	}
	t, ok := rt.loadTenant(w, r, id)
	return p, t, ok
}

// loadTenant reads tenant id from the store (not the cache: an admin sees the stored state)
// and answers 404 when it does not exist.
func (rt *tenantRoutes) loadTenant(w http.ResponseWriter, r *http.Request, id string) (tenant.Tenant, bool) {
	if !tenant.ValidID(id) {
		writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "no such resource")
		return tenant.Tenant{}, false
	}
	t, err := rt.store.GetTenant(r.Context(), id)
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "no such resource")
		return tenant.Tenant{}, false
	case err != nil:
		rt.internalError(w, r, err)
		return tenant.Tenant{}, false
	}
	return t, true
}

// tenantError answers an admin service error of a tenant change.
func (rt *tenantRoutes) tenantError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, admin.ErrNotRecorded):
		rt.auditUnavailable(w, r, err)
	case errors.Is(err, tenant.ErrExists):
		writeProblem(w, r, http.StatusConflict, codeConflict, "a tenant with this id already exists")
	case errors.Is(err, tenant.ErrNotFound):
		writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "no such resource")
	default:
		rt.internalError(w, r, err)
	}
}

// actionContext is the context of a change that is already on record.
func actionContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), actionTimeout)
}

// storeLimits converts validated limits (nil = server defaults) into the stored form.
func storeLimits(l *validation.TenantLimits) tenant.Limits {
	if l == nil {
		return tenant.Limits{}
	}
	cp := func(p *int) *int {
		if p == nil {
			return nil
		}
		v := *p
		return &v
	}
	return tenant.Limits{
		ConcurrentTasks: cp(l.ConcurrentTasks), SwarmsPerMinute: cp(l.SwarmsPerMinute),
		SwarmBurst: cp(l.SwarmBurst), MaxAgents: cp(l.MaxAgents),
		AllowedStrategies: append([]string(nil), l.AllowedStrategies...),
		BudgetUSDPerDay:   clonePtr(l.BudgetUSDPerDay), TokensPerDay: clonePtr(l.TokensPerDay),
	}
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// fieldErrs collects query parameter problems in the shape of a validation.Error.
type fieldErrs map[string]string

func (f fieldErrs) add(field, msg string) {
	if _, dup := f[field]; !dup {
		f[field] = msg
	}
}

func (f fieldErrs) any() bool { return len(f) > 0 }

func (f fieldErrs) err() error { return &validation.Error{Fields: f} }

// maxQueryParams bounds how many unknown parameters are named in an answer.
const maxQueryParams = 8

// queryParams reads the single-valued parameters in allowed from q. Unknown and repeated
// parameters are errors, like unknown fields in a body.
func queryParams(q url.Values, allowed ...string) (map[string]string, fieldErrs) {
	out := map[string]string{}
	errs := fieldErrs{}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	unknown := 0
	for _, k := range keys {
		known := false
		for _, a := range allowed {
			if k == a {
				known = true
				break
			}
		}
		switch {
		case !known:
			unknown++
			if unknown <= maxQueryParams {
				errs.add(trimField(k), "is not a known parameter (allowed: "+strings.Join(allowed, ", ")+")")
			}
		case len(q[k]) != 1:
			errs.add(k, "must be given once")
		default:
			out[k] = q[k][0]
		}
	}
	if unknown > maxQueryParams {
		errs.add("query", strconv.Itoa(unknown-maxQueryParams)+" more unknown parameters")
	}
	return out, errs
}

// trimField bounds a client-chosen parameter name echoed in an answer.
func trimField(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.ToValidUTF8(s, "?")
}

// pageLimit reads ?limit= (1-maxAdminPage, default defaultAdminPage) into errs.
func pageLimit(q map[string]string, errs fieldErrs) int {
	return limitParam(q, errs, defaultAdminPage, maxAdminPage)
}

// limitParam reads ?limit= (1-most, default def), reporting a bad value in errs.
func limitParam(q map[string]string, errs fieldErrs, def, most int) int {
	raw, ok := q["limit"]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(raw)
	if err != nil || len(raw) > 12 || n < 1 || n > most {
		errs.add("limit", "must be an integer between 1 and "+strconv.Itoa(most))
		return def
	}
	return n
}

// methodNotAllowed answers a known path with a method it does not serve.
func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeProblem(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "this route answers "+allow)
	})
}
