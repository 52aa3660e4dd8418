package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/internal/executor/sandbox"
)

type probeResult struct {
	Probe, Target, Error string
	OK                   bool `json:"ok"`
}

// probes runs one swarm with the sim's probe directives and returns its sim_probe events by
// kind, after checking that the swarm itself succeeded.
func probes(t *testing.T, g *gateway, directives string) map[string]probeResult {
	t.Helper()
	c := g.dial(t, g.UserToken)
	r := runSwarm(t, c, "map the sandbox "+directives+" sim:pace=0 sim:events=3", map[string]any{"agents": 1})
	if r.complete.Status != "success" || r.complete.ExitCode == nil || *r.complete.ExitCode != 0 {
		t.Fatalf("the confined swarm did not succeed: %s", r.complete.Raw)
	}
	out := map[string]probeResult{}
	for _, ev := range r.events {
		if ev.Type != "sim_probe" {
			continue
		}
		var p probeResult
		if err := json.Unmarshal(ev.Raw, &p); err != nil {
			t.Fatal(err)
		}
		out[p.Probe] = p
	}
	return out
}

// The engine of a swarm on `serve --dev` (the sim, that is the flowgate binary itself, under
// the default engine.landlock: auto) cannot read the gateway's signing key nor list its data
// directory, and cannot connect to the gateway's ops or public listener on loopback; it can
// write in its own working directory, and the swarm succeeds.
func TestEngineCannotReachGatewaySecrets(t *testing.T) {
	if abi := sandbox.LandlockABI(); abi < 4 {
		t.Skipf("kernel Landlock ABI %d; the engine confinement needs 4", abi)
	}
	g := startGateway(t, gwOptions{})
	key := filepath.Join(g.dataDir, "signing.key")
	if fi, err := os.Stat(key); err != nil || fi.Size() == 0 {
		t.Fatalf("the dev gateway has no signing key at %s: %v", key, err)
	}
	ops := strings.TrimPrefix(g.Ops, "http://")
	public := strings.TrimPrefix(g.HTTP, "http://")

	got := probes(t, g, "sim:probe-file="+key+" sim:probe-connect="+ops+" sim:probe-write=notes.txt")
	if p, ok := got["file"]; !ok || p.OK || p.Target != key || !strings.Contains(p.Error, "permission denied") {
		t.Errorf("reading %s: %+v", key, p)
	}
	if p, ok := got["connect"]; !ok || p.OK || !strings.Contains(p.Error, "permission denied") {
		t.Errorf("connecting to the ops listener %s: %+v", ops, p)
	}
	if p, ok := got["write"]; !ok || !p.OK {
		t.Errorf("writing in its own directory: %+v", p)
	}

	got = probes(t, g, "sim:probe-file="+g.dataDir+" sim:probe-connect="+public)
	if p, ok := got["file"]; !ok || p.OK {
		t.Errorf("listing the data dir %s: %+v", g.dataDir, p)
	}
	if p, ok := got["connect"]; !ok || p.OK {
		t.Errorf("connecting to the public listener %s: %+v", public, p)
	}

	if !strings.Contains(g.Logs(), `"landlock_abi":`) {
		t.Error("the gateway did not log the Landlock ABI its engines run under")
	}
	if strings.Contains(g.Logs(), "BEGIN PRIVATE KEY") {
		t.Error("key material in the gateway's log")
	}
}
