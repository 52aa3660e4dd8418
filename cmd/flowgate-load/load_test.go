package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The smoke test of the load tool (CI, no timing assertions): every mode with tiny sizes
// against a real `flowgate serve --dev`, checking the JSON and its counts.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flowgate-load-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "flowgate")
	build := exec.Command("go", "build", "-race", "-o", binary, "github.com/flowgate/flowgate/cmd/flowgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build flowgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	// The shared gateway lives as long as the package's tests (all of -count's rounds).
	if shared != nil {
		shared.stop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// gateway is a running `flowgate serve --dev`.
type gateway struct {
	url, dataDir string
	pid          int
	cmd          *exec.Cmd
	exited       chan struct{}

	mu   sync.Mutex
	logs bytes.Buffer
}

var (
	sharedOnce sync.Once
	shared     *gateway
	sharedErr  error
)

// sharedGateway is one gateway for the package: limits raised for the load, except a small
// per-user concurrency and swarm rate that the refusal test runs into on purpose (every
// other test mints one user per connection and stays below them).
func sharedGateway(t *testing.T) *gateway {
	t.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = startGateway(map[string]string{
			"FLOWGATE_LIMITS_SWARMS_PER_MINUTE":        "6",
			"FLOWGATE_LIMITS_SWARM_BURST":              "30",
			"FLOWGATE_LIMITS_USER_CONCURRENT_TASKS":    "4",
			"FLOWGATE_LIMITS_TENANT_CONCURRENT_TASKS":  "1000",
			"FLOWGATE_LIMITS_IP_CONNECTIONS":           "10000",
			"FLOWGATE_LIMITS_IP_HANDSHAKES_PER_SECOND": "100000",
			"FLOWGATE_LIMITS_IP_HANDSHAKE_BURST":       "100000",
			"FLOWGATE_LIMITS_EXECUTOR_POOL":            "256",
			"FLOWGATE_LIMITS_MESSAGES_PER_SECOND":      "10000",
			"FLOWGATE_LIMITS_MESSAGE_BURST":            "10000",
		})
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func startGateway(env map[string]string) (*gateway, error) {
	dir, err := os.MkdirTemp("", "flowgate-load-gw-")
	if err != nil {
		return nil, err
	}
	g := &gateway{dataDir: dir, exited: make(chan struct{})}
	g.cmd = exec.Command(binary, "serve", "--dev", "--data-dir", dir)
	// The engine is this race-built binary too: without atexit_sleep_ms=0 every engine (and
	// sandbox init) would sleep a second on exit, and each swarm would take two.
	g.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "GORACE=halt_on_error=1 atexit_sleep_ms=0",
		"FLOWGATE_ENGINE_ENV=GORACE",
		"FLOWGATE_SERVER_ADDR=127.0.0.1:0", "FLOWGATE_OPS_ADDR=127.0.0.1:0", "FLOWGATE_LOG_FORMAT=json"}
	for k, v := range env {
		g.cmd.Env = append(g.cmd.Env, k+"="+v)
	}
	stdout, err := g.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	g.cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.logs.Len() < 16<<20 {
			g.logs.Write(p)
		}
		return len(p), nil
	})
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	g.pid = g.cmd.Process.Pid
	urls := make(chan string, 1)
	// Both goroutines end with the process (stop waits for it).
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "url: "); ok {
				urls <- u
			}
		}
	}()
	go func() { _ = g.cmd.Wait(); close(g.exited) }()
	select {
	case g.url = <-urls:
		return g, nil
	case <-g.exited:
		return nil, fmt.Errorf("gateway exited before it was ready:\n%s", g.Logs())
	case <-time.After(60 * time.Second):
		g.stop()
		return nil, fmt.Errorf("gateway not ready after 60s:\n%s", g.Logs())
	}
}

