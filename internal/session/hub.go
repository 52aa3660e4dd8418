package session

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/netpoll"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/tenant"
)

// Hub knows every live session of this process. It closes them in groups (a revoked token,
// a suspended tenant, shutdown) and runs the once-a-second sweep that sends pings and
// enforces token expiry, so an idle connection costs no timer and no goroutine of its own.
type Hub struct {
	opts Options
	poll *netpoll.Poller // nil: every session keeps a reader goroutine

	mu       sync.Mutex
	sessions map[*Session]struct{}
	closed   bool

	wg sync.WaitGroup // one per session, released when its reader returns
}

// NewHub returns a hub with the shared session options.
func NewHub(opts Options) *Hub {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Hub{opts: opts, poll: opts.Poller, sessions: map[*Session]struct{}{}}
}

func (h *Hub) add(s *Session) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.sessions[s] = struct{}{}
	h.wg.Add(1)
	return true
}

func (h *Hub) remove(s *Session) {
	h.mu.Lock()
	_, ok := h.sessions[s]
	delete(h.sessions, s)
	h.mu.Unlock()
	if ok {
		h.wg.Done()
	}
}

func (h *Hub) snapshot() []*Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*Session, 0, len(h.sessions))
	for s := range h.sessions {
		out = append(out, s)
	}
	return out
}

// Count is the number of live sessions.
func (h *Hub) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// CloseWhere closes every session whose principal matches, with code and reason.
func (h *Hub) CloseWhere(match func(tenant, subject, jti string) bool, code int, reason string) int {
	n := 0
	for _, s := range h.snapshot() {
		p := s.Principal()
		if match(p.Tenant, p.Subject, p.JTI) {
			s.closeWith(code, reason)
			n++
		}
	}
	return n
}

// CloseJTI closes the sessions using a revoked token: tenant's token jti, or the jti in
// every tenant when tenant is auth.AnyTenant (a platform revocation). A tenant's revocation
// never closes another tenant's session.
func (h *Hub) CloseJTI(tenant, jti string) int {
	if jti == "" || tenant == "" {
		return 0
	}
	return h.CloseWhere(func(t, _, j string) bool {
		return j == jti && (tenant == auth.AnyTenant || t == tenant)
	}, protocol.ClosePolicyViolation, protocol.ReasonTokenRevoked)
}

// CloseTenant closes the sessions of a suspended tenant.
func (h *Hub) CloseTenant(id string) int {
	return h.CloseWhere(func(t, _, _ string) bool { return t == id }, protocol.ClosePolicyViolation, protocol.ReasonTenantSuspended)
}

// Info describes a live session to an admin: whose, from where, since when. Never the token.
type Info struct {
	ID            string
	Tenant        string
	Subject       string
	JTI           string
	IP            string
	Origin        string
	UserAgent     string
	ConnectedAt   time.Time
	Subscriptions int
	Node          string // the replica holding it; set by the cluster
}

// Sessions lists tenant's live sessions in this process, oldest first, at most limit.
func (h *Hub) Sessions(tenant string, limit int) []Info {
	var out []Info
	for _, s := range h.snapshot() {
		p := s.Principal()
		if p.Tenant != tenant {
			continue
		}
		s.mu.Lock()
		subs := len(s.subs)
		s.mu.Unlock()
		out = append(out, Info{ID: s.id, Tenant: p.Tenant, Subject: p.Subject, JTI: p.JTI, IP: s.meta.IP,
			Origin: s.meta.Origin, UserAgent: s.meta.UserAgent, ConnectedAt: s.connected, Subscriptions: subs})
	}
	slices.SortFunc(out, func(a, b Info) int {
		if c := a.ConnectedAt.Compare(b.ConnectedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Terminate closes tenant's session id with 1008 session_terminated. It reports whether the
// session was here; another tenant's session is never touched.
func (h *Hub) Terminate(tenant, id string) bool {
	for _, s := range h.snapshot() {
		if s.id == id && s.Principal().Tenant == tenant {
			s.closeWith(protocol.ClosePolicyViolation, protocol.ReasonSessionTerminated)
			return true
		}
	}
	return false
}

// Run sweeps once a second until ctx ends: pings due, expired tokens, revoked tokens and
// suspended tenants (the safety net behind the immediate CloseJTI/CloseTenant calls).
func (h *Hub) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			h.sweep(ctx)
		}
	}
}

func (h *Hub) sweep(ctx context.Context) {
	now := h.opts.Now()
	suspended := map[string]bool{}
	for _, s := range h.snapshot() {
		p := s.Principal()
		switch {
		case !now.Before(p.ExpiresAt):
			s.closeWith(protocol.ClosePolicyViolation, protocol.ReasonTokenExpired)
			continue
		case h.opts.Revocations != nil && p.JTI != "" && h.opts.Revocations.Revoked(p.Tenant, p.JTI):
			s.closeWith(protocol.ClosePolicyViolation, protocol.ReasonTokenRevoked)
			continue
		}
		if h.opts.Tenants != nil {
			bad, seen := suspended[p.Tenant]
			if !seen {
				t, err := h.opts.Tenants.Get(ctx, p.Tenant)
				// A transient store error must not close healthy sessions; only a tenant
				// known to be gone or suspended does.
				bad = errors.Is(err, tenant.ErrNotFound) || (err == nil && !tenant.Active(t))
				suspended[p.Tenant] = bad
			}
			if bad {
				s.closeWith(protocol.ClosePolicyViolation, protocol.ReasonTenantSuspended)
				continue
			}
		}
		s.pingIfDue(now)
		s.wakeIfExpired(now)
	}
}

// Shutdown closes every session with 1001 and waits (until ctx ends) for them to go.
func (h *Hub) Shutdown(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	for _, s := range h.snapshot() {
		s.closeWith(protocol.CloseGoingAway, protocol.ReasonShutdown)
	}
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		for _, s := range h.snapshot() {
			s.conn.Close()
			s.wakeReader()
		}
		<-done
	}
}
