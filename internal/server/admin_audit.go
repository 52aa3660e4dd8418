package server

import (
	"encoding/json"
	"errors"
	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/tenant"
	"net/http"
	"sync"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/validation"
)

// Audit review (DESIGN §9, §10), audit:read of the caller's own tenant or platform:admin:
//
//	GET /v1/admin/audit          one page, newest first: {"records":[…],"nextCursor":"…"}
//	                             filters actor, action, outcome, since, until, limit, cursor
//	GET /v1/admin/audit/export   every matching record as NDJSON, chain by chain in seq order
//	                             (re-verifiable from the file); same filters but limit, cursor
//	GET /v1/admin/audit/verify   the verification report; 200 with ok:false when broken
//
// The scope is the token's own tenant chain. Only platform:admin may choose another with
// ?tenant=: a tenant id, @platform (the platform chain) or @all (every chain; "*" too). A
// scope the token cannot reach answers 404 with an authz.denied record, like every admin
// route: the answer never says whether another tenant exists. Filters only narrow a scope;
// cursors are bound to the filter (scope included) they were issued for and never carry it.

const (
	// scopeAllParam is ?tenant=@all, the URL-friendly spelling of audit.ScopeAll.
	scopeAllParam = "@all"
	// maxAuditWalks bounds the exports and verifications one process runs at once, and
	// maxTenantWalks those started by one tenant's tokens: each walks whole chains (an export
	// as slowly as its client reads), so an audit:read token must neither start them without
	// limit nor keep every other tenant's reviewers out.
	maxAuditWalks  = 8
	maxTenantWalks = 2
	// auditBusyRetry is the retryAfter of a walk refused because all slots are taken.
	auditBusyRetry = 2 * time.Second
)

// auditRoutes serves the three audit routes and counts the walks in progress.
type auditRoutes struct {
	*adminAPI
	validator *validation.Validator
	auditLog  AuditReader
	// admin runs exports, which are recorded as they stream.
	admin *admin.Service

	mu sync.Mutex
	// walks counts walks by the caller's tenant; total is their sum. The map holds only
	// tenants with a walk running, so it is bounded by maxAuditWalks.
	walks map[string]int
	total int
}

func newAuditRoutes(api *adminAPI, validator *validation.Validator, auditLog AuditReader, svc *admin.Service) *auditRoutes {
	return &auditRoutes{adminAPI: api, validator: validator, auditLog: auditLog, admin: svc, walks: map[string]int{}}
}

// auditPage is the answer of GET /v1/admin/audit. Each record is its canonical JSON (the form
// the hash covers, plus "hash"), so a reviewer can recompute every hash from the answer.
type auditPage struct {
	Records    []json.RawMessage `json:"records"`
	NextCursor string            `json:"nextCursor"`
}

// scope reads ?tenant= (removing it from the values the filters are read from) and authorizes
// the caller for the scope it names, or for its own tenant without it. It answers and returns
// false when the request must stop; a malformed tenant is reported in errs after the caller's
// own scope was authorized (so a token without audit:read learns nothing about parameters).
func (a *auditRoutes) scope(w http.ResponseWriter, r *http.Request, p *auth.Principal, vals map[string][]string, errs fieldErrs) (string, bool) {
	raw, given := vals["tenant"]
	delete(vals, "tenant")
	switch {
	case !given:
	case len(raw) != 1:
		errs.add("tenant", "must be given once")
	case raw[0] == audit.ScopePlatform, raw[0] == scopeAllParam, raw[0] == audit.ScopeAll:
		scope := audit.ScopePlatform
		if raw[0] != audit.ScopePlatform {
			scope = audit.ScopeAll
		}
		if !p.Has(auth.PermPlatformAdmin) {
			// Beyond any one tenant: answered like another tenant's scope.
			a.auditDenied(r, p, "tenant scope", raw[0])
			writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "no such resource")
			return "", false
		}
		return scope, true
	case tenant.ValidID(raw[0]):
		if !a.authorize(w, r, p, raw[0], auth.PermAuditRead) {
			return "", false
		}
		return raw[0], true
	default:
		errs.add("tenant", "must be a tenant id, @platform or @all")
	}
	if !a.authorize(w, r, p, p.Tenant, auth.PermAuditRead) {
		return "", false
	}
	return p.Tenant, true
}

// filters reads and validates the filter parameters; export refuses limit and cursor, which
// only page a query.
func (a *auditRoutes) filters(w http.ResponseWriter, r *http.Request, p *auth.Principal, export bool) (audit.Filter, bool) {
	vals := r.URL.Query()
	errs := fieldErrs{}
	scope, ok := a.scope(w, r, p, vals, errs)
	if !ok {
		return audit.Filter{}, false
	}
	if export {
		for _, k := range []string{"limit", "cursor"} {
			if _, ok := vals[k]; ok {
				errs.add(k, "is not a parameter of an export (it streams every matching record)")
				delete(vals, k)
			}
		}
	}
	q, err := a.validator.AuditQuery(vals)
	if err != nil {
		var ve *validation.Error
		if !errors.As(err, &ve) {
			a.internalError(w, r, err)
			return audit.Filter{}, false
		}
		for k, v := range ve.Fields {
			errs.add(k, v)
		}
	}
	if errs.any() {
		a.invalid(w, r, p, p.Tenant, errs.err())
		return audit.Filter{}, false
	}
	f := audit.Filter{
		Tenant: scope, Actor: q.Actor, Action: q.Action, Outcome: q.Outcome, Limit: q.Limit, Cursor: q.Cursor,
	}
	if q.Since != nil {
		f.Since = *q.Since
	}
	if q.Until != nil {
		f.Until = *q.Until
	}
	return f, true
}