// Logs is the tail of what the gateway wrote to stderr.
func (g *gateway) Logs() string {
	if g == nil {
		return ""
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.logs.String()
	if len(s) > 8000 {
		s = s[len(s)-8000:]
	}
	return s
}

func (g *gateway) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(40 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
	os.RemoveAll(g.dataDir)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// load runs the tool in-process and decodes its report. want is the error run must return
// (nil or errNotOK).
func load(t *testing.T, want error, args ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, func(string) string { return "" }, &stdout, &stderr)
	if !errors.Is(err, want) {
		t.Fatalf("run %v: err = %v, want %v\nstdout: %s\nstderr: %s\ngateway:\n%s", args, err, want, stdout.String(), stderr.String(), shared.Logs())
	}
	if strings.Count(stdout.String(), "\n") != 1 {
		t.Fatalf("want one JSON line, got %q", stdout.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v: %s", err, stdout.String())
	}
	if rep["tool"] != "flowgate-load" || rep["mode"] != args[0] {
		t.Fatalf("bad report header: %s", stdout.String())
	}
	t.Logf("%s", stdout.String())
	return rep
}

func field(t *testing.T, rep map[string]any, keys ...string) float64 {
	t.Helper()
	f, ok := path(keys...)(rep)
	if !ok {
		t.Fatalf("no number at %v in %v", keys, rep)
	}
	return f
}

func gwArgs(g *gateway, mode, users string) []string {
	return []string{mode, "--url", g.url, "--signing-key", filepath.Join(g.dataDir, "signing.key"), "--sub-prefix", users,
		"--server-pid", strconv.Itoa(g.pid), "--timeout", "90s"}
}

func TestModes(t *testing.T) {
	g := sharedGateway(t)

	t.Run("idle", func(t *testing.T) {
		rep := load(t, nil, append(gwArgs(g, "idle", "idle-"), "--conns", "25", "--settle", "200ms", "--hold", "300ms")...)
		if field(t, rep, "result", "connected") != 25 || field(t, rep, "result", "connectMs", "count") != 25 ||
			field(t, rep, "result", "droppedDuringHold") != 0 || rep["ok"] != true {
			t.Fatal("idle counts are wrong")
		}
		if field(t, rep, "result", "rss", "loadedKiB") <= 0 || field(t, rep, "result", "rss", "pid") != float64(g.pid) {
			t.Fatal("no RSS sample of the server")
		}
	})

	t.Run("handshake", func(t *testing.T) {
		rep := load(t, nil, append(gwArgs(g, "handshake", "hs-"), "--conns", "40")...)
		if rep["mode"] != "handshake" || field(t, rep, "result", "connected") != 40 || rep["ok"] != true ||
			field(t, rep, "config", "dialConcurrency") != 256 || field(t, rep, "result", "connectRatePerSec") <= 0 {
			t.Fatalf("handshake report is wrong: %v", rep["result"])
		}
	})

	t.Run("stream", func(t *testing.T) {
		rep := load(t, nil, append(gwArgs(g, "stream", "stream-"), "--clients", "3", "--events", "300", "--agents", "2")...)
		per := rep["result"].(map[string]any)["perClientEvents"].([]any)
		if len(per) != 3 {
			t.Fatalf("perClientEvents = %v", per)
		}
		for _, n := range per {
			if n.(float64) != 300+2+2 { // body + agent_spawn per agent + system/init + result
				t.Fatalf("a client received %v events, want 304", n)
			}
		}
		if rep["result"].(map[string]any)["seqChecked"] != true || field(t, rep, "result", "seqGaps") != 0 ||
			field(t, rep, "result", "succeeded") != 3 || field(t, rep, "result", "eventsPerSec") <= 0 {
			t.Fatal("stream counts are wrong")
		}
	})

	t.Run("paced", func(t *testing.T) {
		rep := load(t, nil, append(gwArgs(g, "paced", "paced-"), "--clients", "3", "--rate", "100", "--duration", "1s", "--warmup", "200ms")...)
		if field(t, rep, "result", "events") != 3*(100+3+2) || field(t, rep, "result", "seqGaps") != 0 {
			t.Fatal("paced counts are wrong")
		}
		all := field(t, rep, "result", "latencyMs", "count") + field(t, rep, "result", "latencyWarmupMs", "count")
		if all != 3*(100+3+2) {
			t.Fatalf("latency samples = %v, want one per event", all)
		}
	})

	// burst: paced, all started together, every event's latency counted (no warm-up).
	t.Run("burst", func(t *testing.T) {
		rep := load(t, nil, append(gwArgs(g, "burst", "burst-"), "--clients", "4", "--rate", "50", "--duration", "1s")...)
		if rep["mode"] != "burst" || field(t, rep, "result", "events") != 4*(50+3+2) {
			t.Fatalf("burst report: mode %v, events %v", rep["mode"], field(t, rep, "result", "events"))
		}
		if n := field(t, rep, "result", "latencyMs", "count"); n != 4*(50+3+2) {
			t.Fatalf("burst latency samples = %v, want every event's", n)
		}
	})

	t.Run("spawn", func(t *testing.T) {
		rep := load(t, nil, append(gwArgs(g, "spawn", "spawn-"), "--swarms", "8", "--clients", "2", "--inflight", "2", "--events", "20")...)
		if field(t, rep, "result", "completed") != 8 || field(t, rep, "result", "createdMs", "count") != 8 ||
			field(t, rep, "result", "completeMs", "count") != 8 || field(t, rep, "result", "events") != 8*(20+3+2) ||
			field(t, rep, "result", "swarmsPerSec") <= 0 {
			t.Fatal("spawn counts are wrong")
		}
	})

	// Refusals are counted and reported, never retried: one user over its concurrency
	// (4) and its swarm burst (30).
	t.Run("refusals counted", func(t *testing.T) {
		rep := load(t, errNotOK, append(gwArgs(g, "spawn", "refused-"), "--users", "1", "--swarms", "10", "--clients", "1",
			"--inflight", "10", "--events", "5000")...)
		byStatus := rep["result"].(map[string]any)["byStatus"].(map[string]any)
		quota, _ := byStatus["error:quota_exceeded"].(float64)
		if quota == 0 || field(t, rep, "result", "succeeded")+quota != 10 || field(t, rep, "errors", "byKind", "quota_exceeded") != quota {
			t.Fatalf("quota refusals not counted: %v", byStatus)
		}
		rep = load(t, errNotOK, append(gwArgs(g, "spawn", "limited-"), "--users", "1", "--swarms", "45", "--clients", "1",
			"--events", "0")...)
		byStatus = rep["result"].(map[string]any)["byStatus"].(map[string]any)
		limited, _ := byStatus["error:rate_limited"].(float64)
		if limited == 0 || field(t, rep, "result", "succeeded")+limited != 45 {
			t.Fatalf("rate limiting not counted: %v", byStatus)
		}
	})
}

// TestSeedShape drives a stand-in for the seed server: no authentication, served on "/",
// no requestId echo, no seq. The tool must match replies in order and skip seq checks.
func TestSeedShape(t *testing.T) {
	const events = 50
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" || r.Header.Get("Authorization") != "" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteJSON(map[string]any{"type": "connection", "sessionId": "s", "status": "connected", "version": "2.0.0-alpha"})
		for n := 0; ; n++ {
			var m map[string]any
			if err := c.ReadJSON(&m); err != nil {
				return
			}
			id := fmt.Sprintf("task-%d", n)
			_ = c.WriteJSON(map[string]any{"type": "task_created", "taskId": id, "status": "pending"})
			for i := range events + 3 + 2 {
				_ = c.WriteJSON(map[string]any{"type": "assistant", "i": i, "taskId": id, "serverTime": "x", "emittedAtNs": time.Now().UnixNano()})
			}
			_ = c.WriteJSON(map[string]any{"type": "task_complete", "taskId": id, "exitCode": 0, "status": "success"})
		}
	}))
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
	for _, mode := range [][]string{
		{"stream", "--clients", "2", "--events", strconv.Itoa(events)},
		{"spawn", "--swarms", "6", "--clients", "2", "--inflight", "3", "--events", strconv.Itoa(events)},
		{"paced", "--clients", "2", "--rate", strconv.Itoa(events), "--duration", "1s", "--warmup", "0s"},
	} {
		rep := load(t, nil, append(mode, "--url", url, "--no-auth", "--label", "seed")...)
		if rep["result"].(map[string]any)["seqChecked"] != false || field(t, rep, "result", "missingEvents") != 0 || rep["ok"] != true {
			t.Fatalf("%s: wrong counts", mode[0])
		}
	}
	rep := load(t, nil, "idle", "--url", url, "--no-auth", "--conns", "5", "--settle", "0s")
	if field(t, rep, "result", "connected") != 5 {
		t.Fatal("idle against the seed shape")
	}
}

