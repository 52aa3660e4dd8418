package sim

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProbes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "signing.key")
	const content = "PRIVATE-KEY-CONTENT-must-not-be-printed"
	if err := os.WriteFile(secret, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name, args string
		probe      string
		ok         bool
		errHas     string
	}{
		{"read", "sim:probe-file=" + secret, "file", true, ""},
		{"read dir", "sim:probe-file=" + dir, "file", true, ""},
		{"read missing", "sim:probe-file=" + filepath.Join(dir, "nope"), "file", false, "no such file"},
		{"write", "sim:probe-write=" + filepath.Join(dir, "new"), "write", true, ""},
		{"write existing", "sim:probe-write=" + secret, "write", false, "file exists"},
		{"connect", "sim:probe-connect=" + l.Addr().String(), "connect", true, ""},
		{"connect refused", "sim:probe-connect=" + closedAddr, "connect", false, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := runMain(t, nil, "swarm", "probe "+tc.args, "--pace", "0", "--events", "2")
			if o.err != nil {
				t.Fatal(o.err)
			}
			evs := o.ofType("sim_probe")
			if len(evs) != 1 {
				t.Fatalf("sim_probe events %v", evs)
			}
			e := evs[0]
			_, target, _ := strings.Cut(tc.args, "=")
			if e.str("probe") != tc.probe || e.str("target") != target || e["ok"] != tc.ok || !strings.Contains(e.str("error"), tc.errHas) {
				t.Errorf("event %v", e)
			}
			if strings.Contains(strings.Join(o.lines, "\n")+o.stderr, content) {
				t.Error("the file's content was printed")
			}
			checkScript(t, o, 5, 2, false)
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("probe-write left its file: %v", err)
	}
	if b, _ := os.ReadFile(secret); string(b) != content {
		t.Error("probe-write changed an existing file")
	}
}

func TestProbeUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"swarm", "x", "--probe-connect", "no-port"},
		{"swarm", "x", "--probe-file", ""},
		{"swarm", "x", "--probe-file", "a b"},
		{"swarm", "x", "--probe-write", strings.Repeat("a", maxProbeTarget+1)},
	} {
		o := runMain(t, nil, args...)
		if ExitCode(o.err) != ExitUsage {
			t.Errorf("%q: err %v", args, o.err)
		}
	}
}
