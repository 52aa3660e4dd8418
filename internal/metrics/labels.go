package metrics

import "sync"

// Other is the label value every unknown input is clamped to, so that no caller (and no
// client) can grow a label set: values come from the fixed lists below or become "other".
const Other = "other"

// The fixed label values are functions rather than package variables (no globals). Every
// list is pre-initialised by New, so each series exists at zero from the first scrape and
// rate() and absent() behave in alert rules.

// taskStatuses are the final statuses of DESIGN §4 (task_complete.status).
func taskStatuses() []string {
	return []string{"success", "failed", "timeout", "cancelled", "interrupted"}
}

// messageTypes are the client → server message types of DESIGN §4, plus "invalid" for frames
// that did not decode.
func messageTypes() []string {
	return []string{"swarm", "status", "cancel", "subscribe", "tasks", "reauth", "ping", "invalid"}
}

// authReasons are the auth.Reason* constants plus the server's origin refusal.
func authReasons() []string {
	return []string{
		"missing_token", "conflicting_tokens", "token_too_long", "malformed_token", "unsupported_header",
		"unknown_issuer", "unknown_key", "algorithm_not_allowed", "bad_signature", "token_expired",
		"token_not_yet_valid", "issued_in_future", "missing_exp", "bad_audience", "bad_issuer",
		"bad_claims", "missing_tenant", "missing_subject", "token_revoked", "query_token_disabled",
		"bad_ticket", "unknown_tenant", "tenant_suspended", "origin_not_allowed",
		"tenant_not_allowed", "lifetime_too_long",
	}
}

// rateLimitScopes name the limit that refused: before authentication (handshake_ip,
// connections_*), the per-user swarm bucket (swarms_user), the per-connection message bucket
// (messages_connection) and the concurrent-task quotas (tasks_user, tasks_tenant,
// tasks_executor).
func rateLimitScopes() []string {
	return []string{
		"handshake_ip", "connections_global", "connections_ip", "connections_user",
		"swarms_user", "messages_connection", "tasks_user", "tasks_tenant", "tasks_executor",
	}
}

// rejectionCodes are the error codes of DESIGN §4 a session answers a refused request with.
func rejectionCodes() []string {
	return []string{
		"invalid_message", "unknown_type", "validation_failed", "forbidden", "not_found", "rate_limited",
		"quota_exceeded", "budget_exceeded", "tenant_suspended", "tenant_key_unavailable", "server_draining", "internal",
	}
}

// closeClasses group WebSocket close codes (RFC 6455 §7.4.1) by what an operator does about
// them.
func closeClasses() []string {
	return []string{"normal", "going_away", "protocol_error", "abnormal", "policy", "too_big", "internal"}
}

// secretOutcomes are secrets.FetchOK, FetchNotFound and FetchError.
func secretOutcomes() []string { return []string{"ok", "not_found", "error"} }

// auditActions are the audit.Action* constants (DESIGN §10).
func auditActions() []string {
	return []string{
		"auth.failure", "session.open", "session.close", "authz.denied", "validation.rejected",
		"ratelimit.denied", "quota.denied", "budget.denied", "task.create", "task.complete", "task.cancel",
		"tenant.create", "tenant.update", "key.set", "key.delete", "key.fetch_failed",
		"token.issue", "token.revoke", "audit.export", "audit.retention", "server.start", "server.stop", "egress.denied", "auth.failure.summary",
	}
}

func outcomes() []string { return []string{"success", "failure"} }

// httpMethods are the methods the public listener serves (HEAD through its GET routes,
// OPTIONS for CORS preflights).
func httpMethods() []string {
	return []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
}

// storeOps are the store.Op* constants (store.Ops).
func storeOps() []string {
	return []string{"query", "exec", "tx", "task_write", "append_events", "append_audit", "ping"}
}

// redisCommands are the commands the cluster package sends, as the Redis hook names them
// ("script" for EVAL and EVALSHA, "pipeline" for a pipeline or MULTI/EXEC, "dial" for a
// new connection). Others (the client's own HELLO, for one) are counted as "other".
func redisCommands() []string {
	return []string{
		"ping", "publish", "set", "getdel", "exists", "zadd", "zrem", "pexpire",
		"xadd", "xrange", "xrevrange", "xread", "script", "pipeline", "dial",
	}
}

// maxRoutes bounds the route label: the public listener registers about thirty patterns.
const maxRoutes = 64

// statusClass groups an HTTP status code by its first digit.
func statusClass(code int) string {
	switch {
	case code >= 100 && code < 200:
		return "1xx"
	case code >= 200 && code < 300:
		return "2xx"
	case code >= 300 && code < 400:
		return "3xx"
	case code >= 400 && code < 500:
		return "4xx"
	case code >= 500 && code < 600:
		return "5xx"
	}
	return Other
}

// labelSet is one fixed list of label values, for clamping.
type labelSet map[string]struct{}

func newLabelSet(values []string) labelSet {
	s := make(labelSet, len(values))
	for _, v := range values {
		s[v] = struct{}{}
	}
	return s
}

// clamp returns v when it is in the set, Other otherwise.
func (s labelSet) clamp(v string) string {
	if _, ok := s[v]; ok {
		return v
	}
	return Other
}

// cappedSet admits the first max distinct values it is shown and clamps the rest to Other:
// for a label whose values come from code (route patterns) but are not listed here.
type cappedSet struct {
	max  int
	mu   sync.RWMutex
	seen map[string]struct{}
}

func newCappedSet(max int) *cappedSet {
	return &cappedSet{max: max, seen: make(map[string]struct{}, max)}
}

// clamp returns v while the set has room for it (or already holds it), Other otherwise.
func (s *cappedSet) clamp(v string) string {
	s.mu.RLock()
	_, ok := s.seen[v]
	s.mu.RUnlock()
	if ok {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[v]; ok {
		return v
	}
	if len(s.seen) >= s.max {
		return Other
	}
	s.seen[v] = struct{}{}
	return v
}

// closeClass maps a WebSocket close code to its class.
func closeClass(code int) string {
	switch code {
	case 1000:
		return "normal"
	case 1001:
		return "going_away"
	case 1002, 1003, 1007:
		return "protocol_error"
	case 1005, 1006:
		return "abnormal" // no close frame: the peer vanished
	case 1008:
		return "policy" // slow consumer, expired or revoked token, suspended tenant
	case 1009:
		return "too_big"
	case 1011:
		return "internal"
	}
	return Other
}

// sessionRateLimitScope names the limit behind a session rejection (code, scope as the session
// package reports them), or "" when the rejection was neither a rate limit nor a quota.
func sessionRateLimitScope(code, scope string) string {
	switch code {
	case "rate_limited":
		switch scope {
		case "user":
			return "swarms_user"
		case "connection":
			return "messages_connection"
		}
		return Other
	case "quota_exceeded":
		switch scope {
		case "user", "tenant", "executor":
			return "tasks_" + scope
		}
		return Other
	}
	return ""
}
