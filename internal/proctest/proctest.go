// Package proctest finds the processes a test started, by a marker in their command line, so
// tests can prove nothing outlived a task: the tests' one copy of it.
package proctest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Start starts cmd and stops it when the test ends: stop is sent first, then, after grace,
// SIGKILL. The returned channel is closed once cmd has exited (its Wait has returned), so a
// test can tell a server that died from one that is slow to listen.
func Start(t testing.TB, cmd *exec.Cmd, stop os.Signal, grace time.Duration) <-chan struct{} {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(stop)
		select {
		case <-exited:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	return exited
}

// Marker is a fresh string to put in a command line and find it again.
func Marker() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "fgmark" + hex.EncodeToString(b)
}

// Survivors lists the pids (other than this process) whose command line contains mark.
func Survivors(mark string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(mark)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// StartHelper starts argv (usually the test binary re-run as a helper) with only PATH set and
// its stderr on the test's, and waits for its first line, which must start with "ready". The
// test kills it when it wants; a cleanup kills it should the test end first.
func StartHelper(t testing.TB, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(line, "ready") {
		t.Fatalf("helper said %q", line)
	}
	return cmd
}

// WaitGone waits up to d for every process carrying mark to be gone (the kernel and the
// supervisors clean up asynchronously) and returns those still there.
func WaitGone(mark string, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for len(Survivors(mark)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return Survivors(mark)
}
