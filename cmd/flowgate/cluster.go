package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/flowgate/flowgate/internal/cluster"
	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/task"
)

// openCluster connects to Redis when cluster.redis_url is set (nil otherwise). Tasks an
// earlier process left pending or running end interrupted here, before this one creates
// any, each with a final task_complete after its last persisted event (DESIGN §17): on a
// single node every such task; in a cluster those of this node id (a restarted pod keeps its
// name; the reaper ends those of nodes whose heartbeat stopped).
func openCluster(ctx context.Context, cfg config.Config, a *app, node string, obs cluster.Observer, log *slog.Logger) (*cluster.Cluster, error) {
	if cfg.Cluster.RedisURL == "" {
		ended, err := a.db.InterruptTasks(ctx, "", "interrupted: server stopped before the task ended", task.InterruptedFrame)
		if err != nil {
			return nil, fmt.Errorf("store: mark interrupted tasks: %w", err)
		}
		if len(ended) > 0 {
			log.Warn("tasks left running by an earlier process were marked interrupted", "count", len(ended))
		}
		return nil, nil
	}
	cl, err := cluster.New(cluster.Options{
		RedisURL: cfg.Cluster.RedisURL, Node: node, Store: a.db, Logger: log,
		HeartbeatInterval: cfg.Cluster.HeartbeatInterval, HeartbeatTTL: cfg.Cluster.HeartbeatTTL,
		StreamMaxLen: cfg.Cluster.StreamMaxLen, EventTTL: cfg.Cluster.EventTTL, Observer: obs,
	})
	if err != nil {
		return nil, err
	}
	if err := cl.Ping(ctx); err != nil {
		log.Error("cluster: redis unreachable at start; swarms are refused until it answers", "err", err)
	}
	if n := cl.RecoverNode(ctx); n > 0 {
		log.Warn("tasks left running by an earlier process of this node were marked interrupted", "node", node, "count", n)
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

// clusterNotifier routes what other replicas announce on the bus to this process and
// returns the notifier for changes made here: applied locally and announced.
func clusterNotifier(cl *cluster.Cluster, local *localChanges) *clusterChanges {
	cl.Attach(local.tasks, cluster.Handlers{Revoked: local.TokenRevoked, TenantChanged: local.TenantChangedID, KeyChanged: local.KeyChanged,
		Sessions: local.hub})
	return &clusterChanges{local: local, cl: cl}
}
