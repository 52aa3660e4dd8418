package deploycheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unitDirectives parses a systemd unit into directive → values (in order).
func unitDirectives(t *testing.T, rel string) map[string][]string {
	t.Helper()
	d := map[string][]string{}
	for _, line := range strings.Split(string(readFile(t, rel)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not key=value", rel, line)
		}
		d[k] = append(d[k], v)
	}
	return d
}

func TestSystemdUnit(t *testing.T) {
	const unit = "deploy/systemd/flowgate.service"
	d := unitDirectives(t, unit)
	last := func(k string) string {
		if v := d[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	for k, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "RestrictSUIDSGID": "yes", "KillMode": "mixed", "UMask": "0077",
		"CapabilityBoundingSet": "", "AmbientCapabilities": "", "LimitCORE": "0",
	} {
		if _, ok := d[k]; !ok || last(k) != want {
			t.Errorf("%s=%q, want %q (set: %v)", k, last(k), want, ok)
		}
	}
	if last("DynamicUser") != "yes" && last("User") == "" {
		t.Error("neither DynamicUser= nor a dedicated User=")
	}
	if last("StateDirectory") == "" {
		t.Error("no StateDirectory=")
	}
	// The sandbox creates user, PID, mount and network namespaces; nothing else.
	if ns := strings.Fields(last("RestrictNamespaces")); strings.Join(ns, " ") != "user pid mnt net" {
		t.Errorf("RestrictNamespaces=%v, want exactly user pid mnt net (the engines' network namespaces)", ns)
	}
	for _, k := range []string{"SystemCallFilter", "SystemCallArchitectures", "MemoryMax", "TasksMax", "LimitNOFILE", "RestrictAddressFamilies"} {
		if len(d[k]) == 0 {
			t.Errorf("no %s=", k)
		}
	}
	// Inherited by the engines: Node.js's JIT needs W+X memory.
	if len(d["MemoryDenyWriteExecute"]) > 0 {
		t.Error("MemoryDenyWriteExecute= breaks Node.js engines")
	}
	stop, err := time.ParseDuration(last("TimeoutStopSec") + "s")
	cfg := loadConfig(t, "configs/flowgate.yaml", map[string]string{"FLOWGATE_DATA_DIR": "/var/lib/flowgate"})
	if err != nil || stop <= cfg.Shutdown.Grace {
		t.Errorf("TimeoutStopSec=%s must exceed shutdown.grace %s", last("TimeoutStopSec"), cfg.Shutdown.Grace)
	}

	execStart := strings.Fields(last("ExecStart"))
	if len(execStart) < 2 || execStart[0] != "/usr/local/bin/flowgate" {
		t.Fatalf("ExecStart=%v", execStart)
	}
	checkInvocation(t, "ExecStart", execStart[1:])

	// Environment= and the env file set real configuration keys, and the key files are the
	// credentials the unit loads.
	known := envKeys()
	creds := map[string]bool{}
	for _, c := range d["LoadCredential"] {
		name, _, _ := strings.Cut(c, ":")
		creds["%d/"+name] = true
	}
	for _, e := range d["Environment"] {
		k, v, _ := strings.Cut(e, "=")
		if strings.HasPrefix(k, "FLOWGATE_") && !known[k] {
			t.Errorf("Environment=%s is not a configuration key", k)
		}
		if strings.HasSuffix(k, "_KEY_FILE") && !creds[v] {
			t.Errorf("Environment=%s=%s is not a LoadCredential= file", k, v)
		}
	}
}

func TestSystemdEnvFile(t *testing.T) {
	known := envKeys()
	env := map[string]string{}
	for _, line := range strings.Split(string(readFile(t, "deploy/systemd/flowgate.env.example")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%q is not KEY=value", line)
		}
		if strings.HasPrefix(k, "FLOWGATE_") && !known[k] {
			t.Errorf("%s is not a configuration key", k)
		}
		env[k] = v
	}
	// The unit's own Environment= lines complete it; together they must make a valid config.
	for _, e := range unitDirectives(t, "deploy/systemd/flowgate.service")["Environment"] {
		k, v, _ := strings.Cut(e, "=")
		env[k] = strings.ReplaceAll(v, "%d", "/run/credentials/flowgate.service")
	}
	cfg := loadConfig(t, "configs/flowgate.yaml", env)
	if cfg.Ops.Pprof || cfg.QueryTokensAllowed() {
		t.Error("pprof or query tokens on in the production example")
	}
}

// systemd-analyze verify, where systemd is installed, with ExecStart pointing at a real binary.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa := tool(t, "systemd-analyze")
	bin := binary(t)
	unit := strings.ReplaceAll(string(readFile(t, "deploy/systemd/flowgate.service")), "/usr/local/bin/flowgate", bin)
	dir := t.TempDir()
	path := filepath.Join(dir, "flowgate.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", path).CombinedOutput()
	var problems []string
	for _, l := range strings.Split(string(out), "\n") {
		// Noise of running inside a container, not about the unit.
		if l == "" || strings.Contains(l, "Failed to read $container") || strings.Contains(l, "PR_SET_MM") {
			continue
		}
		problems = append(problems, l)
	}
	if err != nil || len(problems) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, strings.Join(problems, "\n"))
	}
}

// TestSystemdUnitAllowsLandlock: some systemd versions leave the Landlock system calls out of
// @system-service, which would silently run engines unconfined (engine.landlock: auto).
func TestSystemdUnitAllowsLandlock(t *testing.T) {
	unit := string(readFile(t, "deploy/systemd/flowgate.service"))
	for _, sc := range []string{"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"} {
		found := false
		for _, line := range strings.Split(unit, "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "SystemCallFilter=") && !strings.HasPrefix(line, "SystemCallFilter=~") && strings.Contains(line, sc) {
				found = true
			}
		}
		if !found {
			t.Errorf("deploy/systemd/flowgate.service does not allow %s", sc)
		}
	}
}
