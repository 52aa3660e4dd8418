package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/proctest"
)

// setups returns every way this machine can start a task, including the relayed user-namespace
// init that an unprivileged gateway uses (forced here even when running as root).
func setups(t *testing.T) map[string]*Sandbox {
	t.Helper()
	out := map[string]*Sandbox{}
	for _, c := range append(candidates(), candidate{name: "pgroup"}) {
		sb := &Sandbox{mode: PIDNS, initPath: initPath(t), setup: c}
		if c.name == "pgroup" {
			sb.mode = PGroup
		}
		if err := sb.probe(c); err != nil {
			t.Logf("%s unavailable: %v", c.name, err)
			continue
		}
		out[c.name] = sb
	}
	return out
}

// A TERM-ignoring engine with a setsid'd TERM-ignoring grandchild: Terminate does not end it,
// Kill does, and when Wait returns nothing is left.
func TestTerminateThenKillTree(t *testing.T) {
	for name, sb := range setups(t) {
		t.Run(name, func(t *testing.T) {
			mark := marker(t)
			killSurvivors(t, mark)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			loop := `trap "" TERM; echo ready; while :; do sleep 1; done`
			script := fmt.Sprintf(`setsid sh -c '%[1]s' %[2]s & sh -c '%[1]s' %[2]s & %[1]s`, loop, mark)
			p, err := sb.Start(Command{Path: "/bin/sh", Args: []string{"-c", script, mark}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Stdout: w, Stderr: w})
			w.Close()
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(r)
			for range 3 {
				if l, err := br.ReadString('\n'); err != nil || l != "ready\n" {
					t.Fatalf("read %q %v", l, err)
				}
			}
			// The three shells, plus the init (and relay) whose argv carries the marker too.
			if n := len(survivors(mark)); n < 3 {
				t.Errorf("%d marked processes running, want at least 3", n)
			}
			p.Terminate()
			select {
			case <-p.Done():
				t.Fatal("TERM-ignoring tree ended on SIGTERM")
			case <-time.After(200 * time.Millisecond):
			}
			t0 := time.Now()
			p.Kill()
			st, err := p.Wait()
			t.Logf("kill to wait: %s", time.Since(t0))
			if err != nil {
				t.Fatal(err)
			}
			if st.Signal.String() != "killed" || st.ExitCode != 137 {
				t.Errorf("status %+v", st)
			}
			if left := survivors(mark); len(left) > 0 {
				t.Errorf("survivors after Wait: %v", left)
			}
			p.Kill() // harmless after the end
			p.Terminate()
		})
	}
}

func TestGatewayDeathKillsNamespace(t *testing.T) {
	for name := range setups(t) {
		t.Run(name, func(t *testing.T) {
			mark := marker(t)
			killSurvivors(t, mark)
			cmd := proctest.StartHelper(t, initPath(t), "helper-gateway", name, mark)
			if n := len(survivors(mark)); n < 2 {
				t.Errorf("%d marked processes running before the kill", n)
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if left := proctest.WaitGone(mark, 10*time.Second); len(left) > 0 {
				t.Errorf("survivors after the gateway died: %v", left)
			}
		})
	}
}

// helperGateway starts a TERM-ignoring tree in the named setup and waits to be killed.
func helperGateway(name, mark string) int {
	self, _ := os.Executable()
	var sb *Sandbox
	for _, c := range append(candidates(), candidate{name: "pgroup"}) {
		if c.name == name {
			sb = &Sandbox{mode: PIDNS, initPath: self, setup: c}
			if name == "pgroup" {
				sb.mode = PGroup
			}
		}
	}
	r, w, _ := os.Pipe()
	loop := `trap "" TERM HUP; echo ready; while :; do sleep 1; done`
	script := fmt.Sprintf(`setsid sh -c '%[1]s' %[2]s </dev/null & %[1]s`, loop, mark)
	p, err := sb.Start(Command{Path: "/bin/sh", Args: []string{"-c", script, mark}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Stdout: w, Stderr: w})
	w.Close()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	br := bufio.NewReader(r)
	for range 2 {
		_, _ = br.ReadString('\n')
	}
	fmt.Println("ready")
	_, _ = p.Wait()
	return 0
}
