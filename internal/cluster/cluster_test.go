package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/clocktest"
	"github.com/flowgate/flowgate/internal/ratelimit"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
	"github.com/flowgate/flowgate/internal/task"
)

// redisURL is the machine's Redis; every test uses keys of its own (random tenants, users and
// task ids), so tests may run in parallel with each other and with other packages.
func redisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("FLOWGATE_TEST_REDIS_URL")
	if u == "" {
		u = "redis://127.0.0.1:6379/3"
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", opts.Addr, 2*time.Second)
	if err != nil {
		if os.Getenv("FLOWGATE_TEST_REQUIRE_SERVICES") != "" {
			t.Fatalf("redis not reachable at %s (FLOWGATE_TEST_REQUIRE_SERVICES is set): %v", opts.Addr, err)
		}
		t.Skipf("redis not reachable at %s: %v", opts.Addr, err)
	}
	c.Close()
	return u
}

func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func newCluster(t *testing.T, node string, now func() time.Time) *Cluster {
	t.Helper()
	c, err := New(Options{RedisURL: redisURL(t), Node: node, Store: storetest.Open(t, store.DriverSQLite),
		HeartbeatInterval: 100 * time.Millisecond, HeartbeatTTL: time.Second, StreamMaxLen: 100000, EventTTL: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReserveTaskAcrossNodes(t *testing.T) {
	a := newCluster(t, randomName("a-"), nil)
	b := newCluster(t, randomName("b-"), nil)
	ctx := context.Background()
	tenant, user := randomName("t"), randomName("u")
	var releases []func()
	for i, c := range []*Cluster{a, b, a} {
		rel, err := c.ReserveTask(ctx, tenant, user, fmt.Sprintf("task-%d", i), 3, 10)
		if err != nil {
			t.Fatalf("reserve %d: %v", i, err)
		}
		releases = append(releases, rel)
	}
	_, err := b.ReserveTask(ctx, tenant, user, "task-3", 3, 10)
	var qe *task.QuotaError
	if !errors.As(err, &qe) || qe.Scope != "user" {
		t.Fatalf("4th task of one user across nodes = %v; want the user quota", err)
	}
	// Another user of the tenant is bound by the tenant limit (here 4 in all).
	if _, err := a.ReserveTask(ctx, tenant, randomName("v"), "task-4", 3, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReserveTask(ctx, tenant, randomName("w"), "task-5", 3, 4); !errors.As(err, &qe) || qe.Scope != "tenant" {
		t.Fatalf("5th task of the tenant = %v; want the tenant quota", err)
	}
	releases[0]()
	if rel, err := b.ReserveTask(ctx, tenant, user, "task-6", 3, 10); err != nil {
		t.Fatalf("after a release: %v", err)
	} else {
		rel()
	}
}

// TaskReserved answers for every replica: a task reserved on one is seen from another until
// it is released or its slot expires (a dead node); other tenants' ids and unknown ids are not.
func TestTaskReservedAcrossNodes(t *testing.T) {
	clk := clocktest.New(time.Now())
	a := newCluster(t, randomName("a-"), clk.Now)
	b := newCluster(t, randomName("b-"), clk.Now)
	ctx := context.Background()
	tenant, other := randomName("t"), randomName("t")
	reserved := func(tenant, id string) bool {
		t.Helper()
		ok, err := b.TaskReserved(ctx, tenant, id)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	release, err := a.ReserveTask(ctx, tenant, randomName("u"), "task-1", 3, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !reserved(tenant, "task-1") {
		t.Fatal("a task reserved on node a is not seen from node b")
	}
	if reserved(other, "task-1") || reserved(tenant, "task-2") {
		t.Fatal("another tenant's id, or an unknown id, is seen as reserved")
	}
	release()
	if reserved(tenant, "task-1") {
		t.Fatal("a released task is still reserved")
	}
	dead := newCluster(t, randomName("dead-"), clk.Now)
	if _, err := dead.ReserveTask(ctx, tenant, randomName("u"), "orphan", 3, 10); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second) // past the heartbeat TTL: the dead node never renewed it
	if reserved(tenant, "orphan") {
		t.Fatal("a dead node's expired slot is still reserved")
	}
}

func TestSlotsOfADeadNodeExpire(t *testing.T) {
	clk := clocktest.New(time.Now())
	dead := newCluster(t, randomName("dead-"), clk.Now)
	live := newCluster(t, randomName("live-"), clk.Now)
	ctx := context.Background()
	tenant, user := randomName("t"), randomName("u")
	if _, err := dead.ReserveTask(ctx, tenant, user, "orphan", 1, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := live.ReserveTask(ctx, tenant, user, "next", 1, 10); err == nil {
		t.Fatal("the dead node's slot was not counted")
	}
	clk.Advance(2 * time.Second) // past the heartbeat TTL: the dead node never renewed it
	if _, err := live.ReserveTask(ctx, tenant, user, "next", 1, 10); err != nil {
		t.Fatalf("expired slot still counted: %v", err)
	}
}

func TestSwarmBucketIsShared(t *testing.T) {
	a := newCluster(t, randomName("a-"), nil)
	b := newCluster(t, randomName("b-"), nil)
	sa := a.Swarms(ratelimit.New(ratelimit.Options{}))
	sb := b.Swarms(ratelimit.New(ratelimit.Options{}))
	key := randomName("tenant\x00user")
	now := time.Now()
	limit := rate.Limit(10.0 / 60)
	for i := 0; i < 10; i++ {
		s := sa
		if i%2 == 1 {
			s = sb
		}
		if d := s.Allow(key, limit, 10, now); !d.OK {
			t.Fatalf("swarm %d refused: %+v", i+1, d)
		}
	}
	for _, s := range []*Swarms{sa, sb} {
		d := s.Allow(key, limit, 10, now)
		if d.OK || d.RetryAfter <= 0 || d.RetryAfter > 6*time.Second+time.Millisecond {
			t.Fatalf("11th swarm = %+v; want a refusal with RetryAfter in (0, 6s]", d)
		}
	}
	// A replica whose clock runs an hour ahead gets no fresh bucket: the cluster bucket keeps
	// Redis's time, not the caller's.
	skewed := b.Swarms(ratelimit.New(ratelimit.Options{}))
	if d := skewed.Allow(key, limit, 10, now.Add(time.Hour)); d.OK {
		t.Fatal("a replica with a clock an hour ahead was allowed past the shared bucket")
	}
}

func TestTicketsAreSingleUseAcrossNodes(t *testing.T) {
	a := newCluster(t, randomName("a-"), nil)
	b := newCluster(t, randomName("b-"), nil)
	p := &auth.Principal{Tenant: "acme", Subject: "alice", Permissions: []string{auth.PermSwarmExecute}, ExpiresAt: time.Now().Add(time.Hour)}
	id, exp, err := a.Tickets(30*time.Second, 0).Issue(p)
	if err != nil || time.Until(exp) > 31*time.Second {
		t.Fatalf("Issue = %v, %v", exp, err)
	}
	got, err := b.Tickets(30*time.Second, 0).Redeem(id)
	if err != nil || got.Subject != "alice" || got.Tenant != "acme" {
		t.Fatalf("Redeem on another node = %+v, %v", got, err)
	}
	if _, err := a.Tickets(30*time.Second, 0).Redeem(id); err == nil {
		t.Fatal("a ticket was redeemed twice")
	}
	if _, err := a.Tickets(30*time.Second, 0).Redeem("tk_short"); err == nil {
		t.Fatal("a malformed ticket was accepted")
	}
}

func TestFollowReplaysAndFollows(t *testing.T) {
	c := newCluster(t, randomName("n-"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id := randomName("task-")
	key := streamKey(id)
	add := func(seq int64, frame string) {
		t.Helper()
		if err := c.rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: streamID(seq), Values: []any{"f", frame}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { c.rdb.Del(context.Background(), key) })
	for i := int64(1); i <= 3; i++ {
		add(i, fmt.Sprintf(`{"type":"tick","seq":%d}`, i))
	}
	var mu sync.Mutex
	var got []int64
	done := make(chan error, 1)
	go func() {
		done <- c.Follow(ctx, id, 1, func(seq int64, frame []byte) {
			mu.Lock()
			got = append(got, seq)
			mu.Unlock()
		})
	}()
	time.Sleep(200 * time.Millisecond) // let it reach the blocking read
	add(4, `{"type":"tick","seq":4}`)
	add(5, `{"type":"task_complete","taskId":"x","seq":5,"status":"success"}`)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[2 3 4 5]" {
		t.Fatalf("followed %v; want [2 3 4 5] (after seq 1, through the final event)", got)
	}
	if last, err := c.LastSeq(ctx, id); err != nil || last != 5 {
		t.Fatalf("LastSeq = %d, %v", last, err)
	}
}

func TestBusDeliversChanges(t *testing.T) {
	a := newCluster(t, randomName("a-"), nil)
	b := newCluster(t, randomName("b-"), nil)
	revoked := make(chan string, 1)
	b.Attach(nil, Handlers{Revoked: func(_ context.Context, tenant, jti string, _ time.Time, _ bool) { revoked <- tenant + "/" + jti }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.listen(ctx)
	}()
	jti := randomName("jti-")
	deadline := time.After(10 * time.Second)
	for {
		if err := a.Revoked(ctx, "acme", jti, time.Now().Add(time.Hour), false); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-revoked:
			if got != "acme/"+jti {
				t.Fatalf("got %q", got)
			}
			cancel()
			wg.Wait()
			return
		case <-time.After(200 * time.Millisecond): // the subscription may not be up yet
		case <-deadline:
			t.Fatal("the revocation never arrived")
		}
	}
}

// The per-principal ticket bound holds across replicas.
func TestTicketsPerPrincipalAcrossNodes(t *testing.T) {
	a := newCluster(t, randomName("a-"), nil)
	b := newCluster(t, randomName("b-"), nil)
	hog := &auth.Principal{Tenant: randomName("t"), Subject: "hog", ExpiresAt: time.Now().Add(time.Hour)}
	ta, tb := a.Tickets(30*time.Second, 4), b.Tickets(30*time.Second, 4)
	var ids []string
	for i := range 4 {
		tk := ta
		if i%2 == 1 {
			tk = tb
		}
		id, _, err := tk.Issue(hog)
		if err != nil {
			t.Fatalf("ticket %d: %v", i, err)
		}
		ids = append(ids, id)
	}
	for _, tk := range []*Tickets{ta, tb} {
		if _, _, err := tk.Issue(hog); !errors.Is(err, auth.ErrTooManyTickets) {
			t.Fatalf("5th ticket across replicas: %v", err)
		}
	}
	other := &auth.Principal{Tenant: randomName("t"), Subject: "bea", ExpiresAt: time.Now().Add(time.Hour)}
	if _, _, err := tb.Issue(other); err != nil {
		t.Fatalf("another principal was refused: %v", err)
	}
	if _, err := tb.Redeem(ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ta.Issue(hog); err != nil {
		t.Fatalf("a redeemed ticket did not free its place on the other replica: %v", err)
	}
}

// A tenant's day total starts from the store's figure (once: a later base is ignored), every
// replica's additions land exactly, even at once, and each day has its own total.
func TestAddSpendIsSharedAndExact(t *testing.T) {
	a := newCluster(t, randomName("a-"), nil)
	b := newCluster(t, randomName("b-"), nil)
	ctx := context.Background()
	tenant := randomName("t-")
	day := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	got, err := a.AddSpend(ctx, tenant, day, task.DaySpend{NanoUSD: 5, Tokens: 1}, task.DaySpend{NanoUSD: 1000, Tokens: 100})
	if err != nil || got != (task.DaySpend{NanoUSD: 1005, Tokens: 101}) {
		t.Fatalf("first addition = %+v, %v; want the base plus it", got, err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		c := a
		if i%2 == 1 {
			c = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.AddSpend(ctx, tenant, day, task.DaySpend{NanoUSD: 10, Tokens: 2}, task.DaySpend{NanoUSD: 1 << 40}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err = b.AddSpend(ctx, tenant, day, task.DaySpend{}, task.DaySpend{})
	if err != nil || got != (task.DaySpend{NanoUSD: 2005, Tokens: 301}) {
		t.Fatalf("after 100 additions from two replicas = %+v, %v; want {2005 301}", got, err)
	}
	next, err := a.AddSpend(ctx, tenant, day.Add(24*time.Hour), task.DaySpend{Tokens: 7}, task.DaySpend{})
	if err != nil || next != (task.DaySpend{Tokens: 7}) {
		t.Fatalf("the next day's total = %+v, %v; want its own", next, err)
	}
	// Negative additions (a final cost below the live estimate) are exact too.
	got, err = a.AddSpend(ctx, tenant, day, task.DaySpend{NanoUSD: -5, Tokens: -1}, task.DaySpend{})
	if err != nil || got != (task.DaySpend{NanoUSD: 2000, Tokens: 300}) {
		t.Fatalf("a negative addition = %+v, %v", got, err)
	}
}

// TestNewRefusesZeroBounds: the cluster.* values come from the configuration, never from here.
func TestNewRefusesZeroBounds(t *testing.T) {
	ok := Options{RedisURL: "redis://127.0.0.1:6379", Node: "n", Store: storetest.Open(t, store.DriverSQLite),
		HeartbeatInterval: time.Second, HeartbeatTTL: 5 * time.Second, StreamMaxLen: 10, EventTTL: time.Hour}
	for _, tt := range []struct {
		key   string
		spoil func(*Options)
	}{
		{"cluster.heartbeat_interval", func(o *Options) { o.HeartbeatInterval = 0 }},
		{"cluster.heartbeat_ttl", func(o *Options) { o.HeartbeatTTL = o.HeartbeatInterval }},
		{"cluster.stream_max_len", func(o *Options) { o.StreamMaxLen = 0 }},
		{"cluster.event_ttl", func(o *Options) { o.EventTTL = -time.Second }},
	} {
		o := ok
		tt.spoil(&o)
		if c, err := New(o); err == nil || !strings.Contains(err.Error(), tt.key) {
			if c != nil {
				c.Close()
			}
			t.Errorf("%s: err = %v; want it named", tt.key, err)
		}
	}
	c, err := New(ok)
	if err != nil {
		t.Fatalf("complete options refused: %v", err)
	}
	c.Close()
}
