package metrics

import (
	"strings"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
)

// The adapters below satisfy interfaces declared by their consumers (task.Metrics,
// session.Metrics, server.Metrics); guards_test.go checks that they do without making this
// package import the server.

// Tasks reports task lifecycle counters (task.Metrics).
type Tasks struct{ m *Metrics }

// Tasks returns the adapter for task.Options.Metrics.
func (m *Metrics) Tasks() Tasks { return Tasks{m} }

// TaskStarted counts a task whose engine was started.
func (t Tasks) TaskStarted() { t.m.tasksStarted.Inc() }

// TaskFinished counts a finished task by its final status and observes its run time (zero for
// a task that never started, which is not observed).
func (t Tasks) TaskFinished(status string, d time.Duration) {
	status = t.m.statuses.clamp(status)
	t.m.tasks.WithLabelValues(status).Inc()
	if d > 0 {
		t.m.taskDuration.WithLabelValues(status).Observe(d.Seconds())
	}
}

// QueueWait observes how long a task waited for an executor slot.
func (t Tasks) QueueWait(d time.Duration) { t.m.queueWait.Observe(max(d, 0).Seconds()) }

// Event counts one engine event of n bytes.
func (t Tasks) Event(n int) {
	t.m.events.Inc()
	if n > 0 {
		t.m.outputBytes.Add(float64(n))
	}
}

// SlowConsumer counts a subscriber dropped for not keeping up.
func (t Tasks) SlowConsumer() { t.m.slowConsumers.Inc() }

// Egress reports the egress proxy's counters (egress.Metrics).
type Egress struct{ m *Metrics }

// Egress returns the adapter for egress.Options.Metrics.
func (m *Metrics) Egress() Egress { return Egress{m} }

// EgressDenied counts a refused destination; the label is one of three fixed values.
func (e Egress) EgressDenied(reason string) {
	label := "not_allowed"
	switch {
	case strings.HasPrefix(reason, "name resolves"):
		label = "special_address"
	case strings.HasPrefix(reason, "name does not"):
		label = "unresolvable"
	}
	e.m.egressDenied.WithLabelValues(label).Inc()
}

// EgressBytes adds bytes sent and received through the proxy.
func (e Egress) EgressBytes(out, in int64) {
	if out > 0 {
		e.m.egressBytes.WithLabelValues("out").Add(float64(out))
	}
	if in > 0 {
		e.m.egressBytes.WithLabelValues("in").Add(float64(in))
	}
}

// PermissionDenied counts a tool an engine was not allowed to run (engine.permission_mode).
func (t Tasks) PermissionDenied() { t.m.permissionDenials.Inc() }

// tokenKinds are the kind label's values of flowgate_engine_tokens_total.
var tokenKinds = []string{"input", "output", "cache_read", "cache_creation"}

// EngineUsage adds what a finished task's engine reported spending.
func (t Tasks) EngineUsage(input, output, cacheRead, cacheCreation int64, costUSD float64) {
	for i, n := range []int64{input, output, cacheRead, cacheCreation} {
		if n > 0 {
			t.m.engineTokens.WithLabelValues(tokenKinds[i]).Add(float64(n))
		}
	}
	if costUSD > 0 {
		t.m.engineCost.Add(costUSD)
	}
}

// EventsPersisted counts task events written to the event log.
func (t Tasks) EventsPersisted(n int) { t.m.eventsPersisted.Add(float64(n)) }

// EventPersistFailed counts an event log batch the store refused.
func (t Tasks) EventPersistFailed() { t.m.eventPersistFails.Inc() }

// Sessions reports WebSocket session counters (session.Metrics).
type Sessions struct{ m *Metrics }

// Sessions returns the adapter for session.Options.Metrics.
func (m *Metrics) Sessions() Sessions { return Sessions{m} }

// SessionOpened counts an authenticated session.
func (s Sessions) SessionOpened() {
	s.m.connections.Inc()
	s.m.connectionsOpened.Inc()
}

// SessionClosed counts a closed session by its close code's class.
func (s Sessions) SessionClosed(code int) {
	s.m.connections.Dec()
	s.m.connectionsClosed.WithLabelValues(closeClass(code)).Inc()
}

// Message counts a client message by type.
func (s Sessions) Message(typ string) { s.m.messages.WithLabelValues(s.m.types.clamp(typ)).Inc() }

