package ratelimit

import (
	"crypto/sha256"
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxEntries caps the buckets a Limiter holds when Options.MaxEntries is zero. At about
// 200 bytes a bucket (see TestLimiterMemoryBounded) that is a couple of hundred MiB at worst.
const DefaultMaxEntries = 1_000_000

// defaultShards spreads keys over independent locks so concurrent callers rarely meet.
const defaultShards = 256

// minPerShard keeps shards from being so small that hashing luck decides who gets refused.
const minPerShard = 64

// sweepPerInsert is how many refilled buckets an insert evicts on the way, so the table tracks
// recently active keys instead of filling up to the cap and staying there.
const sweepPerInsert = 2

// MaxKeyBytes bounds the memory a key can hold: a longer key is kept as its SHA-256 instead,
// so a hostile subject claim of kilobytes costs 40 bytes like any other.
const MaxKeyBytes = 256

// boundKey returns key, or a fixed-size digest of it when it is longer than MaxKeyBytes. Digest
// keys start with 0xff and so does any key that is digested whatever its length, so a key
// kept as-is (never starting with 0xff, which valid UTF-8 never does) cannot equal a digest.
func boundKey(key string) string {
	if len(key) <= MaxKeyBytes && (key == "" || key[0] != 0xff) {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "\xff" + string(sum[:])
}

// Options configures a Limiter.
type Options struct {
	// MaxEntries is a hard cap on buckets across all shards (DefaultMaxEntries when ≤ 0).
	// Each shard holds at most MaxEntries/shards, so the total never exceeds it.
	MaxEntries int
	// Shards is rounded down to a power of two (default 256, fewer for small MaxEntries).
	Shards int
}

// Decision is the answer to one Allow call.
type Decision struct {
	OK bool
	// RetryAfter is how long until the call would succeed, when !OK: until one token is back,
	// or (Overflow) until some bucket is full again and can make room. Zero when no wait helps
	// (a zero limit or burst).
	RetryAfter time.Duration
	// Overflow: refused because the limiter is full of buckets that are still refilling, not
	// because this key spent its budget. Worth a metric: it means MaxEntries is too small for
	// the number of keys active within one refill period, or someone is flooding new keys.
	Overflow bool
}

// Stats describes a Limiter's state for metrics and tests.
type Stats struct {
	Entries   int    // buckets held now
	Evictions uint64 // refilled buckets dropped
	Overflows uint64 // new keys refused because the table was full
}

// Limiter is a set of token buckets (golang.org/x/time/rate) keyed by string — "tenant\x00user",
// "ip:203.0.113.7" — with a bounded memory footprint whatever the number of keys.
//
// Eviction: a bucket that has refilled to its burst carries no information (a new bucket
// starts full), so those are the only buckets ever evicted, soonest-full first; each shard keeps
// its buckets in a min-heap ordered by the time they will be full. No client can therefore reset
// its own bucket by flooding other keys, however fast. The price: when every bucket of a shard
// is still refilling (more keys active within one refill period than MaxEntries allows), a new
// key is refused with Overflow set, while keys already present keep their exact budget. This
// fails closed for newcomers rather than open for an attacker; size MaxEntries for the number of
// keys active within a refill period (burst/limit), and bucket IPv6 clients by prefix
// (clientip.Block) so one host cannot bring many keys.
//
// Shards are picked by a seeded hash (random per Limiter), so no one can aim keys at one shard.
type Limiter struct {
	seed     maphash.Seed
	mask     uint64
	perShard int
	shards   []shard
}

type shard struct {
	mu        sync.Mutex
	m         map[string]*bucket
	heap      []heapItem // min-heap on fullAt
	evictions uint64
	overflows uint64
	_         [64]byte // keep neighbouring shards' locks off one cache line
}

type bucket struct {
	lim rate.Limiter
	key string
	idx int // position in the shard's heap
}

// heapItem keeps the sort key next to the pointer so sifting reads one contiguous slice
// instead of chasing a pointer per comparison.
type heapItem struct {
	fullAt int64 // UnixNano at which the bucket is back at its burst
	b      *bucket
}

// New builds a Limiter. It starts no goroutine: eviction happens on insert.
func New(opts Options) *Limiter {
	maxEntries := opts.MaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	n := opts.Shards
	if n <= 0 {
		n = defaultShards
	}
	for n > 1 && maxEntries/n < minPerShard {
		n /= 2
	}
	n = 1 << (63 - bits.LeadingZeros64(uint64(n))) // round down to a power of two
	l := &Limiter{
		seed:     maphash.MakeSeed(),
		mask:     uint64(n - 1),
		perShard: max(1, maxEntries/n),
		shards:   make([]shard, n),
	}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*bucket)
	}
	return l
}

