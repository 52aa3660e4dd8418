//go:build unix

package sim

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// startGrandchild starts "<self> engine-sim sleeper" in a new session (setsid), the way an
// engine escapes its process group, and waits until it has set up its signals. Its stdio is
// /dev/null so it never holds the gateway's pipes open. It is released, not waited for: it is
// meant to outlive this process, and the sandbox, not the engine, has to reap it.
func startGrandchild(marker string, ignoreTerm bool, stop <-chan struct{}) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find own executable: %w", err)
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("ready pipe: %w", err)
	}
	defer rd.Close()
	args := []string{Command, SleeperCommand, "--marker", marker,
		"--duration", grandchildLife.String(), "--ready-fd", "3"}
	if ignoreTerm {
		args = append(args, "--ignore-term")
	}
	cmd := exec.Command(exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.ExtraFiles = []*os.File{wr} // fd 3
	err = cmd.Start()
	_ = wr.Close()
	if err != nil {
		return 0, fmt.Errorf("start: %w", err)
	}
	pid := cmd.Process.Pid
	_ = rd.SetReadDeadline(time.Now().Add(grandchildReady))
	var b [1]byte
	n, rerr := rd.Read(b[:])
	if n != 1 {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		select {
		case <-stop:
			return 0, errStopped
		default:
		}
		if rerr == nil {
			rerr = errors.New("no ready byte")
		}
		return 0, fmt.Errorf("grandchild %d did not report ready: %w", pid, rerr)
	}
	_ = cmd.Process.Release()
	return pid, nil
}
