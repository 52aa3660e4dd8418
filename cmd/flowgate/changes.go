package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/cluster"
	"github.com/flowgate/flowgate/internal/server"
	"github.com/flowgate/flowgate/internal/session"
	"github.com/flowgate/flowgate/internal/task"
	"github.com/flowgate/flowgate/internal/tenant"
)

// localChanges applies a change to this process: its caches, its sessions and its tasks. It
// serves a change made here (through the admin service) and one announced by another replica
// (through the cluster bus); the CLI's changes reach it through the store's change marker.
type localChanges struct {
	a               *app
	hub             *session.Hub
	tasks           *task.Manager
	revocations     *auth.Revocations
	cancelSuspended bool
	log             *slog.Logger
}

var _ admin.Notifier = (*localChanges)(nil)

// TenantChanged drops the tenant from the cache and, for a tenant no longer active, closes its
// sessions and (tenants.suspend_cancels_tasks) cancels its tasks.
func (c *localChanges) TenantChanged(_ context.Context, t tenant.Tenant) {
	c.a.tenants.Invalidate(t.ID)
	if !tenant.Active(t) {
		c.hub.CloseTenant(t.ID)
		if c.cancelSuspended {
			c.tasks.CancelTenant(t.ID)
		}
	}
}

// TenantChangedID is TenantChanged for a change known only by the tenant's id (a bus
// message): the tenant is read again, and its key dropped too (a keyRef may have changed).
func (c *localChanges) TenantChangedID(ctx context.Context, id string) {
	c.a.tenants.Invalidate(id)
	c.a.keys.Invalidate(id)
	t, err := c.a.tenants.Get(ctx, id)
	if errors.Is(err, tenant.ErrNotFound) || (err == nil && !tenant.Active(t)) {
		c.hub.CloseTenant(id)
		if c.cancelSuspended {
			c.tasks.CancelTenant(id)
		}
	}
}

// TokenRevoked refuses the token from now on and closes its sessions; with cancelTasks it
// also cancels the tasks it started. Scoped: a tenant's revocation reaches only that
// tenant's token; auth.AnyTenant (a platform admin's) every tenant's.
func (c *localChanges) TokenRevoked(_ context.Context, tenantID, jti string, keepUntil time.Time, cancelTasks bool) {
	if err := c.revocations.Add(tenantID, jti, keepUntil); err != nil {
		c.log.Error("revocation not applied in memory; the store reload retries", "tenant", tenantID, "err", err)
	}
	c.hub.CloseJTI(tenantID, jti)
	if cancelTasks {
		c.tasks.CancelToken(tenantID, jti)
	}
}

// KeyChanged drops the tenant's cached key.
func (c *localChanges) KeyChanged(_ context.Context, tenantID string) {
	c.a.keys.Invalidate(tenantID)
}

// clusterChanges applies a change here and announces it to the other replicas. A failed
// announcement only delays them: they also learn from the store within seconds (revocations
// and the tenant change marker are polled); the bus makes it sub-second.
type clusterChanges struct {
	local *localChanges
	cl    *cluster.Cluster
}

var _ admin.Notifier = (*clusterChanges)(nil)

func (c *clusterChanges) announce(what string, err error) {
	if err != nil {
		c.local.log.Warn("cluster: change not announced", "change", what, "err", err)
	}
}

// TenantChanged implements admin.Notifier.
func (c *clusterChanges) TenantChanged(ctx context.Context, t tenant.Tenant) {
	c.local.TenantChanged(ctx, t)
	c.announce("tenant", c.cl.TenantChanged(ctx, t.ID))
}

// TokenRevoked implements admin.Notifier.
func (c *clusterChanges) TokenRevoked(ctx context.Context, tenantID, jti string, keepUntil time.Time, cancelTasks bool) {
	c.local.TokenRevoked(ctx, tenantID, jti, keepUntil, cancelTasks)
	c.announce("revocation", c.cl.Revoked(ctx, tenantID, jti, keepUntil, cancelTasks))
}

// KeyChanged implements admin.Notifier.
func (c *clusterChanges) KeyChanged(ctx context.Context, tenantID string) {
	c.local.KeyChanged(ctx, tenantID)
	c.announce("key", c.cl.KeyChanged(ctx, tenantID))
}

// localSessions is a single node's live sessions: its own hub.
type localSessions struct{ hub *session.Hub }

var (
	_ server.SessionLister = localSessions{}
	_ admin.SessionEnder   = localSessions{}
)

func (l localSessions) ListSessions(_ context.Context, tenant string, limit int) ([]session.Info, bool, error) {
	return l.hub.Sessions(tenant, limit), true, nil
}

func (l localSessions) TerminateSession(_ context.Context, tenant, id string) (bool, error) {
	return l.hub.Terminate(tenant, id), nil
}
