package server

import (
	"net/http"
	"net/http/pprof"
	"sync"
)

// Public returns the public listener's handler: every route of DESIGN §9 in one place.
// Deps is split here into what each family of routes uses, so that a handler's signature
// says what it can reach.
func Public(d *Deps) http.Handler {
	d.authFlood = newAuthFlood(d.AuthFailureBurst)
	authn := &authenticator{
		log: d.Logger, verifier: d.Verifier, tickets: d.Tickets, revocations: d.Revocations, tenants: d.Tenants,
		audit: d.Audit, flood: d.authFlood, ips: d.IPs, origins: newOriginPolicy(d.Origins), queryTokens: d.QueryTokens,
		metrics: metricsShim{d.Metrics},
	}
	draining := d.Draining
	if draining == nil {
		draining = func() bool { return false }
	}
	hs := &handshake{authenticator: authn, limits: d.Limits, limiter: d.Limiter, conns: d.Conns, hub: d.Hub,
		draining: draining, writeBuffers: &sync.Pool{}}
	api := &adminAPI{authenticator: authn, maxBody: d.MaxBodySize}
	tenants := &tenantRoutes{adminAPI: api, store: d.Store, admin: d.Admin, validator: d.Validator,
		defaults: d.TenantDefaults, keys: d.Keys}
	sessions := &sessionRoutes{adminAPI: api, sessions: d.Sessions, admin: d.Admin}
	tokens := &tokenRoutes{adminAPI: api, signer: d.Signer, validator: d.Validator, admin: d.Admin,
		revokeCancelsTasks: d.RevokeCancelsTasks}

	mux := http.NewServeMux()
	ws := handleWS(hs)
	mux.Handle("GET /ws", ws)
	mux.Handle("GET /{$}", handleRoot(d.UI, ws))
	mux.Handle("GET /healthz", handleHealth())
	mux.Handle("GET /readyz", handleReady(d.Ready, draining, d.Logger))
	mux.Handle("GET /.well-known/jwks.json", handleJWKS(d.Signer))
	mux.Handle("POST /v1/ws-ticket", withCORS(handleTicket(authn, d.Tickets, d.Logger)))
	mux.Handle("OPTIONS /v1/ws-ticket", handlePreflight("POST"))
	mux.Handle("GET /v1/whoami", withCORS(handleWhoami(authn)))
	mux.Handle("OPTIONS /v1/whoami", handlePreflight("GET"))
	mux.Handle("GET /v1/openapi.json", handleOpenAPI())

	// Tenants and keys (admin_tenants.go, admin_keys.go).
	mux.Handle("GET /v1/admin/tenants", handleTenantList(tenants))
	mux.Handle("POST /v1/admin/tenants", handleTenantCreate(tenants))
	mux.Handle("/v1/admin/tenants", methodNotAllowed("GET, POST"))
	mux.Handle("GET /v1/admin/tenants/{id}", handleTenantGet(tenants))
	mux.Handle("PATCH /v1/admin/tenants/{id}", handleTenantPatch(tenants))
	mux.Handle("/v1/admin/tenants/{id}", methodNotAllowed("GET, PATCH"))
	mux.Handle("GET /v1/admin/tenants/{id}/key", handleKeyGet(tenants))
	mux.Handle("PUT /v1/admin/tenants/{id}/key", handleKeyPut(tenants))
	mux.Handle("DELETE /v1/admin/tenants/{id}/key", handleKeyDelete(tenants))
	mux.Handle("/v1/admin/tenants/{id}/key", methodNotAllowed("GET, PUT, DELETE"))

	// Live sessions (admin_sessions.go).
	mux.Handle("GET /v1/admin/tenants/{id}/sessions", handleSessionList(sessions))
	mux.Handle("DELETE /v1/admin/tenants/{id}/sessions", handleSessionTerminate(sessions))
	mux.Handle("/v1/admin/tenants/{id}/sessions", methodNotAllowed("GET, DELETE"))
	mux.Handle("DELETE /v1/admin/tenants/{id}/sessions/{sid}", handleSessionTerminate(sessions))
	mux.Handle("/v1/admin/tenants/{id}/sessions/{sid}", methodNotAllowed("DELETE"))

	// Tokens and revocation (admin_tokens.go).
	mux.Handle("POST /v1/admin/tenants/{id}/tokens", handleTokenIssue(tokens))
	mux.Handle("GET /v1/admin/tenants/{id}/tokens", handleTokenList(tokens))
	mux.Handle("/v1/admin/tenants/{id}/tokens", methodNotAllowed("GET, POST"))
	mux.Handle("POST /v1/admin/tokens/revoke", handleTokenRevoke(tokens))
	mux.Handle("/v1/admin/tokens/revoke", methodNotAllowed("POST"))

	// Tasks (admin_tasks.go).
	mux.Handle("GET /v1/admin/tasks", handleTaskList(api, d.Store))
	mux.Handle("/v1/admin/tasks", methodNotAllowed("GET"))
	// Usage (admin_usage.go).
	mux.Handle("GET /v1/admin/usage", handleUsage(api, d.Store))
	mux.Handle("/v1/admin/usage", methodNotAllowed("GET"))

	// Audit review (admin_audit.go).
	ar := newAuditRoutes(api, d.Validator, d.AuditLog, d.Admin)
	mux.Handle("GET /v1/admin/audit", ar.handleQuery())
	mux.Handle("/v1/admin/audit", methodNotAllowed("GET"))
	mux.Handle("GET /v1/admin/audit/export", ar.handleExport())
	mux.Handle("/v1/admin/audit/export", methodNotAllowed("GET"))
	mux.Handle("GET /v1/admin/audit/verify", ar.handleVerify())
	mux.Handle("/v1/admin/audit/verify", methodNotAllowed("GET"))

	if d.UI != nil {
		mux.Handle("GET /ui/", d.UI)
		mux.Handle("GET /sdk/", d.UI)
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, http.StatusNotFound, "not_found", "no such route")
	}))
	var h http.Handler = mux
	h = hs.withIPLimit(h)
	h = withSecurityHeaders(h)
	h = withAccessLog(d.Logger, authn.clientIP, h)
	h = withRecover(d.Logger, h)
	h = withHTTPMetrics(d.RequestMetrics, mux, h) // inside withRequestID: see there
	h = withRequestID(h)
	return h
}

// Ops returns the operator listener's handler: metrics, pprof and health, never public.
func Ops(d *Deps) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", handleHealth())
	mux.Handle("GET /readyz", handleReady(d.Ready, d.Draining, d.Logger))
	if d.MetricsHandler != nil {
		mux.Handle("GET /metrics", d.MetricsHandler)
	}
	if d.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return withRecover(d.Logger, withRequestID(mux))
}

// handleRoot serves seed clients, which open their WebSocket on "/"; a browser visiting
// "/" is sent to the dashboard.
func handleRoot(ui, ws http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			ws.ServeHTTP(w, r)
			return
		}
		if ui != nil {
			http.Redirect(w, r, "/ui/", http.StatusFound)
			return
		}
		writeProblem(w, r, http.StatusNotFound, "not_found", "no such route")
	})
}