func TestTable(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for _, r := range []struct {
		label string
		rate  float64
		ok    bool
	}{{"flowgate", 300, true}, {"flowgate", 100, true}, {"flowgate", 200, true}, {"seed", 50, false}} {
		b, _ := json.Marshal(map[string]any{"tool": "flowgate-load", "mode": "spawn", "label": r.label, "ok": r.ok,
			"result": map[string]any{"swarmsPerSec": r.rate}, "errors": map[string]any{"byKind": map[string]any{"missing_events": 3}}})
		lines = append(lines, string(b))
	}
	file := filepath.Join(dir, "r.ndjson")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runTable([]string{file}, &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	if !strings.Contains(out.String(), "| 200.0 (n=3) |") || !strings.Contains(out.String(), "4.00×") ||
		!strings.Contains(out.String(), `note: seed spawn run 1 finished with errors: {"missing_events":3}`) {
		t.Fatal("table lacks the median, the ratio or the note")
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"idle"},
		{"idle", "--url", "http://x/"},
		{"idle", "--url", "ws://x/?token=abc", "--no-auth"},
		{"idle", "--url", "ws://x/", "--no-auth", "--signing-key", "k"},
		{"idle", "--url", "ws://x/", "--no-auth", "--conns", "1000000"},
		{"paced", "--url", "ws://x/", "--no-auth", "--duration", "1s", "--warmup", "2s"},
		{"spawn", "--url", "ws://x/", "--no-auth", "--swarms", "2", "--clients", "3"},
		{"stream", "--url", "ws://x/", "--no-auth", "extra"},
	} {
		err := run(context.Background(), args, func(string) string { return "" }, io.Discard, io.Discard)
		var u usageError
		if !errors.As(err, &u) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}

func TestSourceNet(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/8", "0.0.0.0/0", "127.0.0.0/7", "128.0.0.0/8", "::1/128", "::ffff:127.0.0.0/104",
		"127.0.0.1", "bogus", ""} {
		if _, err := parseSourceNet(bad); err == nil {
			t.Errorf("parseSourceNet(%q) accepted a prefix outside 127.0.0.0/8", bad)
		}
	}
	for _, c := range []struct {
		cidr, prefix string
		n            uint64
		at           map[int]string
	}{
		{"127.0.0.0/8", "127.0.0.0/8", 1<<24 - 2, map[int]string{0: "127.0.0.1", 1: "127.0.0.2", 254: "127.0.0.255",
			255: "127.0.1.0", 1<<24 - 3: "127.255.255.254", 1<<24 - 2: "127.0.0.1", 99_999: "127.1.134.160"}},
		{"127.1.2.3/30", "127.1.2.0/30", 2, map[int]string{0: "127.1.2.1", 1: "127.1.2.2", 2: "127.1.2.1"}},
		{"127.0.0.4/31", "127.0.0.4/31", 2, map[int]string{0: "127.0.0.4", 1: "127.0.0.5", 2: "127.0.0.4"}},
		{"127.0.0.5/32", "127.0.0.5/32", 1, map[int]string{0: "127.0.0.5", 7: "127.0.0.5"}},
	} {
		sn, err := parseSourceNet(c.cidr)
		if err != nil {
			t.Fatalf("parseSourceNet(%q): %v", c.cidr, err)
		}
		if sn.prefix.String() != c.prefix || sn.n != c.n {
			t.Errorf("%s: prefix %s with %d addresses, want %s with %d", c.cidr, sn.prefix, sn.n, c.prefix, c.n)
		}
		for i, want := range c.at {
			if got := sn.addr(i).String(); got != want {
				t.Errorf("%s: addr(%d) = %s, want %s", c.cidr, i, got, want)
			}
		}
	}
	for u, want := range map[string]bool{"ws://127.0.0.1:1/ws": true, "ws://127.9.9.9/": true, "ws://localhost:8080/ws": true,
		"ws://[::1]:1/": false, "ws://10.0.0.1/": false, "ws://example.com/": false, "ws://[::ffff:127.0.0.1]:1/": true} {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		if got := loopbackURL(pu); got != want {
			t.Errorf("loopbackURL(%s) = %v, want %v", u, got, want)
		}
	}
}

