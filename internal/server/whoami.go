package server

import (
	"net/http"
	"net/url"

	"github.com/flowgate/flowgate/internal/protocol"
)

// GET /v1/whoami answers who a bearer token is (tenant, subject, permissions, expiry) or why
// it is refused (problem `code` and `reason`: token_expired, origin_not_allowed, …). A
// WebSocket client learns nothing from a refused handshake (browsers report close 1006), so
// the SDK asks here to tell the user why (DESIGN §19). It is audited like any API call.

type whoami struct {
	Tenant      string   `json:"tenant"`
	Sub         string   `json:"sub"`
	Permissions []string `json:"permissions"`
	JTI         string   `json:"jti,omitempty"`
	ExpiresAt   string   `json:"expiresAt,omitempty"`
}

func handleWhoami(authn *authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := authn.authenticate(w, r)
		if !ok {
			return
		}
		perms := p.Permissions
		if perms == nil {
			perms = []string{}
		}
		writeJSON(w, http.StatusOK, whoami{Tenant: p.Tenant, Sub: p.Subject, Permissions: perms, JTI: p.JTI, ExpiresAt: protocol.Time(p.ExpiresAt)})
	})
}

// withCORS lets pages on other origins read the answers of the two endpoints a browser
// client calls before its WebSocket: POST /v1/ws-ticket and GET /v1/whoami. The Origin is
// reflected whether or not it is allowed, because both handlers refuse a disallowed Origin
// themselves (403 origin_not_allowed) before anything else: what such a page can read is
// that refusal, which is what it needs to show. No cookies are involved (no
// Allow-Credentials): the token travels in the Authorization header.
func withCORS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		if o, ok := corsOrigin(r); ok {
			w.Header().Set("Access-Control-Allow-Origin", o)
			w.Header().Set("Access-Control-Expose-Headers", "Retry-After, X-Request-Id")
		}
		h.ServeHTTP(w, r)
	})
}

// handlePreflight answers a CORS preflight for those endpoints: the Authorization and
// Content-Type headers, for ten minutes.
func handlePreflight(methods string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		o, ok := corsOrigin(r)
		if !ok || r.Header.Get("Access-Control-Request-Method") == "" {
			w.Header().Set("Allow", methods+", OPTIONS")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", o)
		w.Header().Set("Access-Control-Allow-Methods", methods)
		w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}

// corsOrigin is the request's Origin when it is one http(s) origin (not "null", no path).
func corsOrigin(r *http.Request) (string, bool) {
	vals := r.Header.Values("Origin")
	if len(vals) != 1 || len(vals[0]) > 256 {
		return "", false
	}
	u, err := url.Parse(vals[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.User != nil || u.RawQuery != "" {
		return "", false
	}
	return vals[0], true
}
