package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/client"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

// redisServer is a private redis-server for one test, so the test may stop and restart it.
type redisServer struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("FLOWGATE_TEST_REQUIRE_SERVICES") != "" {
			t.Fatal("redis-server not installed (FLOWGATE_TEST_REQUIRE_SERVICES is set)")
		}
		t.Skip("redis-server not installed: the cluster tests need it")
	}
	port, _ := strconv.Atoi(freePort(t))
	r := &redisServer{t: t, port: port}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", r.addr())
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *redisServer) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// startCluster runs n replicas of `serve --dev` sharing one PostgreSQL schema, one Redis and
// one data dir (the keys), each on its own ports.
func startCluster(t *testing.T, n int, extra map[string]string) ([]*gateway, *redisServer) {
	t.Helper()
	cl := newClusterSetup(t, extra)
	var gs []*gateway
	for i := 0; i < n; i++ {
		// The first replica generates the shared keys; the others start once it is up.
		gs = append(gs, cl.start(t, fmt.Sprintf("node-%c", 'a'+i)))
	}
	return gs, cl.redis
}

// clusterSetup is what the replicas of a test cluster share.
type clusterSetup struct {
	redis   *redisServer
	env     map[string]string
	dataDir string
}

func newClusterSetup(t *testing.T, extra map[string]string) *clusterSetup {
	t.Helper()
	rd := startRedis(t)
	env := map[string]string{
		"FLOWGATE_STORE_DRIVER":                 "postgres",
		"FLOWGATE_STORE_DSN":                    storetest.PostgresDSN(t),
		"FLOWGATE_CLUSTER_REDIS_URL":            "redis://" + rd.addr() + "/0",
		"FLOWGATE_CLUSTER_HEARTBEAT_INTERVAL":   "500ms",
		"FLOWGATE_CLUSTER_HEARTBEAT_TTL":        "3s",
		"FLOWGATE_LIMITS_USER_CONCURRENT_TASKS": "20",
	}
	for k, v := range extra {
		env[k] = v
	}
	return &clusterSetup{redis: rd, env: env, dataDir: t.TempDir()}
}

// start runs one replica under node id (again, after a crash: the same id is a restarted pod).
func (cl *clusterSetup) start(t *testing.T, node string) *gateway {
	t.Helper()
	e := map[string]string{"FLOWGATE_CLUSTER_NODE_ID": node}
	for k, v := range cl.env {
		e[k] = v
	}
	return startGateway(t, gwOptions{env: e, dataDir: cl.dataDir})
}

func TestClusterSubscribeAndCancelAcrossReplicas(t *testing.T) {
	gs, _ := startCluster(t, 3, nil)
	a, b, c := gs[0], gs[1], gs[2]
	ca := a.dial(t, a.UserToken)
	cb := b.dial(t, b.UserToken)
	cc := c.dial(t, c.UserToken)

	id := startSwarm(t, ca, "cross node sim:pace=50ms sim:events=400", nil)
	readUntil(t, ca, 20*time.Second, func(m client.Message) bool { return m.TaskID == id && m.Seq >= 5 })

	// Subscribe from B: every event from the first, in order, no gaps.
	if err := cb.Send(map[string]any{"type": "subscribe", "taskId": id, "afterSeq": 0}); err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	readUntil(t, cb, 20*time.Second, func(m client.Message) bool {
		if m.Type == "error" {
			t.Fatalf("subscribe on B: %s", m.Raw)
		}
		if m.TaskID == id && m.Seq > 0 {
			seqs = append(seqs, m.Seq)
		}
		return len(seqs) >= 20
	})
	// Status from C reaches the task on A.
	if err := cc.Send(map[string]any{"type": "status", "taskId": id, "requestId": "st"}); err != nil {
		t.Fatal(err)
	}
	st := readUntil(t, cc, 10*time.Second, func(m client.Message) bool { return m.RequestID == "st" })
	if st.Status != "running" || !strings.Contains(string(st.Raw), `"lastSeq"`) {
		t.Fatalf("status from C = %s", st.Raw)
	}
	// Cancel from C reaches A; B's subscription ends with task_complete{cancelled}.
	if err := cc.Send(map[string]any{"type": "cancel", "taskId": id, "requestId": "cx"}); err != nil {
		t.Fatal(err)
	}
	if m := readUntil(t, cc, 10*time.Second, func(m client.Message) bool { return m.RequestID == "cx" }); m.Type != "task_cancelled" {
		t.Fatalf("cancel from C = %s", m.Raw)
	}
	final := readUntil(t, cb, 30*time.Second, func(m client.Message) bool {
		if m.TaskID == id && m.Seq > 0 {
			seqs = append(seqs, m.Seq)
		}
		return m.TaskID == id && m.Type == "task_complete"
	})
	if final.Status != "cancelled" {
		t.Fatalf("B saw %s", final.Raw)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("B's seq %d at %d: gap or duplicate", s, i)
		}
	}
	// Another user on C cannot see it.
	bob := c.dial(t, c.token(t, "demo", "bob", "1h", "swarm:execute"))
	if err := bob.Send(map[string]any{"type": "subscribe", "taskId": id, "afterSeq": 0, "requestId": "bs"}); err != nil {
		t.Fatal(err)
	}
	if m := readUntil(t, bob, 10*time.Second, func(m client.Message) bool { return m.RequestID == "bs" || m.TaskID == id }); m.Code != "not_found" {
		t.Fatalf("bob's subscribe on C = %s", m.Raw)
	}
}