// filterError answers a filter the audit package refused: a cursor issued for another filter
// or scope, or a value it does not accept.
func (a *auditRoutes) filterError(w http.ResponseWriter, r *http.Request, p *auth.Principal, err error) {
	switch {
	case errors.Is(err, audit.ErrInvalidCursor):
		a.invalid(w, r, p, p.Tenant, fieldErrs{"cursor": "must be the nextCursor of a previous page of the same query"}.err())
	case errors.Is(err, audit.ErrInvalidFilter), errors.Is(err, audit.ErrScopeRequired):
		a.invalid(w, r, p, p.Tenant, fieldErrs{"query": "the filter is not accepted"}.err())
	default:
		a.internalError(w, r, err)
	}
}

// acquire takes a walk slot for a caller of tenant or answers 429.
func (a *auditRoutes) acquire(w http.ResponseWriter, r *http.Request, tenant string) (release func(), ok bool) {
	a.mu.Lock()
	if a.total >= maxAuditWalks || a.walks[tenant] >= maxTenantWalks {
		a.mu.Unlock()
		a.metrics.rejected("audit_walks")
		writeProblemExt(w, r, http.StatusTooManyRequests, protocol.CodeRateLimited,
			"too many audit exports and verifications are running; retry later", auditBusyRetry, nil)
		return nil, false
	}
	a.total++
	a.walks[tenant]++
	a.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			a.total--
			if a.walks[tenant]--; a.walks[tenant] <= 0 {
				delete(a.walks, tenant)
			}
		})
	}, true
}

func (a *auditRoutes) handleQuery() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.authenticate(w, r)
		if !ok {
			return
		}
		f, ok := a.filters(w, r, p, false)
		if !ok {
			return
		}
		recs, next, err := a.auditLog.Query(r.Context(), f)
		if err != nil {
			a.filterError(w, r, p, err)
			return
		}
		out := auditPage{Records: make([]json.RawMessage, 0, len(recs)), NextCursor: next}
		for _, rec := range recs {
			b, err := audit.MarshalCanonical(rec)
			if err != nil {
				a.internalError(w, r, err)
				return
			}
			out.Records = append(out.Records, b)
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func (a *auditRoutes) handleExport() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			// An export is recorded as one; a HEAD would record an export that sent nothing.
			methodNotAllowed("GET").ServeHTTP(w, r)
			return
		}
		p, ok := a.authenticate(w, r)
		if !ok {
			return
		}
		f, ok := a.filters(w, r, p, true)
		if !ok {
			return
		}
		release, ok := a.acquire(w, r, p.Tenant)
		if !ok {
			return
		}
		defer release()
		sw := &lazyStream{w: w}
		err := a.admin.ExportAudit(r.Context(), a.actor(r, p), f, p.Tenant, sw)
		switch {
		case err == nil:
			sw.start()
			return
		case errors.Is(err, admin.ErrNotRecorded):
			a.auditUnavailable(w, r, err)
			return
		}
		a.log.Error("audit export failed", "request_id", requestIDFrom(r.Context()), "scope", f.Tenant, "err", err)
		if !sw.started {
			writeProblem(w, r, http.StatusInternalServerError, protocol.CodeInternal, "internal error")
			return
		}
		// The 200 and part of the body are gone: break the response off so the client sees a
		// truncated transfer, never what looks like a complete export.
		panic(http.ErrAbortHandler)
	})
}

// lazyStream sends the NDJSON headers and 200 with the first line, so an export that fails
// before writing anything can still answer with an error status.
type lazyStream struct {
	w       http.ResponseWriter
	started bool
}

func (s *lazyStream) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Disposition", `attachment; filename="flowgate-audit.ndjson"`)
	s.w.WriteHeader(http.StatusOK)
}

func (s *lazyStream) Write(b []byte) (int, error) {
	s.start()
	return s.w.Write(b)
}

func (a *auditRoutes) handleVerify() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.authenticate(w, r)
		if !ok {
			return
		}
		vals := r.URL.Query()
		errs := fieldErrs{}
		scope, ok := a.scope(w, r, p, vals, errs)
		if !ok {
			return
		}
		_, more := queryParams(vals, "tenant")
		for k, v := range more {
			errs.add(k, v)
		}
		if errs.any() {
			a.invalid(w, r, p, p.Tenant, errs.err())
			return
		}
		release, ok := a.acquire(w, r, p.Tenant)
		if !ok {
			return
		}
		defer release()
		var opts audit.VerifyOptions
		if scope != audit.ScopeAll {
			opts.Tenant = &scope
		}
		rep, err := a.auditLog.Verify(r.Context(), opts)
		if err != nil {
			a.internalError(w, r, err)
			return
		}
		if p := rep.FirstProblem; p != nil {
			a.log.Error("audit chain fails verification", "chain", chainLabel(p.Tenant), "seq", p.Seq,
				"kind", string(p.Kind), "detail", p.Detail, "request_id", requestIDFrom(r.Context()))
		}
		writeJSON(w, http.StatusOK, rep)
	})
}

// chainLabel names a chain in logs: audit.ScopePlatform for the platform chain.
func chainLabel(tenant string) string {
	if tenant == "" {
		return audit.ScopePlatform
	}
	return tenant
}
