package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/task"
	"github.com/flowgate/flowgate/internal/task/record"
)

// Store is what the cluster needs of the shared database: node liveness, and reaping a
// node's tasks into the event log.
type Store interface {
	UpsertNode(ctx context.Context, id string, startedAt time.Time) error
	TouchNode(ctx context.Context, id string, at time.Time) error
	StaleNodes(ctx context.Context, before time.Time) ([]string, error)
	LiveTaskIDs(ctx context.Context, node string) ([]string, error)
	LastEventSeq(ctx context.Context, taskID string) (int64, error)
	AppendEvents(ctx context.Context, events []record.Event) error
	InterruptTasks(ctx context.Context, node, errMsg string, final func(record.Task) []byte) ([]record.Task, error)
}

// Local is this node's task manager, for commands arriving from other nodes.
type Local interface {
	CancelLocal(id string) bool
	HoldLocal(id string)
}

// Handlers apply changes announced by any node (including this one) on the bus.
type Handlers struct {
	Revoked       func(ctx context.Context, tenant, jti string, exp time.Time, cancelTasks bool)
	TenantChanged func(ctx context.Context, tenant string)
	KeyChanged    func(ctx context.Context, tenant string)
	// Sessions is this node's hub: it answers other nodes' session questions.
	Sessions SessionHub
}

// Options configures a Cluster.
type Options struct {
	RedisURL          string
	Node              string
	Store             Store
	Logger            *slog.Logger
	HeartbeatInterval time.Duration
	HeartbeatTTL      time.Duration
	StreamMaxLen      int64
	EventTTL          time.Duration
	Now               func() time.Time
	// Observer, when set, is told the latency and outcome of every Redis command.
	Observer Observer
}

// Cluster is one node's view of the cluster. Run drives its background work.
type Cluster struct {
	opts  Options
	rdb   *redis.Client
	log   *slog.Logger
	local Local
	hs    Handlers

	healthy atomic.Bool
	pub     *publisher

	mu    sync.Mutex
	slots map[string]slot // member → what it holds, refreshed by the heartbeat
}

// slot is one cluster-wide reservation this node holds: a task's concurrency slots or a
// connection's place in its user's count.
type slot struct {
	keys   []string
	member string
}

// New connects to Redis (lazily: an unreachable Redis is reported by Ping and /readyz, and
// refuses new swarms, but does not stop the start).
func New(opts Options) (*Cluster, error) {
	if opts.Node == "" || opts.Store == nil {
		return nil, errors.New("cluster: Node and Store are required")
	}
	ro, err := redis.ParseURL(opts.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("cluster: cluster.redis_url: %w", err)
	}
	ro.DialTimeout = 2 * time.Second
	ro.ReadTimeout = 3 * time.Second
	ro.WriteTimeout = 3 * time.Second
	ro.MaxRetries = 1
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// The cluster.* keys' values come from config.Default: none is filled in here.
	switch {
	case opts.HeartbeatInterval <= 0:
		return nil, errors.New("cluster: cluster.heartbeat_interval must be positive")
	case opts.HeartbeatTTL <= opts.HeartbeatInterval:
		return nil, errors.New("cluster: cluster.heartbeat_ttl must be longer than cluster.heartbeat_interval")
	case opts.StreamMaxLen <= 0:
		return nil, errors.New("cluster: cluster.stream_max_len must be positive")
	case opts.EventTTL <= 0:
		return nil, errors.New("cluster: cluster.event_ttl must be positive")
	}
	c := &Cluster{opts: opts, rdb: redis.NewClient(ro), log: opts.Logger, slots: map[string]slot{}}
	if opts.Observer != nil {
		c.rdb.AddHook(observeHook{opts.Observer})
	}
	c.pub = newPublisher(c)
	return c, nil
}

// Attach gives the cluster this node's task manager and the change handlers; call it before Run.
func (c *Cluster) Attach(local Local, hs Handlers) {
	c.local = local
	c.hs = hs
}

// Ping reports whether Redis answers, for /readyz.
func (c *Cluster) Ping(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		c.healthy.Store(false)
		return fmt.Errorf("cluster: redis: %w", err)
	}
	c.healthy.Store(true)
	return nil
}

// Run registers the node and runs heartbeat, reaper, bus and event publisher until ctx
// ends. It returns when all of them have stopped.
func (c *Cluster) Run(ctx context.Context) {
	if err := c.opts.Store.UpsertNode(ctx, c.opts.Node, c.opts.Now()); err != nil {
		c.log.Error("cluster: register node", "node", c.opts.Node, "err", err)
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		c.heartbeat(ctx)
	}()
	go func() {
		defer wg.Done()
		c.listen(ctx)
	}()
	go func() {
		defer wg.Done()
		c.pub.run(ctx)
	}()
	wg.Wait()
}