func TestClusterRateLimitAcrossReplicas(t *testing.T) {
	gs, _ := startCluster(t, 3, map[string]string{"FLOWGATE_LIMITS_SWARMS_PER_MINUTE": "2"})
	conns := []*client.Conn{gs[0].dial(t, gs[0].UserToken), gs[1].dial(t, gs[1].UserToken), gs[2].dial(t, gs[2].UserToken)}
	create := func(c *client.Conn, id string) client.Message {
		t.Helper()
		if err := c.Send(map[string]any{"type": "swarm", "objective": "q sim:pace=0 sim:events=1", "requestId": id}); err != nil {
			t.Fatal(err)
		}
		return readUntil(t, c, 20*time.Second, func(m client.Message) bool { return m.RequestID == id })
	}
	for i := 0; i < 10; i++ {
		if m := create(conns[i%3], fmt.Sprintf("r%d", i)); m.Type != "task_created" {
			t.Fatalf("swarm %d refused: %s", i+1, m.Raw)
		}
	}
	for i, c := range conns {
		if m := create(c, fmt.Sprintf("x%d", i)); m.Code != "rate_limited" || m.RetryAfterMs <= 0 {
			t.Fatalf("11th swarm on replica %d: %s", i, m.Raw)
		}
	}
}

// A user's connection cap counts connections on every replica; a closed connection gives its
// slot back cluster-wide.
func TestClusterConnectionCapAcrossReplicas(t *testing.T) {
	gs, _ := startCluster(t, 2, map[string]string{"FLOWGATE_LIMITS_USER_CONNECTIONS": "2"})
	a, b := gs[0], gs[1]
	first := a.dial(t, a.UserToken)
	b.dial(t, b.UserToken)
	for _, g := range gs {
		if he := g.dialErr(t, g.UserToken); he == nil || he.Status != http.StatusTooManyRequests || he.Code != "rate_limited" {
			t.Fatalf("3rd connection of the user (cap 2, one on each replica) = %+v; want 429 rate_limited", he)
		}
	}
	// Another user is not affected.
	b.dial(t, b.AdminToken)
	// Closing the connection on A frees its slot for a connection on B.
	first.Close()
	deadline := time.Now().Add(10 * time.Second)
	for b.dialErr(t, b.UserToken) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed connection on A never became free on B")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestClusterNodeDeathInterruptsItsTasks(t *testing.T) {
	gs, _ := startCluster(t, 2, nil)
	a, b := gs[0], gs[1]
	ca := a.dial(t, a.UserToken)
	id := startSwarm(t, ca, "doomed sim:hang", nil)
	cb := b.dial(t, b.UserToken)
	if err := cb.Send(map[string]any{"type": "subscribe", "taskId": id, "afterSeq": 0}); err != nil {
		t.Fatal(err)
	}
	readUntil(t, cb, 20*time.Second, func(m client.Message) bool { return m.TaskID == id && m.Seq >= 1 })
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	final := readUntil(t, cb, 30*time.Second, func(m client.Message) bool { return m.TaskID == id && m.Type == "task_complete" })
	if final.Status != "interrupted" {
		t.Fatalf("after kill -9: %s", final.Raw)
	}
	if err := cb.Send(map[string]any{"type": "status", "taskId": id, "requestId": "s"}); err != nil {
		t.Fatal(err)
	}
	if st := readUntil(t, cb, 10*time.Second, func(m client.Message) bool { return m.RequestID == "s" }); st.Status != "interrupted" {
		t.Fatalf("status after kill -9: %s", st.Raw)
	}
}

