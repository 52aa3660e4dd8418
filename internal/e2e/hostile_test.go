package e2e

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/executor/sandbox"
	"github.com/flowgate/flowgate/internal/listentest"
)

// TestHostileEngineIsConfined runs the hostile engine (./hostile) through the real gateway:
// everything a prompt-injected agent tries first against the network, the gateway's own
// services and its files. Every target is on loopback or in this test's directories.
func TestHostileEngineIsConfined(t *testing.T) {
	if abi := sandbox.LandlockABI(); abi < 4 {
		t.Skipf("kernel Landlock ABI %d; the engine confinement needs 4", abi)
	}
	// An allowed destination (listed in engine.egress.allow) that echoes a line, and one
	// nobody listed.
	allowed := listentest.Loopback(t, listentest.Echo)
	forbidden := listentest.Loopback(t, listentest.Echo)
	// A UDP listener that records whatever arrives.
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	var udpMu sync.Mutex
	var udpGot []string
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			udpMu.Lock()
			udpGot = append(udpGot, string(buf[:n]))
			udpMu.Unlock()
		}
	}()
	// A UNIX socket where the host's services keep theirs.
	sockDir, err := os.MkdirTemp("/run", "flowgate-e2e-")
	if err != nil {
		t.Skipf("cannot create a directory under /run: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	listentest.Serve(t, "unix", filepath.Join(sockDir, "service.sock"), listentest.Drop)
	// And one in /var/tmp, where sockets also live and nothing is granted to engines.
	varDir, err := os.MkdirTemp("/var/tmp", "flowgate-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(varDir) })
	listentest.Serve(t, "unix", filepath.Join(varDir, "service.sock"), listentest.Drop)
	// A port that is free on the host: the engine listens on it, the test tries to reach it.
	free := freePort(t)

	g := startGateway(t, gwOptions{env: map[string]string{
		"FLOWGATE_ENGINE_PROFILE":      "custom",
		"FLOWGATE_ENGINE_COMMAND":      hostileBinary,
		"FLOWGATE_ENGINE_ARGS":         "{objective}",
		"FLOWGATE_ENGINE_ENV":          "",
		"FLOWGATE_ENGINE_EGRESS_ALLOW": allowed,
	}})
	public, ops := strings.TrimPrefix(g.HTTP, "http://"), strings.TrimPrefix(g.Ops, "http://")
	targets := map[string]string{"public": public, "ops": ops, "redis": "127.0.0.1:6379", "postgres": "127.0.0.1:5432", "listener": forbidden}
	var words []string
	for _, k := range []string{"public", "ops", "redis", "postgres", "listener"} {
		words = append(words, "tcp="+targets[k], "mptcp="+targets[k])
	}
	words = append(words, "udp="+udp.LocalAddr().String(), "unix="+filepath.Join(sockDir, "service.sock"), "unix="+filepath.Join(varDir, "service.sock"),
		"read="+g.dataDir, "read="+filepath.Join(g.dataDir, "signing.key"), "listen="+free, "ptrace=1",
		"proxy="+allowed, "proxy="+forbidden, "proxy="+ops)
	if _, err := os.Stat("/var/run/postgresql/.s.PGSQL.5432"); err == nil {
		words = append(words, "unix=/var/run/postgresql/.s.PGSQL.5432")
	}

	c := g.dial(t, g.UserToken)
	r := runSwarm(t, c, "probe "+strings.Join(words, " "), nil)
	if r.complete.Status != "success" {
		t.Fatalf("task_complete = %s", r.complete.Raw)
	}
	got := map[string]hostileProbe{}
	for _, ev := range r.events {
		if ev.Type != "hostile_probe" {
			continue
		}
		var p hostileProbe
		if err := json.Unmarshal(ev.Raw, &p); err != nil {
			t.Fatal(err)
		}
		got[p.Probe+"="+p.Target] = p
	}
	for _, w := range words {
		p, ok := got[w]
		if !ok {
			t.Errorf("%s: no report", w)
			continue
		}
		switch {
		case w == "proxy="+allowed:
			if !p.OK || !strings.Contains(p.Detail, "hello through the proxy") {
				t.Errorf("%s: the allowed destination was not reached through the proxy: %+v", w, p)
			}
		case strings.HasPrefix(w, "proxy="):
			if p.OK || p.Detail != "403" {
				t.Errorf("%s: want a 403 from the proxy: %+v", w, p)
			}
		case strings.HasPrefix(w, "udp="), strings.HasPrefix(w, "listen="):
			// Judged from the outside below.
		default:
			if p.OK {
				t.Errorf("%s: the engine got through: %+v", w, p)
			}
		}
		t.Logf("%s: ok=%v %s %s", w, p.OK, p.Error, p.Detail)
	}
	// Nothing the engine sent over UDP arrived; nothing it listens on is reachable. The engine
	// has exited (task_complete): a datagram it sent is queued at the listener already, ahead
	// of one the test sends now, so once the test's own is read every earlier one has been.
	const flush = "flush from the test"
	fc, err := net.Dial("udp4", udp.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fc.Write([]byte(flush)); err != nil {
		t.Fatal(err)
	}
	fc.Close()
	waitFor(t, 10*time.Second, func() bool {
		udpMu.Lock()
		defer udpMu.Unlock()
		return slices.Contains(udpGot, flush)
	})
	udpMu.Lock()
	if len(udpGot) > 1 || udpGot[0] != flush {
		t.Errorf("UDP datagrams arrived from the engine: %q", udpGot)
	}
	udpMu.Unlock()
	if conn, err := net.DialTimeout("tcp4", "127.0.0.1:"+free, time.Second); err == nil {
		conn.Close()
		t.Errorf("the engine's listener on port %s is reachable from the host", free)
	}

	// The refusals are counted in task_complete and audited.
	var done struct {
		Egress *struct{ BytesOut, BytesIn, Denied int64 } `json:"egress"`
	}
	if err := json.Unmarshal(r.complete.Raw, &done); err != nil || done.Egress == nil || done.Egress.Denied < 2 || done.Egress.BytesOut == 0 || done.Egress.BytesIn == 0 {
		t.Errorf("task_complete.egress: %s", r.complete.Raw)
	}
	out, err := g.cli(t, "", "audit", "export", "--dev", "--data-dir", g.dataDir, "--tenant", "demo")
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, out)
	}
	var denied int
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"action":"egress.denied"`) && strings.Contains(sc.Text(), r.created.TaskID) {
			denied++
		}
	}
	if denied < 2 {
		t.Errorf("%d egress.denied records for the task", denied)
	}
}

type hostileProbe struct {
	Probe, Target, Error, Detail string
	OK                           bool `json:"ok"`
}

// TestEngineResourceLimits: a fork bomb, a 4 GiB allocation and a task directory filled past
// its allowance each end their task failed with the limit's name, and a normal task started
// right after each one succeeds at once.
func TestEngineResourceLimits(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{
		"FLOWGATE_ENGINE_PROFILE":           "custom",
		"FLOWGATE_ENGINE_COMMAND":           hostileBinary,
		"FLOWGATE_ENGINE_ARGS":              "{objective}",
		"FLOWGATE_ENGINE_ENV":               "",
		"FLOWGATE_ENGINE_MEMORY_MAX":        "256MiB",
		"FLOWGATE_ENGINE_PIDS_MAX":          "64",
		"FLOWGATE_ENGINE_WORKDIR_MAX_BYTES": "64MiB",
	}})
	if !strings.Contains(g.Logs(), "engine resource limits enforced by control groups") {
		if os.Getenv("FLOWGATE_TEST_REQUIRE_SERVICES") != "" {
			t.Fatalf("no control groups for engine limits here:\n%s", tail(g.Logs(), 40))
		}
		t.Skip("this host gives the gateway no control group hierarchy for engine limits")
	}
	c := g.dial(t, g.UserToken)
	for _, tt := range []struct{ name, probe, want string }{
		{"fork bomb", "forkbomb=100000", "process limit exceeded"},
		{"4 GiB allocation", "alloc=4294967296", "memory limit exceeded"},
		{"one large file", "fill=1073741824", "disk limit exceeded"},
		{"many files", "fillmany=1073741824", "disk limit exceeded"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runSwarm(t, c, "probe "+tt.probe, nil)
			if r.complete.Status != "failed" || r.complete.Error != tt.want {
				t.Fatalf("task_complete = %s", r.complete.Raw)
			}
			start := time.Now()
			r = runSwarm(t, c, "probe read=/etc/hostname", nil)
			if r.complete.Status != "success" {
				t.Fatalf("the next task: %s", r.complete.Raw)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the next task took %s", d)
			}
		})
	}
}