func TestCheckFDs(t *testing.T) {
	for _, c := range []struct {
		conns, clients int
		probe          bool
		soft           uint64
		ok             bool
	}{
		{conns: 19_936, soft: 20_000, ok: true},
		{conns: 19_936, probe: true, soft: 20_000, ok: false},
		{conns: 100_000, soft: 20_000, ok: false},
		{conns: 100_000, soft: 1 << 20, ok: true},
		{clients: 30_000, soft: 20_000, ok: false},
		{conns: 100_000, soft: 0, ok: true}, // unknown: not checked
	} {
		cfg := &config{Conns: c.conns, Clients: c.clients, Probe: c.probe}
		err := checkFDs(cfg, c.soft, c.soft)
		var u usageError
		if (err == nil) != c.ok || (err != nil && !errors.As(err, &u)) {
			t.Errorf("%+v: err = %v, want ok %v", c, err, c.ok)
		}
	}
	// The run refuses before it dials (nothing listens at port 1) when the limit is below
	// what --conns needs.
	soft, hard, err := raiseFDLimit()
	if err != nil || soft == 0 || soft > maxConns {
		t.Skipf("RLIMIT_NOFILE %d/%d (%v): cannot ask for more connections than it allows", soft, hard, err)
	}
	if soft != hard {
		t.Errorf("soft fd limit %d not raised to the hard limit %d", soft, hard)
	}
	var stderr bytes.Buffer
	err = run(context.Background(), []string{"idle", "--url", "ws://127.0.0.1:1/ws", "--no-auth", "--conns", strconv.Itoa(maxConns)},
		func(string) string { return "" }, io.Discard, &stderr)
	if u := usageError(""); !errors.As(err, &u) || !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
		t.Fatalf("--conns %d under RLIMIT_NOFILE %d: err = %v", maxConns, soft, err)
	}
}