func TestClusterRedisRestart(t *testing.T) {
	gs, rd := startCluster(t, 2, nil)
	a, b := gs[0], gs[1]
	owner := a.dial(t, a.UserToken)
	id := startSwarm(t, owner, "through the outage sim:pace=50ms sim:events=300", nil)
	remote := b.dial(t, b.UserToken)
	if err := remote.Send(map[string]any{"type": "subscribe", "taskId": id, "afterSeq": 0}); err != nil {
		t.Fatal(err)
	}
	// Every seq the remote subscriber sees, from the first: the outage must leave no gap.
	var seqs []int64
	collect := func(m client.Message) {
		if m.TaskID == id && m.Seq > 0 {
			seqs = append(seqs, m.Seq)
		}
	}
	readUntil(t, remote, 20*time.Second, func(m client.Message) bool { collect(m); return m.TaskID == id && m.Seq >= 5 })

	rd.stop()
	// New swarms are refused with a clear error; readiness reports it.
	if err := owner.Send(map[string]any{"type": "swarm", "objective": "refused", "requestId": "down"}); err != nil {
		t.Fatal(err)
	}
	m := readUntil(t, owner, 20*time.Second, func(m client.Message) bool { return m.RequestID == "down" })
	if m.Type != "error" || !strings.Contains(m.Error, "cluster") {
		t.Fatalf("swarm while redis is down: %s", m.Raw)
	}
	waitReady(t, a, http.StatusServiceUnavailable)
	// The owner's local stream keeps flowing.
	var last int64
	readUntil(t, owner, 20*time.Second, func(m client.Message) bool {
		if m.TaskID == id && m.Seq > 0 {
			last = m.Seq
		}
		return last >= 40
	})

	rd.start()
	waitReady(t, a, http.StatusOK)
	// Recovery without restart: swarms work again and the remote subscriber gets every event
	// exactly once, although Redis came back empty.
	done := readUntil(t, remote, 90*time.Second, func(m client.Message) bool {
		collect(m)
		return m.TaskID == id && m.Type == "task_complete"
	})
	if done.Status != "success" {
		t.Fatalf("remote final = %s", done.Raw)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("remote subscriber's seq #%d is %d; want 1..%d without a gap or a repeat (around: %v)",
				i+1, s, done.Seq, seqs[max(0, i-3):min(len(seqs), i+4)])
		}
	}
	if len(seqs) == 0 || seqs[len(seqs)-1] != done.Seq {
		t.Fatalf("remote subscriber saw %d events; task_complete has seq %d", len(seqs), done.Seq)
	}
	if m := quickSwarm(t, owner, "after"); m.Type != "task_complete" {
		t.Fatalf("swarm after recovery: %s", m.Raw)
	}
}

