package cluster

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

type redisObservation struct {
	cmd    string
	d      time.Duration
	failed bool
}

// cmdLog is an Observer that keeps what it is told.
type cmdLog struct {
	mu  sync.Mutex
	obs []redisObservation
}

func (l *cmdLog) Observe(cmd string, d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.obs = append(l.obs, redisObservation{cmd, d, err != nil})
}

// take returns what was observed since the last take, dials left out.
func (l *cmdLog) take() []redisObservation {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []redisObservation
	for _, o := range l.obs {
		if o.cmd != "dial" {
			out = append(out, o)
		}
	}
	l.obs = nil
	return out
}

func TestObserverHook(t *testing.T) {
	l := &cmdLog{}
	c, err := New(Options{RedisURL: redisURL(t), Node: randomName("n-"), Store: storetest.Open(t, store.DriverSQLite), Observer: l,
		HeartbeatInterval: 2 * time.Second, HeartbeatTTL: 10 * time.Second, StreamMaxLen: 100000, EventTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	expect := func(what string, want ...redisObservation) {
		t.Helper()
		got := l.take()
		if len(got) != len(want) {
			t.Fatalf("%s: observed %+v, want %+v", what, got, want)
		}
		for i, o := range got {
			timed := o.d > 0
			if o.cmd != want[i].cmd || o.failed != want[i].failed || timed != (want[i].d > 0) {
				t.Fatalf("%s: observed %+v, want %+v", what, got, want)
			}
		}
	}
	ok := func(cmd string) redisObservation { return redisObservation{cmd: cmd, d: 1} }

	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	expect("ping", ok("ping"))

	key := randomName("fg:test:observe:")
	if err := c.rdb.GetDel(ctx, key).Err(); err != redis.Nil {
		t.Fatalf("getdel of a missing key: %v", err)
	}
	expect("an empty answer is no failure", ok("getdel"))

	// A script Redis has not seen: EVALSHA is refused (NOSCRIPT), then EVAL runs it.
	script := redis.NewScript("return '" + randomName("") + "'")
	if err := script.Run(ctx, c.rdb, []string{key}).Err(); err != nil {
		t.Fatal(err)
	}
	expect("script", ok("script"), ok("script"))

	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, "v", time.Minute)
		p.GetDel(ctx, key)
		p.GetDel(ctx, key) // redis.Nil inside a pipeline
		return nil
	})
	if err != redis.Nil {
		t.Fatalf("pipeline: %v", err)
	}
	expect("pipeline", ok("pipeline"))

	if err := c.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, "0"}, Block: 20 * time.Millisecond}).Err(); err != redis.Nil {
		t.Fatalf("xread: %v", err)
	}
	expect("a blocking read is counted, not timed", redisObservation{cmd: "xread"})

	if err := c.rdb.Do(ctx, "nosuchcommand").Err(); err == nil {
		t.Fatal("unknown command accepted")
	}
	expect("a refused command", redisObservation{cmd: "nosuchcommand", d: 1, failed: true})
}

// A Redis that cannot be reached shows as failed dials.
func TestObserverDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	l := &cmdLog{}
	c, err := New(Options{RedisURL: "redis://" + addr, Node: randomName("n-"), Store: storetest.Open(t, store.DriverSQLite), Observer: l,
		HeartbeatInterval: 2 * time.Second, HeartbeatTTL: 10 * time.Second, StreamMaxLen: 100000, EventTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()); err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var dials, failedDials, pings int
	for _, o := range l.obs {
		switch o.cmd {
		case "dial":
			dials++
			if o.failed {
				failedDials++
			}
		case "ping":
			pings++
			if !o.failed {
				t.Errorf("ping observed as a success")
			}
		}
	}
	if dials == 0 || failedDials != dials || pings != 1 {
		t.Fatalf("observed %+v: want failed dials and one failed ping", l.obs)
	}
}