// Close releases the Redis connections; call it after Run returned.
func (c *Cluster) Close() error { return c.rdb.Close() }

// Node is this node's id.
func (c *Cluster) Node() string { return c.opts.Node }

func (c *Cluster) heartbeat(ctx context.Context) {
	tick := time.NewTicker(c.opts.HeartbeatInterval)
	defer tick.Stop()
	for {
		c.beat(ctx)
		c.reap(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// beat proves this node alive in the store (the source of truth for liveness: it survives
// a Redis restart) and renews every reservation it holds in Redis, re-creating any that a
// Redis restart lost.
func (c *Cluster) beat(ctx context.Context) {
	now := c.opts.Now()
	if err := c.opts.Store.TouchNode(ctx, c.opts.Node, now); errors.Is(err, store.ErrNotFound) {
		_ = c.opts.Store.UpsertNode(ctx, c.opts.Node, now)
	} else if err != nil && ctx.Err() == nil {
		c.log.Warn("cluster: heartbeat not stored", "err", err)
	}
	c.mu.Lock()
	held := make([]slot, 0, len(c.slots))
	for _, s := range c.slots {
		held = append(held, s)
	}
	c.mu.Unlock()
	exp := float64(now.Add(c.opts.HeartbeatTTL).UnixMilli())
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, s := range held {
			for _, k := range s.keys {
				p.ZAdd(ctx, k, redis.Z{Score: exp, Member: s.member})
				p.PExpire(ctx, k, 2*c.opts.HeartbeatTTL)
			}
		}
		p.Ping(ctx)
		return nil
	})
	if err != nil {
		if c.healthy.Swap(false) {
			c.log.Error("cluster: redis unreachable; new swarms are refused until it returns", "err", err)
		}
		return
	}
	if !c.healthy.Swap(true) {
		c.log.Info("cluster: redis reachable")
		c.pub.wakeAll()
	}
}

// reap marks the tasks of nodes whose heartbeat stopped as interrupted and ends their
// event streams, so subscribers anywhere learn the outcome. The store's update returns each
// task to exactly one reaper.
func (c *Cluster) reap(ctx context.Context) {
	stale, err := c.opts.Store.StaleNodes(ctx, c.opts.Now().Add(-c.opts.HeartbeatTTL))
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("cluster: reaper", "err", err)
		}
		return
	}
	for _, node := range stale {
		if node == c.opts.Node {
			continue
		}
		c.interruptNode(ctx, node, "node "+node+" stopped responding")
	}
}

// RecoverNode ends the tasks an earlier process left running under this node's id (a
// container restarted in its pod keeps its name): the reaper never sees them, since this
// process keeps the node's heartbeat fresh. Call it at start, before any task is created.
func (c *Cluster) RecoverNode(ctx context.Context) int {
	return c.interruptNode(ctx, c.opts.Node, "interrupted: node "+c.opts.Node+" restarted before the task ended")
}

// interruptNode ends node's pending and running tasks as interrupted. Events the node
// published to its streams but had not yet written to the event log are copied there
// first, so the final event follows everything any subscriber may have seen; it is written
// to the log and to the stream. It returns how many tasks it ended.
func (c *Cluster) interruptNode(ctx context.Context, node, reason string) int {
	ids, err := c.opts.Store.LiveTaskIDs(ctx, node)
	if err != nil {
		c.log.Warn("cluster: reap node", "node", node, "err", err)
		return 0
	}
	for _, id := range ids {
		if err := c.saveStream(ctx, id); err != nil {
			c.log.Warn("cluster: events of a dead node's task not copied from its stream", "task", id, "err", err)
		}
	}
	tasks, err := c.opts.Store.InterruptTasks(ctx, node, reason, task.InterruptedFrame)
	if err != nil {
		c.log.Warn("cluster: reap node", "node", node, "err", err)
		return 0
	}
	for _, t := range tasks {
		c.log.Warn("cluster: task interrupted", "task", t.ID, "node", node, "reason", reason, "seq", t.LastSeq)
		if err := c.endStream(ctx, t); err != nil {
			c.log.Warn("cluster: final event not published", "task", t.ID, "err", err)
		}
	}
	return len(tasks)
}

var _ task.Cluster = (*Cluster)(nil)
