// Package proctest finds the processes a test started, by a marker in their command line, so
// tests can prove nothing outlived a task: the tests' one copy of it.
package proctest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
)

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
