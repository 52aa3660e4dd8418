package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/flowgate/flowgate/internal/ratelimit"
	"github.com/flowgate/flowgate/internal/task"
)

// reserveScript takes one slot in each of the sorted sets KEYS (members scored by expiry)
// when every set is below its limit (ARGV[3..]). Expired members are dropped first, so a
// dead node's slots free themselves. Returns 0, or the 1-based index of the full set.
var reserveScript = redis.NewScript(`
local now, exp, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZSCORE', key, member) == false and redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then
    return i
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, exp, member)
  redis.call('PEXPIRE', key, tonumber(ARGV[3 + #KEYS + 1]))
end
return 0`)

func (c *Cluster) reserve(ctx context.Context, keys []string, member string, limits []int) (int, error) {
	now := c.opts.Now()
	args := []any{now.UnixMilli(), now.Add(c.opts.HeartbeatTTL).UnixMilli(), member}
	for _, l := range limits {
		args = append(args, l)
	}
	args = append(args, (2 * c.opts.HeartbeatTTL).Milliseconds())
	full, err := reserveScript.Run(ctx, c.rdb, keys, args...).Int()
	if err != nil {
		c.healthy.Store(false)
		return 0, fmt.Errorf("cluster: reserve: %w", err)
	}
	if full == 0 {
		c.mu.Lock()
		c.slots[member] = slot{keys: keys, member: member}
		c.mu.Unlock()
	}
	return full, nil
}

func (c *Cluster) release(keys []string, member string) {
	c.mu.Lock()
	delete(c.slots, member)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.ZRem(ctx, k, member)
		}
		return nil
	})
	if err != nil {
		// The member expires with the heartbeat TTL anyway.
		c.log.Debug("cluster: release", "err", err)
	}
}

// ReserveTask implements task.Cluster: the per-user and per-tenant concurrent-task bounds
// across every replica.
func (c *Cluster) ReserveTask(ctx context.Context, tenant, user, taskID string, userLimit, tenantLimit int) (func(), error) {
	keys := []string{"fg:tasks:u:" + tenant + ":" + user, "fg:tasks:t:" + tenant}
	full, err := c.reserve(ctx, keys, "task:"+taskID, []int{userLimit, tenantLimit})
	switch {
	case err != nil:
		return nil, err
	case full == 1:
		return nil, &task.QuotaError{Scope: "user", Limit: userLimit}
	case full == 2:
		return nil, &task.QuotaError{Scope: "tenant", Limit: tenantLimit}
	}
	return func() { c.release(keys, "task:"+taskID) }, nil
}

// TaskReserved implements task.Cluster: whether the task holds an unexpired slot of its
// tenant's concurrent-task bound, taken by ReserveTask on whichever replica created it.
func (c *Cluster) TaskReserved(ctx context.Context, tenant, taskID string) (bool, error) {
	exp, err := c.rdb.ZScore(ctx, "fg:tasks:t:"+tenant, "task:"+taskID).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("cluster: task reserved: %w", err)
	}
	return exp > float64(c.opts.Now().UnixMilli()), nil
}

// Connections counts connections per user across replicas; other keys (per IP, global)
// stay per replica, where a load balancer spreads them.
type Connections struct {
	c     *Cluster
	local *ratelimit.Counter
}

// Connections returns the cluster-aware connection counter.
func (c *Cluster) Connections(local *ratelimit.Counter) *Connections {
	return &Connections{c: c, local: local}
}

// Acquire takes a place under max for key. For user keys the count is cluster-wide; when
// Redis is unreachable it falls back to this replica's count rather than refusing every
// connection (swarms are refused anyway until Redis returns).
func (n *Connections) Acquire(key string, max int) (func(), bool) {
	release, ok := n.local.Acquire(key, max)
	if !ok || len(key) < 5 || key[:5] != "user:" {
		return release, ok
	}
	member := "conn:" + n.c.opts.Node + ":" + randomID()
	keys := []string{"fg:conns:" + key[5:]}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	full, err := n.c.reserve(ctx, keys, member, []int{max})
	if err != nil {
		return release, true
	}
	if full != 0 {
		release()
		return func() {}, false
	}
	return func() {
		release()
		n.c.release(keys, member)
	}, true
}

// gcraScript is a cluster-wide token bucket (GCRA) per key: ARGV emission interval (ms),
// burst. Time is Redis's own clock (TIME), never a replica's: replicas whose clocks disagree
// would otherwise hand out more (or less) than the limit. Scripts are replicated by their
// effects (Redis ≥ 5 default, the only mode since 7), so TIME inside one is allowed.
// Returns {allowed, retry_after_ms}.
var gcraScript = redis.NewScript(`
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - interval * burst
if now < allow_at + interval then
  return {0, math.ceil(allow_at + interval - now)}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now + interval))
return {1, 0}`)

// Swarms is the cluster-wide per-user swarm bucket, behind a local bucket that refuses
// obvious floods without a round trip.
type Swarms struct {
	c     *Cluster
	local *ratelimit.Limiter
}

// Swarms returns the cluster-aware swarm limiter.
func (c *Cluster) Swarms(local *ratelimit.Limiter) *Swarms { return &Swarms{c: c, local: local} }

// Allow implements the session's SwarmLimiter.
func (s *Swarms) Allow(key string, limit rate.Limit, burst int, now time.Time) ratelimit.Decision {
	if d := s.local.Allow(key, limit, burst, now); !d.OK {
		return d
	}
	if limit <= 0 {
		return ratelimit.Decision{}
	}
	interval := float64(time.Second) / float64(limit) / float64(time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := gcraScript.Run(ctx, s.c.rdb, []string{"fg:rl:swarm:" + key}, interval, burst).Int64Slice()
	if err != nil || len(res) != 2 {
		// Redis is down: the swarm is refused anyway when it asks for cluster slots, with
		// a clearer error than a rate limit.
		return ratelimit.Decision{OK: true}
	}
	if res[0] == 1 {
		return ratelimit.Decision{OK: true}
	}
	return ratelimit.Decision{RetryAfter: time.Duration(res[1]) * time.Millisecond}
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// spendScript adds ARGV[1] nano-dollars and ARGV[2] tokens to a tenant's day total (hash
// KEYS[1]), first setting it to ARGV[3]/ARGV[4] (the store's ledger) when the day has none
// yet, and returns the total. The key outlives its day by one, for late additions.
var spendScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'usd', ARGV[3], 'tok', ARGV[4])
end
local usd = redis.call('HINCRBY', KEYS[1], 'usd', ARGV[1])
local tok = redis.call('HINCRBY', KEYS[1], 'tok', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {usd, tok}`)

var _ task.SharedSpend = (*Cluster)(nil)

// AddSpend implements task.SharedSpend: a tenant's spend today, added to atomically by every
// replica, so a budget holds across them (DESIGN §18).
func (c *Cluster) AddSpend(ctx context.Context, tenant string, day time.Time, add, base task.DaySpend) (task.DaySpend, error) {
	key := "fg:spend:" + tenant + ":" + day.UTC().Format(time.DateOnly)
	res, err := spendScript.Run(ctx, c.rdb, []string{key}, add.NanoUSD, add.Tokens, base.NanoUSD, base.Tokens,
		(48 * time.Hour).Milliseconds()).Int64Slice()
	if err != nil {
		return task.DaySpend{}, fmt.Errorf("cluster: add spend: %w", err)
	}
	if len(res) != 2 {
		return task.DaySpend{}, fmt.Errorf("cluster: add spend: %d values in the answer", len(res))
	}
	return task.DaySpend{NanoUSD: res[0], Tokens: res[1]}, nil
}
