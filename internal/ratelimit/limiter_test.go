package ratelimit

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// perMinute is the DESIGN §6 per-user swarm limit: 10 a minute, burst 10.
const perMinute = rate.Limit(1.0 / 6)

func t0() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

// near reports whether d is within 1ms of want (float rounding in x/time/rate).
func near(d, want time.Duration) bool {
	diff := d - want
	return diff > -time.Millisecond && diff < time.Millisecond
}

func TestAllowBurstThenRetryAfter(t *testing.T) {
	l := New(Options{})
	now := t0()
	for i := range 10 {
		if d := l.Allow("acme\x00alice", perMinute, 10, now); !d.OK {
			t.Fatalf("call %d refused: %+v", i+1, d)
		}
	}
	d := l.Allow("acme\x00alice", perMinute, 10, now)
	if d.OK || d.Overflow || !near(d.RetryAfter, 6*time.Second) {
		t.Fatalf("11th call = %+v; want refused with RetryAfter ≈ 6s", d)
	}
	// Two seconds later a third of a token is back: four seconds to go.
	d = l.Allow("acme\x00alice", perMinute, 10, now.Add(2*time.Second))
	if d.OK || !near(d.RetryAfter, 4*time.Second) {
		t.Fatalf("at +2s = %+v; want RetryAfter ≈ 4s", d)
	}
	// Another user is not affected.
	if d := l.Allow("acme\x00bob", perMinute, 10, now); !d.OK {
		t.Fatalf("other key refused: %+v", d)
	}
}

func TestRefill(t *testing.T) {
	l := New(Options{})
	now := t0()
	for range 10 {
		l.Allow("k", perMinute, 10, now)
	}
	steps := []struct {
		at   time.Duration
		want bool
	}{
		{5999 * time.Millisecond, false},
		{6 * time.Second, true}, // one token back
		{6 * time.Second, false},
		{11 * time.Second, false},
		{12 * time.Second, true},
	}
	for _, s := range steps {
		if d := l.Allow("k", perMinute, 10, now.Add(s.at)); d.OK != s.want {
			t.Fatalf("at +%v: %+v; want OK=%v", s.at, d, s.want)
		}
	}
	// After a full minute of quiet the whole burst is back, and no more.
	later := now.Add(12*time.Second + time.Minute)
	for i := range 10 {
		if !l.Allow("k", perMinute, 10, later).OK {
			t.Fatalf("call %d after refill refused", i+1)
		}
	}
	if l.Allow("k", perMinute, 10, later).OK {
		t.Fatal("burst exceeded after refill")
	}
}

func TestRefusedCallsDoNotConsume(t *testing.T) {
	l := New(Options{})
	now := t0()
	for range 10 {
		l.Allow("k", perMinute, 10, now)
	}
	// Hammering while empty must not push the next token further away.
	for i := range 1000 {
		at := now.Add(time.Duration(i) * 5 * time.Millisecond) // up to +5s
		if d := l.Allow("k", perMinute, 10, at); d.OK {
			t.Fatalf("refused-call %d allowed", i)
		}
	}
	if d := l.Allow("k", perMinute, 10, now.Add(6*time.Second)); !d.OK {
		t.Fatalf("token not back at +6s after refused calls: %+v", d)
	}
}