func waitReady(t *testing.T, g *gateway, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(g.Ops + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never became %d", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestClusterPropagation(t *testing.T) {
	gs, _ := startCluster(t, 2, nil)
	a, b := gs[0], gs[1]

	// A revocation made on A closes a session on B within a second.
	bobTok := a.token(t, "demo", "bob", "1h", "swarm:execute")
	onB := b.dial(t, bobTok)
	jti, exp := idJTI(t, bobTok)
	start := time.Now()
	if st, body := idRevoke(t, a, a.AdminToken, jti, exp); st != 200 {
		t.Fatalf("revoke on A: %d %s", st, body)
	}
	if ce := waitClosed(t, nil, onB, 5*time.Second); ce.Code != 1008 || ce.Text != "token_revoked" {
		t.Fatalf("session on B closed with %d %q", ce.Code, ce.Text)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("revocation reached B after %v; want within 1s", d)
	}

	// A suspension made on A closes the tenant's sessions on B within a second.
	other := b.dial(t, b.UserToken)
	start = time.Now()
	if st, body := a.api(t, nil, "PATCH", "/v1/admin/tenants/demo", a.AdminToken, `{"status":"suspended"}`); st != 200 {
		t.Fatalf("suspend on A: %d %s", st, body)
	}
	if ce := waitClosed(t, nil, other, 5*time.Second); ce.Code != 1008 || ce.Text != "tenant_suspended" {
		t.Fatalf("session on B closed with %d %q", ce.Code, ce.Text)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("suspension reached B after %v; want within 1s", d)
	}
	if st, body := a.api(t, nil, "PATCH", "/v1/admin/tenants/demo", a.AdminToken, `{"status":"active"}`); st != 200 {
		t.Fatalf("resume: %d %s", st, body)
	}

	// A key set on A is the key of the next swarm on B: B's cached key is dropped through the
	// bus, not at the cache's TTL or the tenant poll.
	tr := &transcript{}
	k1, k2 := canary(t, "cluster1"), canary(t, "cluster2")
	if st, body := a.api(t, tr, "PUT", "/v1/admin/tenants/demo/key", a.AdminToken, `{"apiKey":"`+k1+`"}`); st != 200 && st != 201 {
		t.Fatalf("key set on A: %d %s", st, body)
	}
	keysOnB := b.dial(t, b.UserToken)
	if out := keySwarm(t, tr, keysOnB, ""); out.keyHash != sha(k1) {
		t.Fatalf("swarm on B before the rotation: %+v", out)
	}
	a.mustAPI(t, tr, 200, "PUT", "/v1/admin/tenants/demo/key", a.AdminToken, `{"apiKey":"`+k2+`"}`)
	start = time.Now()
	for {
		sent := time.Now()
		out := keySwarm(t, tr, keysOnB, "")
		if out.keyHash == sha(k2) {
			if d := sent.Sub(start); d > time.Second {
				t.Errorf("the new key reached B after %v; want within 1s", d)
			}
			break
		}
		if out.keyHash != sha(k1) || time.Since(start) > 10*time.Second {
			t.Fatalf("swarm on B after the rotation on A: %+v", out)
		}
	}

	// A ticket from A is redeemable on B, once.
	_, tbody, _ := idPost(t, a, "/v1/ws-ticket", a.UserToken, "")
	var tk struct{ Ticket string }
	if err := jsonUnmarshal([]byte(tbody), &tk); err != nil || tk.Ticket == "" {
		t.Fatalf("ticket: %s", tbody)
	}
	if _, he := b.tryDial(t, client.Options{Token: tk.Ticket, TokenSource: client.TokenTicket}); he != nil {
		t.Fatalf("ticket from A refused on B: %+v", he)
	}
	if _, he := a.tryDial(t, client.Options{Token: tk.Ticket, TokenSource: client.TokenTicket}); he == nil || he.Status != 401 {
		t.Fatalf("ticket replay on A: %+v", he)
	}
}

func TestClusterOwnerMovesReplicaWithinGrace(t *testing.T) {
	gs, _ := startCluster(t, 2, map[string]string{"FLOWGATE_TASKS_DETACH_GRACE": "3s"})
	a, b := gs[0], gs[1]
	onA := a.dial(t, a.UserToken)
	id := startSwarm(t, onA, "roaming owner sim:pace=100ms sim:events=100", nil)
	readUntil(t, onA, 20*time.Second, func(m client.Message) bool { return m.TaskID == id && m.Seq >= 3 })
	onA.Abort() // the owner's connection to A drops; the task is detached on A

	onB := b.dial(t, b.UserToken)
	if err := onB.Send(map[string]any{"type": "subscribe", "taskId": id, "afterSeq": 0}); err != nil {
		t.Fatal(err)
	}
	// Watching from B keeps it alive well past A's 3 s grace, to its natural end.
	final := readUntil(t, onB, 60*time.Second, func(m client.Message) bool { return m.TaskID == id && m.Type == "task_complete" })
	if final.Status != "success" {
		t.Fatalf("task ended %s; the owner watching from B must keep it attached", final.Raw)
	}
}
