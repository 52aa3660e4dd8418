package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/flowgate/flowgate/internal/cluster"
	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/server"
	"github.com/flowgate/flowgate/internal/session"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/task"
	"github.com/flowgate/flowgate/internal/tenant"
)

// openCluster connects to Redis when cluster.redis_url is set (nil otherwise). On a single
// node, tasks a crashed earlier process left running are marked interrupted here; in a
// cluster the reaper does it for any node whose heartbeat stopped, this one's previous
// incarnation included.
func openCluster(ctx context.Context, cfg config.Config, a *app, node string, log *slog.Logger) (*cluster.Cluster, error) {
	if cfg.Cluster.RedisURL == "" {
		n, err := a.db.InterruptRunning(ctx, "")
		if err != nil {
			return nil, fmt.Errorf("store: mark interrupted tasks: %w", err)
		}
		if n > 0 {
			log.Warn("tasks left running by an earlier process were marked interrupted", "count", n)
		}
		return nil, nil
	}
	cl, err := cluster.New(cluster.Options{
		RedisURL: cfg.Cluster.RedisURL, Node: node, Store: a.db, Logger: log,
		HeartbeatInterval: cfg.Cluster.HeartbeatInterval, HeartbeatTTL: cfg.Cluster.HeartbeatTTL,
		StreamMaxLen: cfg.Cluster.StreamMaxLen, EventTTL: cfg.Cluster.EventTTL,
	})
	if err != nil {
		return nil, err
	}
	if err := cl.Ping(ctx); err != nil {
		log.Error("cluster: redis unreachable at start; swarms are refused until it answers", "err", err)
	}
	log.Info("cluster mode", "node", node)
	return cl, nil
}

// taskCluster keeps a nil *cluster.Cluster from becoming a non-nil interface.
func taskCluster(cl *cluster.Cluster) task.Cluster {
	if cl == nil {
		return nil
	}
	return cl
}

// wireCluster makes every change that other replicas must know about travel on the bus,
// applies what arrives from them, and adds Redis to readiness.
func wireCluster(cl *cluster.Cluster, deps *server.Deps, a *app, hub *session.Hub, tasks *task.Manager, cancelSuspended bool, log *slog.Logger) {
	localTenant, localRevoked, localKey := deps.TenantChanged, deps.TokenRevoked, deps.KeyChanged
	tenantByID := func(ctx context.Context, id string) {
		a.tenants.Invalidate(id)
		a.keys.Invalidate(id) // a keyRef may have changed
		t, err := a.tenants.Get(ctx, id)
		if errors.Is(err, tenant.ErrNotFound) || (err == nil && !tenant.Active(t)) {
			hub.CloseTenant(id)
			if cancelSuspended {
				tasks.CancelTenant(id)
			}
		}
	}
	cl.Attach(tasks, cluster.Handlers{Revoked: localRevoked, TenantChanged: tenantByID, KeyChanged: localKey})
	announce := func(what string, err error) {
		if err != nil {
			// Other replicas still learn within seconds from the store (revocations and the
			// tenant change marker are polled); the bus only makes it sub-second.
			log.Warn("cluster: change not announced", "change", what, "err", err)
		}
	}
	deps.TenantChanged = func(ctx context.Context, t store.Tenant) {
		localTenant(ctx, t)
		announce("tenant", cl.TenantChanged(ctx, t.ID))
	}
	deps.TokenRevoked = func(ctx context.Context, tenantID, jti string, exp time.Time, cancelTasks bool) {
		localRevoked(ctx, tenantID, jti, exp, cancelTasks)
		announce("revocation", cl.Revoked(ctx, tenantID, jti, exp, cancelTasks))
	}
	deps.KeyChanged = func(ctx context.Context, tenantID string) {
		localKey(ctx, tenantID)
		announce("key", cl.KeyChanged(ctx, tenantID))
	}
	ready := deps.Ready
	deps.Ready = func(ctx context.Context) error {
		if err := ready(ctx); err != nil {
			return err
		}
		return cl.Ping(ctx)
	}
}
