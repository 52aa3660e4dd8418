package ratelimit_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/flowgate/flowgate/internal/ratelimit"
)

// BenchmarkHandshakeChecks is the limiter work of one WebSocket handshake, in the order the
// server does it: the per-IP handshake bucket, then the global, per-IP and per-user
// connection slots, released when the connection ends. Many users behind one IP, as a load
// run (or a NAT) produces. BenchmarkAllowParallel covers the token bucket alone.
func BenchmarkHandshakeChecks(b *testing.B) {
	l := ratelimit.New(ratelimit.Options{})
	c := ratelimit.NewCounter(ratelimit.CounterOptions{})
	users := make([]string, 10_000)
	for i := range users {
		users[i] = "user:demo\x00load-" + strconv.Itoa(i)
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			if !l.Allow("hs:127.0.0.1", rate.Limit(1e9), 1e9, time.Now()).OK {
				b.Error("handshake refused")
				return
			}
			relG, ok1 := c.Acquire("global", 1<<30)
			relIP, ok2 := c.Acquire("ip:127.0.0.1", 1<<30)
			relU, ok3 := c.Acquire(users[i%uint64(len(users))], 1<<30)
			if !ok1 || !ok2 || !ok3 {
				b.Error("slot refused")
				return
			}
			relU()
			relIP()
			relG()
		}
	})
}

// BenchmarkCounterAcquire is one slot taken and given back: per-user task and connection
// counts, distinct keys spread over the shards.
func BenchmarkCounterAcquire(b *testing.B) {
	c := ratelimit.NewCounter(ratelimit.CounterOptions{})
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = "demo\x00user-" + strconv.Itoa(i)
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			release, ok := c.Acquire(keys[seq.Add(1)%uint64(len(keys))], 5)
			if !ok {
				b.Error("refused")
				return
			}
			release()
		}
	})
}
