package session

import (
	"context"
	"github.com/flowgate/flowgate/internal/tenant"
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/netpoll"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/ratelimit"
	"github.com/flowgate/flowgate/internal/task"
	"github.com/flowgate/flowgate/internal/validation"
)

// Tasks is the task manager as a session uses it.
type Tasks interface {
	Create(ctx context.Context, p *auth.Principal, req task.Request, meta task.Meta) (*task.Task, error)
	Attach(t *task.Task, p *auth.Principal, sub task.Subscriber) *task.Subscription
	Subscribe(ctx context.Context, p *auth.Principal, id string, afterSeq int64, sub task.Subscriber) (*task.Subscription, error)
	Status(ctx context.Context, p *auth.Principal, id string) (task.Snapshot, error)
	Cancel(ctx context.Context, p *auth.Principal, id string, meta task.Meta) error
	List(ctx context.Context, p *auth.Principal) ([]task.Snapshot, error)
	Draining() bool
}

// TokenVerifier checks a reauth token.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*auth.Principal, error)
}

// Revocations answers whether a tenant's token id was revoked (by its tenant's admin or
// platform-wide).
type Revocations interface {
	Revoked(tenant, jti string) bool
}

// Tenants looks tenants up (cached).
type Tenants interface {
	Get(ctx context.Context, id string) (tenant.Tenant, error)
}

// Auditor records security-relevant actions.
type Auditor interface {
	Record(ctx context.Context, r audit.Record) error
}

// SwarmLimiter is the per-(tenant, user) swarm bucket.
type SwarmLimiter interface {
	Allow(key string, limit rate.Limit, burst int, now time.Time) ratelimit.Decision
}

// Metrics receives session counters.
type Metrics interface {
	SessionOpened()
	SessionClosed(code int)
	Message(typ string)
	Rejected(code, scope string)
	// SlowConsumer counts a connection closed because it did not take what was sent (its
	// reply queue overflowed or a write timed out). Subscriptions dropped by a task's
	// backpressure are counted by the task manager.
	SlowConsumer()
	// FramesSent counts data frames written to the client and their payload bytes, once per
	// writer pass.
	FramesSent(frames, bytes int)
}

// Options configures sessions; one value is shared by every session of a hub.
type Options struct {
	Logger      *slog.Logger
	Tasks       Tasks
	Validator   *validation.Validator
	Verifier    TokenVerifier
	Revocations Revocations
	Tenants     Tenants
	Audit       Auditor
	Swarms      SwarmLimiter
	Metrics     Metrics
	// Poller parks idle connections (no goroutine while the client is silent); nil keeps a
	// reader goroutine per connection. Its owner runs it and stops it after Hub.Shutdown.
	Poller *netpoll.Poller

	Version      string
	SwarmLimits  validation.Limits // engine enums and global bounds; tenants narrow them
	PublicLimits protocol.Limits   // what the welcome frame tells the client

	MaxMessageBytes   int64
	PingInterval      time.Duration
	PongTimeout       time.Duration
	WriteTimeout      time.Duration
	SendQueueMessages int
	SendQueueBytes    int
	MaxSubscriptions  int
	MessagesPerSecond int
	MessageBurst      int
	SwarmsPerMinute   int
	SwarmBurst        int
	Now               func() time.Time
}