// Allow spends one token of key's bucket at time now, if there is one. limit and burst are
// applied on every call, so a tenant's override takes effect at its next request (a raised
// burst does not add tokens at once; a lowered one caps them). rate.Inf always allows and keeps
// no state; a limit ≤ 0 or a burst < 1 always refuses.
func (l *Limiter) Allow(key string, limit rate.Limit, burst int, now time.Time) Decision {
	if limit == rate.Inf {
		return Decision{OK: true}
	}
	if limit <= 0 || burst < 1 {
		return Decision{}
	}
	key = boundKey(key)
	nowNs := now.UnixNano()
	s := &l.shards[maphash.String(l.seed, key)&l.mask]
	s.mu.Lock()
	defer s.mu.Unlock()

	b, found := s.m[key]
	if !found {
		s.sweep(nowNs, sweepPerInsert)
		if len(s.m) >= l.perShard {
			// The heap top is the soonest-full bucket and it is still refilling: so is every
			// other one. Refuse the newcomer rather than reset someone's budget.
			s.overflows++
			return Decision{RetryAfter: time.Duration(s.heap[0].fullAt - nowNs), Overflow: true}
		}
		b = &bucket{key: key, idx: len(s.heap)}
		startFull(&b.lim, now, limit, burst)
		s.m[key] = b
		s.heap = append(s.heap, heapItem{b: b})
	}
	changed := !found
	if found && b.lim.Limit() != limit {
		b.lim.SetLimitAt(now, limit)
		changed = true
	}
	if found && b.lim.Burst() != burst {
		b.lim.SetBurstAt(now, burst)
		changed = true
	}

	ok := b.lim.AllowN(now, 1)
	tokens := b.lim.TokensAt(now)
	// A refused call spends nothing, so the time the bucket is full again only moves when a
	// token was spent or the limit changed: the refused (abusive) path skips the heap.
	if ok || changed {
		s.heap[b.idx].fullAt = addSeconds(nowNs, (float64(burst)-tokens)/float64(limit))
		s.fix(b.idx)
	}
	if ok {
		return Decision{OK: true}
	}
	// A refused AllowN consumed nothing; the wait is for the missing fraction of one token.
	return Decision{RetryAfter: time.Duration(addSeconds(0, (1-tokens)/float64(limit)))}
}

// startFull makes a zero rate.Limiter a full bucket: x/time/rate has no way to set tokens, but
// a bucket last touched one fill-time ago has refilled to its burst by now.
func startFull(lim *rate.Limiter, now time.Time, limit rate.Limit, burst int) {
	back := time.Duration(addSeconds(0, float64(burst)/float64(limit))) + time.Second
	if back <= 0 || back > 100*365*24*time.Hour {
		back = 100 * 365 * 24 * time.Hour
	}
	past := now.Add(-back)
	lim.SetLimitAt(past, limit)
	lim.SetBurstAt(past, burst)
}

// addSeconds adds sec seconds to ns, rounding up to the nanosecond and saturating.
func addSeconds(ns int64, sec float64) int64 {
	d := math.Ceil(sec * 1e9)
	if d <= 0 {
		return ns
	}
	if d >= float64(math.MaxInt64-ns) {
		return math.MaxInt64
	}
	return ns + int64(d)
}

// sweep evicts up to n buckets that are full at nowNs.
func (s *shard) sweep(nowNs int64, n int) {
	for ; n > 0 && len(s.heap) > 0 && s.heap[0].fullAt <= nowNs; n-- {
		b := s.heap[0].b
		s.remove(0)
		delete(s.m, b.key)
		s.evictions++
	}
}

// Len returns the number of buckets held.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Stats returns the entry count and eviction counters.
func (l *Limiter) Stats() Stats {
	var st Stats
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		st.Entries += len(s.m)
		st.Evictions += s.evictions
		st.Overflows += s.overflows
		s.mu.Unlock()
	}
	return st
}

// The heap is hand-written rather than container/heap: no interface calls under the lock.

func (s *shard) less(i, j int) bool { return s.heap[i].fullAt < s.heap[j].fullAt }

func (s *shard) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.heap[i].b.idx = i
	s.heap[j].b.idx = j
}

func (s *shard) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			return
		}
		s.swap(i, p)
		i = p
	}
}

func (s *shard) down(i int) bool {
	start, n := i, len(s.heap)
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && s.less(r, c) {
			c = r
		}
		if !s.less(c, i) {
			break
		}
		s.swap(i, c)
		i = c
	}
	return i > start
}

func (s *shard) fix(i int) {
	if !s.down(i) {
		s.up(i)
	}
}

func (s *shard) remove(i int) {
	last := len(s.heap) - 1
	if i != last {
		s.swap(i, last)
	}
	s.heap[last] = heapItem{}
	s.heap = s.heap[:last]
	if i != last {
		s.fix(i)
	}
}
