package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func TestOwnCgroups(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cgroup")
	if err := os.WriteFile(p, []byte("9:name=systemd:/\n8:pids:/a\n4:memory:/process_api/x\n2:cpu,cpuacct:/c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ownCgroups(p)
	if err != nil {
		t.Fatal(err)
	}
	if got["pids"] != "/a" || got["memory"] != "/process_api/x" || got["cpuacct"] != "/c" || got["name=systemd"] != "/" {
		t.Errorf("ownCgroups = %v", got)
	}
}

func TestField(t *testing.T) {
	p := filepath.Join(t.TempDir(), "memory.events")
	if err := os.WriteFile(p, []byte("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if field(p, "oom_kill") != 1 || field(p, "max") != 12 || field(p, "absent") != 0 || field(p+"x", "max") != 0 {
		t.Error("field")
	}
}

// On a host that lets the gateway make groups, one is made with its limits and removed.
func TestCreateAndRemove(t *testing.T) {
	m, err := Detect()
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no control groups for this process: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Create("test-"+filepath.Base(t.TempDir()), Limits{MemoryMax: 64 << 20, PidsMax: 16})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range g.Dirs() {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
			t.Errorf("group %s: %v", d, err)
		}
	}
	if e := g.Events(); e.OOMKills != 0 || e.PidsMax != 0 {
		t.Errorf("fresh group events %+v", e)
	}
	g.Remove()
	for _, d := range g.Dirs() {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("group %s not removed: %v", d, err)
		}
	}
	if _, err := m.Create("../escape", Limits{}); err == nil {
		t.Error("a name with a slash was accepted")
	}
}

// TestForkRefusals: the counter read through the kept-open pids.events moves when pids.max
// refuses forks (a stale first read would hide a fork bomb from every later poll).
func TestForkRefusals(t *testing.T) {
	m, err := Detect()
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no control groups for this process: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Create("test-"+filepath.Base(t.TempDir()), Limits{PidsMax: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Remove()
	// The shell waits for its pid to be in the group, then forks four children at a limit of 2.
	gate := filepath.Join(t.TempDir(), "gate")
	cmd := exec.Command("/bin/sh", "-c", `while [ ! -e "$1" ]; do sleep 0.01; done; for i in 1 2 3 4; do sleep 0.2 & done; wait`, "sh", gate)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if n := g.ForkRefusals(); n != 0 {
		t.Fatalf("fresh group: %d refusals", n)
	}
	dirs := g.Dirs()
	if err := os.WriteFile(filepath.Join(dirs[len(dirs)-1], "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if n := g.ForkRefusals(); n < 1 {
		t.Fatalf("after forks past pids.max 2: %d refusals; want at least 1", n)
	}
	if e := g.Events(); e.PidsMax < 1 {
		t.Fatalf("Events().PidsMax = %d", e.PidsMax)
	}
}
