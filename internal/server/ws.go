package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/ratelimit"
	"github.com/flowgate/flowgate/internal/session"
)

// handshake is what a WebSocket handshake needs besides authentication: the per-address
// bucket and connection caps it takes before any other work, and the hub its session
// starts in.
type handshake struct {
	*authenticator
	limits   config.Limits
	limiter  *ratelimit.Limiter
	conns    ConnCounter
	hub      *session.Hub
	draining func() bool // new connections are refused once shutdown began
	// writeBuffers is shared by every connection: an idle one holds no write buffer.
	writeBuffers *sync.Pool
}

// withIPLimit puts every request of the public listener through the per-address limiter
// (limits.ip_handshakes_per_second, the same bucket as WebSocket handshakes) before any other
// work: authentication, the Origin check and their audit records come after it. WebSocket
// upgrades take their bucket in the handshake itself; health probes are exempt (load
// balancers poll them from a few addresses).
func (hs *handshake) withIPLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz" || r.URL.Path == "/readyz", websocket.IsWebSocketUpgrade(r), hs.limiter == nil:
		default:
			if dec := hs.limiter.Allow("hs:"+hs.clientBlock(r), rate.Limit(hs.limits.IPHandshakesPerSecond), hs.limits.IPHandshakeBurst, time.Now()); !dec.OK {
				hs.metrics.rejected("handshake_ip")
				writeProblemExt(w, r, http.StatusTooManyRequests, protocol.CodeRateLimited, "too many requests from this address", dec.RetryAfter, nil)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// handleWS authenticates a WebSocket handshake and hands the connection to a session.
// Every refusal happens before the upgrade, as an HTTP status with a problem+json body, and
// leaves an audit record; nothing about the session exists until all checks pass.
func handleWS(hs *handshake) http.Handler {
	up := &websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// Zero: gorilla reads through the buffered reader the hijack returns, which
		// session.HijackReader makes (see there).
		ReadBufferSize:    0,
		WriteBufferSize:   4096,
		WriteBufferPool:   hs.writeBuffers,
		Subprotocols:      []string{protocol.Name},
		EnableCompression: false,
		// Origin is checked below, before authentication, with the configured policy.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			writeProblem(w, r, status, "bad_handshake", "not a valid WebSocket handshake")
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		ip := hs.clientIP(r)
		// Caps and rate limits count an IPv6 client's whole /64: one host holds many addresses.
		ipKey := hs.clientBlock(r)
		src := audit.Source{IP: ip, Origin: trimHeader(r.Header.Get("Origin"), 256), UserAgent: trimHeader(r.UserAgent(), 256)}
		refuse := func(status int, code, reason, detail string, retry time.Duration, p *auth.Principal) {
			hs.metrics.authFailure(reason)
			rec := audit.Record{Action: audit.ActionAuthFailure, Outcome: audit.OutcomeDenied, Reason: reason,
				Source: src, RequestID: requestIDFrom(ctx), Details: map[string]any{"status": status}}
			if p != nil {
				rec.Tenant, rec.Actor = p.Tenant, audit.Actor{Sub: p.Subject, TokenFP: p.TokenFP}
			}
			hs.recordAuthFailure(context.WithoutCancel(ctx), ipKey, rec)
			writeAuthProblem(w, r, status, code, reason, detail, retry)
		}

		if !websocket.IsWebSocketUpgrade(r) {
			writeProblem(w, r, http.StatusUpgradeRequired, "upgrade_required", "this endpoint speaks WebSocket (flowgate.v1)")
			return
		}
		if hs.draining() {
			writeProblemExt(w, r, http.StatusServiceUnavailable, protocol.CodeServerDraining, "the server is shutting down", time.Second, nil)
			return
		}
		// Caps before anything else, the Origin check and its audit record included: a flood
		// never reaches the verifier or the audit log.
		if dec := hs.limiter.Allow("hs:"+ipKey, rate.Limit(hs.limits.IPHandshakesPerSecond), hs.limits.IPHandshakeBurst, time.Now()); !dec.OK {
			hs.metrics.rejected("handshake_ip")
			writeProblemExt(w, r, http.StatusTooManyRequests, protocol.CodeRateLimited, "too many handshakes from this address", dec.RetryAfter, nil)
			return
		}
		if !hs.origins.check(r) {
			refuse(http.StatusForbidden, protocol.CodeForbidden, "origin_not_allowed", "this Origin may not connect", 0, nil)
			return
		}
		// Connection slots are held for the session's life: released here if the handshake
		// fails, or by the session when it ends.
		var releases []func()
		releaseAll := func() {
			for _, r := range releases {
				r()
			}
		}
		handedOff := false
		defer func() {
			if !handedOff {
				releaseAll()
			}
		}()
		// The listener's caps may already hold this connection's slots (ConnCaps); a
		// connection through a trusted proxy is counted here under the client it names.
		counted := countedFrom(ctx)
		if !counted.global {
			releaseGlobal, ok := hs.conns.Acquire("global", hs.limits.GlobalConnections)
			if !ok {
				hs.metrics.rejected("connections_global")
				writeProblemExt(w, r, http.StatusTooManyRequests, protocol.CodeRateLimited, "the server is at its connection limit", capRetryAfter, nil)
				return
			}
			releases = append(releases, releaseGlobal)
		}
		if counted.block != ipKey {
			releaseIP, ok := hs.conns.Acquire("ip:"+ipKey, hs.limits.IPConnections)
			if !ok {
				hs.metrics.rejected("connections_ip")
				writeProblemExt(w, r, http.StatusTooManyRequests, protocol.CodeRateLimited, "too many connections from this address", capRetryAfter, nil)
				return
			}
			releases = append(releases, releaseIP)
		}

		cred, err := auth.FromRequest(r, protocol.BearerPrefix, hs.queryTokens)
		if errors.Is(err, auth.ErrConflictingCredentials) {
			refuse(http.StatusBadRequest, protocol.CodeUnauthorized, auth.ReasonConflict, "the request carries two different credentials", 0, nil)
			return
		}
		if err != nil {
			refuse(http.StatusUnauthorized, protocol.CodeUnauthorized, auth.ReasonOf(err), "authentication required: "+auth.ReasonOf(err), 0, nil)
			return
		}
		p, rf := hs.authenticateCredential(ctx, cred, surfaceHandshake)
		if rf != nil {
			if rf.unavailable {
				hs.log.Error("tenant lookup failed", "tenant", rf.p.Tenant, "err", rf.cause)
				writeProblem(w, r, rf.status, rf.code, "temporarily unavailable")
				return
			}
			refuse(rf.status, rf.code, rf.reason, rf.detail(), 0, rf.p)
			return
		}
		releaseUser, ok := hs.conns.Acquire("user:"+p.Tenant+"\x00"+p.Subject, hs.limits.UserConnections)
		if !ok {
			hs.metrics.rejected("connections_user")
			rec := audit.Record{Action: audit.ActionRateLimitDenied, Outcome: audit.OutcomeDenied, Reason: "user connection limit",
				Tenant: p.Tenant, Actor: audit.Actor{Sub: p.Subject, TokenFP: p.TokenFP}, Source: src, RequestID: requestIDFrom(ctx),
				Details: map[string]any{"scope": "user_connections", "limit": hs.limits.UserConnections}}
			if err := hs.audit.Record(context.WithoutCancel(ctx), rec); err != nil {
				hs.log.Error("audit write failed", "action", rec.Action, "err", err)
			}
			writeProblemExt(w, r, http.StatusTooManyRequests, protocol.CodeRateLimited, "too many connections for this user", 5*time.Second, nil)
			return
		}
		releases = append(releases, releaseUser)

		// The session exists only once its opening is on record (fail closed); the record
		// carries the id the session will use, so open and close pair up.
		sessionID := session.NewID()
		if err := hs.audit.Record(ctx, audit.Record{
			Action: audit.ActionSessionOpen, Outcome: audit.OutcomeSuccess, Tenant: p.Tenant,
			Actor: audit.Actor{Sub: p.Subject, TokenFP: p.TokenFP}, Source: src, RequestID: requestIDFrom(ctx), SessionID: sessionID,
			// The token's jti: a reviewer can tie the session to the token.issue and
			// token.revoke records of the same token.
			Details: map[string]any{"credential": cred.Source, "jti": p.JTI},
		}); err != nil {
			hs.log.Error("audit write failed; connection refused", "err", err)
			writeProblem(w, r, http.StatusServiceUnavailable, protocol.CodeInternal, "temporarily unavailable")
			return
		}
		// Never echo the bearer subprotocol: the Upgrader answers with flowgate.v1 only.
		cw := &session.HijackReader{ResponseWriter: w}
		conn, err := up.Upgrade(cw, r, nil)
		if err != nil {
			return // the Upgrader has answered
		}
		handedOff = true
		// A fresh context: the session must not keep the finished request reachable.
		hs.hub.Start(context.Background(), conn, cw.Reader(), p, session.Meta{IP: ip, Origin: src.Origin, UserAgent: src.UserAgent, RequestID: requestIDFrom(ctx), SessionID: sessionID}, releaseAll)
	})
}

func trimHeader(s string, max int) string {
	s = strings.TrimSpace(s)
	if len(s) > max {
		return s[:max]
	}
	return s
}
