package ratelimit

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
)

// CounterOptions configures a Counter.
type CounterOptions struct {
	// MaxEntries caps the distinct keys held at once (DefaultMaxEntries when ≤ 0): a new key
	// is refused beyond it. Entries exist only while a slot is held, so in practice the global
	// caps the caller enforces (connections, tasks) bound the table long before this does.
	MaxEntries int
	// Shards is rounded down to a power of two (default 64).
	Shards int
}

// Counter counts slots in use per key — connections per user or IP, running tasks per user or
// tenant, a global count under one fixed key — and refuses a slot beyond a maximum. A key at
// zero is deleted, so memory follows live usage only.
type Counter struct {
	seed     maphash.Seed
	mask     uint64
	perShard int
	shards   []counterShard
}

type counterShard struct {
	mu sync.Mutex
	m  map[string]int
	_  [64]byte // keep neighbouring shards' locks off one cache line
}

// NewCounter builds a Counter.
func NewCounter(opts CounterOptions) *Counter {
	maxEntries := opts.MaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	n := opts.Shards
	if n <= 0 {
		n = 64
	}
	for n > 1 && maxEntries/n < minPerShard {
		n /= 2
	}
	n = 1 << (63 - bits.LeadingZeros64(uint64(n)))
	c := &Counter{
		seed:     maphash.MakeSeed(),
		mask:     uint64(n - 1),
		perShard: max(1, maxEntries/n),
		shards:   make([]counterShard, n),
	}
	for i := range c.shards {
		c.shards[i].m = make(map[string]int)
	}
	return c
}

func (c *Counter) shard(key string) *counterShard {
	return &c.shards[maphash.String(c.seed, key)&c.mask]
}

// Acquire takes one of key's max slots. On success release gives it back; calling release
// more than once is harmless. On refusal release is a no-op, so `defer release()` is always
// safe. max ≤ 0 refuses everything (use math.MaxInt for "no cap").
func (c *Counter) Acquire(key string, max int) (release func(), ok bool) {
	if max <= 0 {
		return noop, false
	}
	key = boundKey(key)
	s := c.shard(key)
	s.mu.Lock()
	n := s.m[key]
	if n >= max || (n == 0 && len(s.m) >= c.perShard) {
		s.mu.Unlock()
		return noop, false
	}
	s.m[key] = n + 1
	s.mu.Unlock()

	var done atomic.Bool
	return func() {
		if !done.CompareAndSwap(false, true) {
			return
		}
		s.mu.Lock()
		if n := s.m[key] - 1; n > 0 {
			s.m[key] = n
		} else {
			delete(s.m, key)
		}
		s.mu.Unlock()
	}, true
}

func noop() {}

// Count returns the slots of key in use.
func (c *Counter) Count(key string) int {
	key = boundKey(key)
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key]
}

// Len returns the number of keys with at least one slot in use.
func (c *Counter) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
