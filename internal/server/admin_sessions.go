package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/session"
)

// A tenant's live sessions (DESIGN §19):
//
//	GET    /v1/admin/tenants/{id}/sessions?limit=          → 200 {"sessions":[…],"complete":true}
//	DELETE /v1/admin/tenants/{id}/sessions/{sid}           → 204 (also ?session={sid} on the collection)
//
// tenant:admin of that tenant, or platform:admin. A terminated session is closed with 1008
// session_terminated, on whichever replica holds it, and audited session.terminate.

// SessionLister lists a tenant's live sessions; complete is false when a replica did not
// answer in time.
type SessionLister interface {
	ListSessions(ctx context.Context, tenant string, limit int) (list []session.Info, complete bool, err error)
}

// maxSessionList bounds one answer; defaultSessionList is a page without ?limit=.
const (
	maxSessionList     = 1000
	defaultSessionList = 200
)

// sessionListed is one live session: whose, from where, since when. Never the token.
type sessionListed struct {
	SessionID     string `json:"sessionId"`
	Sub           string `json:"sub"`
	JTI           string `json:"jti,omitempty"`
	IP            string `json:"ip,omitempty"`
	Origin        string `json:"origin,omitempty"`
	UserAgent     string `json:"userAgent,omitempty"`
	ConnectedAt   string `json:"connectedAt"`
	Subscriptions int    `json:"subscriptions"`
	Node          string `json:"node,omitempty"`
}

// sessionRoutes serves a tenant's live sessions.
type sessionRoutes struct {
	*adminAPI
	// sessions is nil when this process cannot list them.
	sessions SessionLister
	// admin ends a session, on whichever replica holds it, and records it.
	admin *admin.Service
}

func handleSessionList(rt *sessionRoutes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, p, ok := rt.tenantAdmin(w, r)
		if !ok {
			return
		}
		q, errs := queryParams(r.URL.Query(), "limit")
		limit := limitParam(q, errs, defaultSessionList, maxSessionList)
		if errs.any() {
			rt.invalid(w, r, p, id, errs.err())
			return
		}
		if rt.sessions == nil {
			writeProblem(w, r, http.StatusServiceUnavailable, protocol.CodeInternal, "sessions cannot be listed here")
			return
		}
		list, complete, err := rt.sessions.ListSessions(r.Context(), id, limit)
		if err != nil {
			rt.internalError(w, r, err)
			return
		}
		out := struct {
			Sessions []sessionListed `json:"sessions"`
			// Complete is false when a replica did not answer in time: the list may miss its
			// sessions.
			Complete bool `json:"complete"`
		}{Sessions: make([]sessionListed, 0, len(list)), Complete: complete}
		for _, s := range list {
			out.Sessions = append(out.Sessions, sessionListed{SessionID: s.ID, Sub: s.Subject, JTI: s.JTI, IP: s.IP,
				Origin: s.Origin, UserAgent: s.UserAgent, ConnectedAt: apiTime(s.ConnectedAt), Subscriptions: s.Subscriptions, Node: s.Node})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// handleSessionTerminate ends one live session of the tenant: {sid} in the path, or
// ?session= on the collection.
func handleSessionTerminate(rt *sessionRoutes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, p, ok := rt.tenantAdmin(w, r)
		if !ok {
			return
		}
		sid := r.PathValue("sid")
		errs := fieldErrs{}
		if sid == "" {
			var q map[string]string
			q, errs = queryParams(r.URL.Query(), "session")
			sid = q["session"]
			if sid == "" {
				errs.add("session", "is required")
			}
		}
		if len(sid) > 128 || !printableASCII(sid) {
			errs.add("session", "is not a session id")
		}
		if errs.any() {
			rt.invalid(w, r, p, id, errs.err())
			return
		}
		err := rt.admin.TerminateSession(r.Context(), rt.actor(r, p), id, sid)
		switch {
		case errors.Is(err, admin.ErrNoSession):
			writeProblem(w, r, http.StatusNotFound, protocol.CodeNotFound, "no such live session")
		case errors.Is(err, admin.ErrNotRecorded):
			rt.auditUnavailable(w, r, err)
		case errors.Is(err, admin.ErrUnavailable):
			writeProblem(w, r, http.StatusServiceUnavailable, protocol.CodeInternal, "sessions cannot be ended here")
		case err != nil:
			rt.internalError(w, r, err)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
