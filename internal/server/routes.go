package server

import (
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/flowgate/flowgate/internal/protocol"
)

// Public returns the public listener's handler: every route of DESIGN §9 in one place.
func Public(d *Deps) http.Handler {
	d.origins = newOriginPolicy(d.Origins)
	d.authFlood = newAuthFlood(d.AuthFailureBurst)
	d.writeBufferPool = &sync.Pool{}
	if d.Draining == nil {
		d.Draining = func() bool { return false }
	}
	mux := http.NewServeMux()
	ws := handleWS(d)
	mux.Handle("GET /ws", ws)
	mux.Handle("GET /{$}", handleRoot(d, ws))
	mux.Handle("GET /healthz", handleHealth())
	mux.Handle("GET /readyz", handleReady(d))
	mux.Handle("GET /.well-known/jwks.json", handleJWKS(d))
	mux.Handle("POST /v1/ws-ticket", withCORS(handleTicket(d)))
	mux.Handle("OPTIONS /v1/ws-ticket", handlePreflight("POST"))
	mux.Handle("GET /v1/whoami", withCORS(handleWhoami(d)))
	mux.Handle("OPTIONS /v1/whoami", handlePreflight("GET"))
	mux.Handle("GET /v1/openapi.json", handleOpenAPI())

	// Tenants and keys (admin_tenants.go, admin_keys.go).
	mux.Handle("GET /v1/admin/tenants", handleTenantList(d))
	mux.Handle("POST /v1/admin/tenants", handleTenantCreate(d))
	mux.Handle("/v1/admin/tenants", methodNotAllowed("GET, POST"))
	mux.Handle("GET /v1/admin/tenants/{id}", handleTenantGet(d))
	mux.Handle("PATCH /v1/admin/tenants/{id}", handleTenantPatch(d))
	mux.Handle("/v1/admin/tenants/{id}", methodNotAllowed("GET, PATCH"))
	mux.Handle("GET /v1/admin/tenants/{id}/key", handleKeyGet(d))
	mux.Handle("PUT /v1/admin/tenants/{id}/key", handleKeyPut(d))
	mux.Handle("DELETE /v1/admin/tenants/{id}/key", handleKeyDelete(d))
	mux.Handle("/v1/admin/tenants/{id}/key", methodNotAllowed("GET, PUT, DELETE"))

	// Live sessions (admin_sessions.go).
	mux.Handle("GET /v1/admin/tenants/{id}/sessions", handleSessionList(d))
	mux.Handle("DELETE /v1/admin/tenants/{id}/sessions", handleSessionTerminate(d))
	mux.Handle("/v1/admin/tenants/{id}/sessions", methodNotAllowed("GET, DELETE"))
	mux.Handle("DELETE /v1/admin/tenants/{id}/sessions/{sid}", handleSessionTerminate(d))
	mux.Handle("/v1/admin/tenants/{id}/sessions/{sid}", methodNotAllowed("DELETE"))

	// Tokens and revocation (admin_tokens.go).
	mux.Handle("POST /v1/admin/tenants/{id}/tokens", handleTokenIssue(d))
	mux.Handle("GET /v1/admin/tenants/{id}/tokens", handleTokenList(d))
	mux.Handle("/v1/admin/tenants/{id}/tokens", methodNotAllowed("GET, POST"))
	mux.Handle("POST /v1/admin/tokens/revoke", handleTokenRevoke(d))
	mux.Handle("/v1/admin/tokens/revoke", methodNotAllowed("POST"))

	// Tasks (admin_tasks.go).
	mux.Handle("GET /v1/admin/tasks", handleTaskList(d))
	mux.Handle("/v1/admin/tasks", methodNotAllowed("GET"))
	// Usage (admin_usage.go).
	mux.Handle("GET /v1/admin/usage", handleUsage(d))
	mux.Handle("/v1/admin/usage", methodNotAllowed("GET"))

	// Audit review (admin_audit.go).
	ar := newAuditRoutes(d)
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
	h = d.withIPLimit(h)
	h = withSecurityHeaders(h)
	h = withAccessLog(d.Logger, d.clientIP, h)
	h = withRecover(d.Logger, h)
	h = withHTTPMetrics(d.RequestMetrics, mux, h) // inside withRequestID: see there
	h = withRequestID(h)
	return h
}

// Ops returns the operator listener's handler: metrics, pprof and health, never public.
func Ops(d *Deps) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", handleHealth())
	mux.Handle("GET /readyz", handleReady(d))
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
func handleRoot(d *Deps, ws http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			ws.ServeHTTP(w, r)
			return
		}
		if d.UI != nil {
			http.Redirect(w, r, "/ui/", http.StatusFound)
			return
		}
		writeProblem(w, r, http.StatusNotFound, "not_found", "no such route")
	})
}

// withIPLimit puts every request of the public listener through the per-address limiter
// (limits.ip_handshakes_per_second, the same bucket as WebSocket handshakes) before any other
// work: authentication, the Origin check and their audit records come after it. WebSocket
// upgrades take their bucket in the handshake itself; health probes are exempt (load
// balancers poll them from a few addresses).
func (d *Deps) withIPLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz" || r.URL.Path == "/readyz", websocket.IsWebSocketUpgrade(r), d.Limiter == nil:
		default:
			if dec := d.Limiter.Allow("hs:"+d.clientBlock(r), rate.Limit(d.Limits.IPHandshakesPerSecond), d.Limits.IPHandshakeBurst, time.Now()); !dec.OK {
				d.metrics().rejected("handshake_ip")
				writeProblemExt(w, r, http.StatusTooManyRequests, protocol.CodeRateLimited, "too many requests from this address", dec.RetryAfter, nil)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
