package ratelimit

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

func TestCounterAcquireRelease(t *testing.T) {
	c := NewCounter(CounterOptions{})
	var releases []func()
	for i := range 5 {
		release, ok := c.Acquire("acme\x00alice", 5)
		if !ok {
			t.Fatalf("slot %d refused", i+1)
		}
		releases = append(releases, release)
	}
	if release, ok := c.Acquire("acme\x00alice", 5); ok {
		t.Fatal("6th slot of 5 granted")
	} else {
		release() // a refusal's release is a no-op
	}
	if n := c.Count("acme\x00alice"); n != 5 {
		t.Fatalf("Count = %d; want 5", n)
	}
	// Another key has its own slots.
	if _, ok := c.Acquire("acme\x00bob", 5); !ok {
		t.Fatal("other key refused")
	}
	releases[0]()
	releases[0]() // idempotent: the second call gives back nothing more
	if n := c.Count("acme\x00alice"); n != 4 {
		t.Fatalf("Count after double release = %d; want 4", n)
	}
	if _, ok := c.Acquire("acme\x00alice", 5); !ok {
		t.Fatal("released slot not reusable")
	}
	// A lower max applies at once to new acquisitions.
	if _, ok := c.Acquire("acme\x00alice", 3); ok {
		t.Fatal("acquired above a lowered max")
	}
}

func TestCounterZeroCleanup(t *testing.T) {
	c := NewCounter(CounterOptions{})
	var releases []func()
	for i := range 1000 {
		release, ok := c.Acquire("ip:10.0.0."+strconv.Itoa(i), 1)
		if !ok {
			t.Fatalf("key %d refused", i)
		}
		releases = append(releases, release)
	}
	if n := c.Len(); n != 1000 {
		t.Fatalf("Len = %d; want 1000", n)
	}
	for _, r := range releases {
		r()
		r()
	}
	if n := c.Len(); n != 0 {
		t.Fatalf("Len after releasing everything = %d; want 0 (entries at zero are deleted)", n)
	}
	if n := c.Count("ip:10.0.0.1"); n != 0 {
		t.Fatalf("Count = %d", n)
	}
}

func TestCounterLimits(t *testing.T) {
	c := NewCounter(CounterOptions{MaxEntries: 2, Shards: 1})
	if _, ok := c.Acquire("x", 0); ok {
		t.Fatal("max 0 granted a slot")
	}
	ra, _ := c.Acquire("a", 10)
	if _, ok := c.Acquire("b", 10); !ok {
		t.Fatal("second key refused")
	}
	if _, ok := c.Acquire("c", 10); ok {
		t.Fatal("third key granted beyond MaxEntries")
	}
	if _, ok := c.Acquire("a", 10); !ok {
		t.Fatal("existing key refused at MaxEntries")
	}
	ra()
	if _, ok := c.Acquire("c", 10); ok {
		t.Fatal("a still holds a slot; c granted")
	}
}

func TestCounterConcurrent(t *testing.T) {
	c := NewCounter(CounterOptions{})
	const slots = 7
	var inUse, peak atomic.Int64
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				release, ok := c.Acquire("global", slots)
				if ok {
					n := inUse.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					own, ok2 := c.Acquire("user-"+strconv.Itoa(g%5), 1000)
					inUse.Add(-1)
					release()
					if ok2 {
						own()
						own()
					}
				}
				if i%50 == 0 {
					_ = c.Count("global")
				}
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > slots {
		t.Fatalf("peak concurrent holders %d > max %d", p, slots)
	}
	if n := c.Len(); n != 0 {
		t.Fatalf("Len = %d after every release; want 0", n)
	}
}