// Rejected counts a refused request by its error code and, for rate limits and quotas, by the
// limit's scope.
func (s Sessions) Rejected(code, scope string) {
	s.m.rejections.WithLabelValues(s.m.codes.clamp(code)).Inc()
	if sc := sessionRateLimitScope(code, scope); sc != "" {
		s.m.rateLimited.WithLabelValues(s.m.scopes.clamp(sc)).Inc()
	}
}

// SlowConsumer counts a connection closed for not taking what was sent.
func (s Sessions) SlowConsumer() { s.m.slowConsumers.Inc() }

// FramesSent counts data frames written to a client and their payload bytes; the session
// writer reports once per pass, not per frame.
func (s Sessions) FramesSent(frames, bytes int) {
	if frames > 0 {
		s.m.wsFramesSent.Add(float64(frames))
	}
	if bytes > 0 {
		s.m.wsBytesSent.Add(float64(bytes))
	}
}

// HTTP reports refusals of the HTTP surface (server.Metrics).
type HTTP struct{ m *Metrics }

// HTTP returns the adapter for server.Deps.Metrics.
func (m *Metrics) HTTP() HTTP { return HTTP{m} }

// AuthFailure counts a refused authentication by reason.
func (h HTTP) AuthFailure(reason string) {
	h.m.authFailures.WithLabelValues(h.m.reasons.clamp(reason)).Inc()
}

// Rejected counts a handshake refused by a cap or rate limit before the session exists.
func (h HTTP) Rejected(scope string) {
	h.m.rateLimited.WithLabelValues(h.m.scopes.clamp(scope)).Inc()
}

// Request counts a finished request of the public listener and observes its latency. route
// is the matched pattern without its method ("other" when none matched); an upgraded
// WebSocket reports 101 and the time to its hand-off, not the connection's life.
func (h HTTP) Request(route, method string, status int, d time.Duration) {
	route, method = h.m.routes.clamp(route), h.m.methods.clamp(method)
	h.m.httpRequests.WithLabelValues(route, method, statusClass(status)).Inc()
	h.m.httpDuration.WithLabelValues(route, method).Observe(max(d, 0).Seconds())
}

// Store reports database latency and failures (store.Observer).
type Store struct{ m *Metrics }

// Store returns the adapter for store.DB.SetObserver.
func (m *Metrics) Store() Store { return Store{m} }

// Observe records one store operation; err is nil unless the database failed.
func (s Store) Observe(op string, d time.Duration, err error) {
	op = s.m.storeOps.clamp(op)
	s.m.storeDuration.WithLabelValues(op).Observe(max(d, 0).Seconds())
	if err != nil {
		s.m.storeErrors.WithLabelValues(op).Inc()
	}
}

// Redis reports Redis command latency and failures (cluster.Observer).
type Redis struct{ m *Metrics }

// Redis returns the adapter for cluster.Options.Observer.
func (m *Metrics) Redis() Redis { return Redis{m} }

// Observe records one Redis command; a zero d (a blocking read) is counted but not timed,
// and err is nil unless the command failed.
func (r Redis) Observe(cmd string, d time.Duration, err error) {
	cmd = r.m.redisCmds.clamp(cmd)
	if d > 0 {
		r.m.redisDuration.WithLabelValues(cmd).Observe(d.Seconds())
	}
	if err != nil {
		r.m.redisErrors.WithLabelValues(cmd).Inc()
	}
}

// SecretFetch is secrets.CacheOptions.OnFetch: one provider fetch, its outcome and latency.
func (m *Metrics) SecretFetch(outcome string, took time.Duration) {
	outcome = m.fetchOutcomes.clamp(outcome)
	m.secretFetches.WithLabelValues(outcome).Inc()
	m.secretFetchDuration.WithLabelValues(outcome).Observe(max(took, 0).Seconds())
}

// AuditHooks returns the hooks for audit.Options.Hooks.
func (m *Metrics) AuditHooks() audit.Hooks {
	return audit.Hooks{
		Batch: func(records int, d time.Duration, err error) {
			m.auditBatchDuration.Observe(max(d, 0).Seconds())
			if err != nil {
				m.auditBatchFailures.Inc()
				return
			}
			m.auditBatchSize.Observe(float64(records))
			m.auditWritten.Add(float64(max(records, 0)))
		},
		Failure: func(action string, _ error) {
			m.auditFailures.WithLabelValues(m.actions.clamp(action)).Inc()
		},
		Checkpoint: func(_ int, err error) {
			outcome := "success"
			if err != nil {
				outcome = "failure"
			}
			m.auditCheckpoints.WithLabelValues(outcome).Inc()
		},
	}
}