func TestOverrideChanges(t *testing.T) {
	l := New(Options{})
	now := t0()
	for range 10 {
		l.Allow("k", perMinute, 10, now)
	}
	// The tenant's limit is raised to 60/min: the next token comes in one second, not six.
	fast := rate.Every(time.Second)
	if d := l.Allow("k", fast, 10, now); d.OK || !near(d.RetryAfter, time.Second) {
		t.Fatalf("after raising the limit: %+v; want RetryAfter ≈ 1s", d)
	}
	if d := l.Allow("k", fast, 10, now.Add(time.Second)); !d.OK {
		t.Fatalf("after raising the limit, +1s: %+v", d)
	}
	// A lowered burst caps what a quiet key can spend at once.
	for i := range 3 {
		if !l.Allow("q", perMinute, 10, now).OK {
			t.Fatalf("q call %d refused", i)
		}
	}
	allowed := 0
	for range 10 {
		if l.Allow("q", perMinute, 3, now).OK {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("after lowering burst to 3 with 7 tokens left, %d allowed; want 3", allowed)
	}
	// A raised burst does not hand out tokens at once.
	if l.Allow("q", perMinute, 50, now).OK {
		t.Fatal("raising burst granted a token")
	}
}

func TestSpecialLimits(t *testing.T) {
	l := New(Options{})
	now := t0()
	for range 100 {
		if !l.Allow("inf", rate.Inf, 0, now).OK {
			t.Fatal("rate.Inf refused")
		}
	}
	if d := l.Allow("zero", 0, 10, now); d.OK {
		t.Fatal("zero limit allowed")
	}
	if d := l.Allow("noburst", perMinute, 0, now); d.OK {
		t.Fatal("zero burst allowed")
	}
	if n := l.Len(); n != 0 {
		t.Fatalf("special limits kept %d entries", n)
	}
	// A very slow bucket still starts full.
	for i := range 10 {
		if !l.Allow("slow", rate.Every(24*time.Hour), 10, now).OK {
			t.Fatalf("slow bucket call %d refused", i+1)
		}
	}
}

func TestConcurrentExactBurst(t *testing.T) {
	l := New(Options{})
	now := t0()
	var ok atomic.Int64
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if l.Allow("hot", perMinute, 100, now).OK {
					ok.Add(1)
				}
				l.Allow("user-"+strconv.Itoa(g)+"-"+strconv.Itoa(i%7), perMinute, 10, now.Add(time.Duration(i)*time.Millisecond))
			}
		}()
	}
	wg.Wait()
	if got := ok.Load(); got != 100 {
		t.Fatalf("%d calls allowed on a burst-100 bucket at one instant; want exactly 100", got)
	}
	if n := l.Len(); n != 1+64*7 {
		t.Fatalf("Len = %d; want %d", n, 1+64*7)
	}
}

// TestEvictsOnlyFullBuckets: a client that spent its budget cannot get it back by flooding
// the limiter with new keys, however many; the newcomers are refused instead.
func TestEvictsOnlyFullBuckets(t *testing.T) {
	l := New(Options{MaxEntries: 1000, Shards: 1})
	now := t0()
	for range 10 {
		l.Allow("attacker", perMinute, 10, now)
	}
	refused := 0
	for i := range 100_000 {
		at := now.Add(time.Duration(i) * 50 * time.Microsecond) // 100k keys in 5s, faster than refill
		d := l.Allow("flood-"+strconv.Itoa(i), perMinute, 10, at)
		if !d.OK {
			if !d.Overflow || d.RetryAfter <= 0 {
				t.Fatalf("flood key %d refused without overflow: %+v", i, d)
			}
			refused++
		}
	}
	if d := l.Allow("attacker", perMinute, 10, now.Add(5*time.Second)); d.OK || d.Overflow {
		t.Fatalf("attacker's bucket was reset by the flood: %+v", d)
	}
	st := l.Stats()
	if st.Entries > 1000 || st.Evictions != 0 || refused != 100_000-999 || st.Overflows != uint64(refused) {
		t.Fatalf("stats %+v, refused %d", st, refused)
	}
	// Once the buckets have refilled, newcomers get in again, each evicting full buckets; the
	// newcomers' own buckets (one token spent at this instant) are not evicted in turn.
	later := now.Add(2 * time.Minute)
	for i := range 500 {
		if d := l.Allow("late-"+strconv.Itoa(i), perMinute, 10, later); !d.OK {
			t.Fatalf("late key %d refused: %+v", i, d)
		}
	}
	if d := l.Allow("attacker", perMinute, 10, later); !d.OK {
		t.Fatalf("attacker refused after refill: %+v", d)
	}
	if st := l.Stats(); st.Entries > 1000 || st.Evictions < 500 {
		t.Fatalf("after refill: %+v", st)
	}
	for i := range 500 {
		if _, ok := l.shards[0].m["late-"+strconv.Itoa(i)]; !ok {
			t.Fatalf("late key %d (still refilling) was evicted", i)
		}
	}
}