// TestIdleSourceNetProbe: with a per-IP cap of 3, 12 connections from one address are
// mostly refused, and 12 spread over 127.0.0.0/8 are all held; the probe's swarm runs
// during the hold and reports its timings.
func TestIdleSourceNetProbe(t *testing.T) {
	g, err := startGateway(map[string]string{"FLOWGATE_LIMITS_IP_CONNECTIONS": "3"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.stop)
	args := func(prefix string, extra ...string) []string {
		return append(append(gwArgs(g, "idle", prefix), "--conns", "12", "--settle", "100ms", "--hold", "200ms"), extra...)
	}

	rep := load(t, errNotOK, args("one-ip-")...)
	if n := field(t, rep, "result", "connected"); n > 3 {
		t.Fatalf("%v connections from one address under a per-IP cap of 3", n)
	}

	rep = load(t, nil, args("spread-", "--source-net", "127.0.0.0/8", "--probe")...)
	if field(t, rep, "result", "connected") != 12 || rep["ok"] != true {
		t.Fatal("connections from 127.0.0.0/8 were refused")
	}
	if rep["config"].(map[string]any)["sourceNet"] != "127.0.0.0/8" || field(t, rep, "config", "fdLimit") <= 0 {
		t.Fatalf("config echo: %v", rep["config"])
	}
	pr := rep["result"].(map[string]any)["probe"].(map[string]any)
	created, first, complete := field(t, rep, "result", "probe", "taskCreatedMs"), field(t, rep, "result", "probe", "firstEventMs"),
		field(t, rep, "result", "probe", "taskCompleteMs")
	if pr["status"] != "success" || field(t, rep, "result", "probe", "connectMs") <= 0 || created <= 0 || first < created ||
		complete < first || field(t, rep, "result", "probe", "events") != probeEvents+probeAgents+2 {
		t.Fatalf("probe: %v", pr)
	}
}
