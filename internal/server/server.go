package server

import (
	"context"
	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/task/record"
	"github.com/flowgate/flowgate/internal/tenant"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/ratelimit"
	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/session"
	"github.com/flowgate/flowgate/internal/task"
	"github.com/flowgate/flowgate/internal/validation"
)

// TenantStore is what the admin handlers read from the store (changes go through Admin).
type TenantStore interface {
	GetTenant(ctx context.Context, id string) (tenant.Tenant, error)
	ListTenants(ctx context.Context, limit int, afterID string) ([]tenant.Tenant, error)
	ListTasks(ctx context.Context, f record.Filter) ([]record.Task, error)
	UsageSummary(ctx context.Context, f record.UsageFilter) ([]record.UsageRow, error)
}

// KeyAdmin sets, deletes and describes tenant engine keys (the secrets cache, which
// invalidates itself on every change).
type KeyAdmin interface {
	Set(ctx context.Context, tenant, keyRef, value string) (secrets.Metadata, error)
	Delete(ctx context.Context, tenant, keyRef string) error
	Describe(ctx context.Context, tenant, keyRef string) (secrets.Metadata, error)
}

// AuditReader answers the audit review routes.
type AuditReader interface {
	Query(ctx context.Context, f audit.Filter) ([]audit.Record, string, error)
	Export(ctx context.Context, f audit.Filter, w io.Writer) error
	Verify(ctx context.Context, opts audit.VerifyOptions) (audit.Report, error)
}

// Verifier checks bearer tokens.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*auth.Principal, error)
}

// Tenants looks tenants up (cached).
type Tenants interface {
	Get(ctx context.Context, id string) (tenant.Tenant, error)
}

// Auditor records security-relevant actions.
type Auditor interface {
	Record(ctx context.Context, r audit.Record) error
}

// TicketStore issues and redeems single-use WebSocket tickets (in memory on one node, in
// Redis in a cluster, where the ticket may be redeemed on another replica).
type TicketStore interface {
	Issue(p *auth.Principal) (string, time.Time, error)
	Redeem(id string) (*auth.Principal, error)
}

// ConnCounter caps concurrent connections per key (global, per IP block, per user).
type ConnCounter interface {
	Acquire(key string, max int) (release func(), ok bool)
}

// IPResolver names the client address of a request.
type IPResolver interface {
	IP(r *http.Request) netip.Addr
}

// Metrics receives HTTP-level counters.
type Metrics interface {
	AuthFailure(reason string)
	Rejected(scope string)
}

// Deps is everything the HTTP surface needs. cmd/flowgate builds it.
type Deps struct {
	Logger      *slog.Logger
	Limits      config.Limits
	QueryTokens bool
	Origins     []string

	Verifier    Verifier
	Signer      *auth.Signer
	Tickets     TicketStore
	Revocations *auth.Revocations
	Tenants     Tenants
	Audit       Auditor
	Hub         *session.Hub
	Tasks       *task.Manager
	Limiter     *ratelimit.Limiter
	Conns       ConnCounter
	IPs         IPResolver
	Metrics     Metrics
	MaxBodySize int64

	// Admin API (DESIGN §9).
	Store TenantStore
	Keys  KeyAdmin
	// Admin runs the admin use-cases the CLI runs too (key changes so far).
	Admin          *admin.Service
	AuditLog       AuditReader
	Validator      *validation.Validator
	TenantDefaults validation.Limits // global bounds a tenant's limits are checked against
	// RevokeCancelsTasks is auth.revoke_cancels_tasks: a revocation's default for cancelTasks.
	RevokeCancelsTasks bool
	// Sessions lists a tenant's live sessions: this process's hub, or every replica's.
	Sessions SessionLister

	// Ready reports whether dependencies (store, cache) can serve; nil means ready.
	Ready func(ctx context.Context) error
	// Draining is true once shutdown began: readiness fails, new connections are refused.
	Draining func() bool
	// UI serves /ui/ and /sdk/ when set.
	UI http.Handler
	// MetricsHandler serves /metrics on the ops listener.
	MetricsHandler http.Handler
	Pprof          bool
	// RequestMetrics counts and times the public listener's requests (httpmetrics.go).
	RequestMetrics RequestMetrics

	// AuthFailureBurst is how many auth.failure records one client address block may cause
	// per reason and minute (audit.auth_failure_burst); 0 = DefaultAuthBurst.
	AuthFailureBurst int

	// authFlood is set by Public and kept here for FlushAuthFailures and FlushAllAuthFailures,
	// which the server calls on its own schedule.
	authFlood *authFlood
}

type metricsShim struct{ m Metrics }

func (s metricsShim) authFailure(reason string) {
	if s.m != nil {
		s.m.AuthFailure(reason)
	}
}

func (s metricsShim) rejected(scope string) {
	if s.m != nil {
		s.m.Rejected(scope)
	}
}

// NewHTTPServer returns an http.Server with the timeouts and header bound of DESIGN §9.
// WriteTimeout stays 0: WebSocket connections are long-lived and set their own deadlines,
// and API handlers bound their own work.
func NewHTTPServer(h http.Handler, readHeaderTimeout, idleTimeout time.Duration, maxHeaderBytes int, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       0,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