// TestOverflowRetryAfter: the newcomer is told when the soonest bucket will be full.
func TestOverflowRetryAfter(t *testing.T) {
	l := New(Options{MaxEntries: 2, Shards: 1})
	now := t0()
	l.Allow("a", perMinute, 10, now)                  // full again at +6s
	l.Allow("b", perMinute, 10, now.Add(time.Second)) // full again at +7s
	d := l.Allow("c", perMinute, 10, now.Add(2*time.Second))
	if d.OK || !d.Overflow || !near(d.RetryAfter, 4*time.Second) {
		t.Fatalf("newcomer = %+v; want overflow, RetryAfter ≈ 4s", d)
	}
	if d := l.Allow("c", perMinute, 10, now.Add(6*time.Second)); !d.OK {
		t.Fatalf("newcomer at +6s = %+v", d)
	}
	if _, ok := l.shards[0].m["a"]; ok {
		t.Fatal("the full bucket was not the one evicted")
	}
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestLimiterMemoryBounded pushes 1,000,000 distinct keys through limiters and reports memory.
func TestLimiterMemoryBounded(t *testing.T) {
	const keys = 1_000_000
	scenarios := []struct {
		name       string
		maxEntries int
		limit      rate.Limit
		burst      int
		step       time.Duration // clock advance per call
	}{
		// Each key makes one call then goes quiet: buckets refill in 10ms and are evicted.
		{"refilling keys, cap 100k", 100_000, 1000, 10, time.Microsecond},
		// A flood of new keys far faster than refill (10/min): the cap holds, newcomers overflow.
		{"flood faster than refill, cap 100k", 100_000, perMinute, 10, time.Microsecond},
		// The default cap filled to the brim: the worst-case footprint. Shards fill unevenly, so
		// a few newcomers overflow just before the total reaches MaxEntries.
		{"flood, default cap 1M", 0, perMinute, 10, time.Microsecond},
	}
	names := make([]string, keys)
	for i := range names {
		names[i] = "tenant-" + strconv.Itoa(i%1000) + "\x00user-" + strconv.Itoa(i)
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if sc.maxEntries == 0 && testing.Short() {
				t.Skip("-short: skipping the ~200 MiB full-default-cap measurement (testing.Short)")
			}
			before := heapInuse()
			l := New(Options{MaxEntries: sc.maxEntries})
			capacity := sc.maxEntries
			if capacity == 0 {
				capacity = DefaultMaxEntries
			}
			now := t0()
			allowed, peak := 0, 0
			for i, k := range names {
				if l.Allow(k, sc.limit, sc.burst, now).OK {
					allowed++
				}
				now = now.Add(sc.step)
				if i%10_000 == 0 {
					peak = max(peak, l.Len())
				}
			}
			st := l.Stats()
			peak = max(peak, st.Entries)
			after := heapInuse()
			runtime.KeepAlive(l)
			for i := range l.shards {
				if n := len(l.shards[i].m); n > l.perShard {
					t.Fatalf("shard %d holds %d > per-shard cap %d", i, n, l.perShard)
				}
			}
			if peak > capacity {
				t.Fatalf("peak entries %d exceed MaxEntries %d", peak, capacity)
			}
			grown := int64(after) - int64(before)
			perEntry := 0.0
			if st.Entries > 0 {
				perEntry = float64(grown) / float64(st.Entries)
			}
			t.Logf("%d keys: allowed %d, entries %d (peak %d, cap %d, %d shards × %d), evictions %d, overflows %d; HeapInuse %.1f MiB → %.1f MiB (+%.1f MiB, ≈%.0f B/entry)",
				keys, allowed, st.Entries, peak, capacity, len(l.shards), l.perShard, st.Evictions, st.Overflows,
				mib(before), mib(after), float64(grown)/(1<<20), perEntry)
		})
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func BenchmarkAllowParallel(b *testing.B) {
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("tenant-%d\x00user-%d", i%100, i)
	}
	b.Run("many keys", func(b *testing.B) {
		l := New(Options{})
		var seq atomic.Uint64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := seq.Add(1) * 7919
			for pb.Next() {
				i++
				l.Allow(keys[i%uint64(len(keys))], perMinute, 10, time.Now())
			}
		})
	})
	b.Run("one hot key", func(b *testing.B) {
		l := New(Options{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow("tenant\x00hot", 1e6, 1000, time.Now())
			}
		})
	})
	b.Run("new key every call", func(b *testing.B) {
		l := New(Options{MaxEntries: 100_000})
		var seq atomic.Uint64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow("ip:"+strconv.FormatUint(seq.Add(1), 10), 100, 10, time.Now())
			}
		})
	})
}

func TestLongKeysBounded(t *testing.T) {
	long := strings.Repeat("u", 100_000)
	if k := boundKey(long); len(k) != 33 || k == boundKey(long+"x") {
		t.Fatalf("boundKey(long) = %d bytes", len(k))
	}
	// A short key cannot impersonate a digest.
	if forged := boundKey(long); boundKey(forged) == forged {
		t.Fatal("a key shaped like a digest is kept as-is")
	}
	l := New(Options{})
	now := t0()
	for range 10 {
		l.Allow("acme\x00"+long, perMinute, 10, now)
	}
	if l.Allow("acme\x00"+long, perMinute, 10, now).OK {
		t.Fatal("long key's bucket not shared across calls")
	}
	if !l.Allow("acme\x00"+long+"2", perMinute, 10, now).OK {
		t.Fatal("different long keys share a bucket")
	}
	c := NewCounter(CounterOptions{})
	c.Acquire(long, 1)
	if c.Count(long) != 1 {
		t.Fatal("counter lost a long key")
	}
}
