package sandbox

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// procEntry is what the tree walk needs from /proc/<pid>/stat.
type procEntry struct {
	pid, ppid, pgid int
	state           byte
}

// live reports whether a signal can still make a difference: zombies and dead tasks are done.
func (e procEntry) live() bool { return e.state != 'Z' && e.state != 'X' && e.state != 'x' }

// readStat parses /proc/<pid>/stat. The command name is in parentheses and may itself contain
// spaces and parentheses, so the fields are taken after the last ')'.
func readStat(pid int, buf []byte) (procEntry, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procEntry{}, false
	}
	n, _ := f.Read(buf)
	f.Close()
	b := buf[:n]
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procEntry{}, false
	}
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 3 || len(fields[0]) != 1 {
		return procEntry{}, false
	}
	ppid, err1 := strconv.Atoi(string(fields[1]))
	pgid, err2 := strconv.Atoi(string(fields[2]))
	if err1 != nil || err2 != nil {
		return procEntry{}, false
	}
	return procEntry{pid: pid, ppid: ppid, pgid: pgid, state: fields[0][0]}, true
}

// scanProcs lists every process visible in /proc.
func scanProcs() []procEntry {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	buf := make([]byte, 512)
	out := make([]procEntry, 0, len(names))
	for _, name := range names {
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if e, ok := readStat(pid, buf); ok {
			out = append(out, e)
		}
	}
	return out
}

// descendants returns every process below root in the parent tree, parents before children.
func descendants(root int) []procEntry {
	procs := scanProcs()
	children := make(map[int][]procEntry, len(procs))
	for _, e := range procs {
		if e.pid != root {
			children[e.ppid] = append(children[e.ppid], e)
		}
	}
	var out []procEntry
	queue := []int{root}
	seen := map[int]bool{root: true}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if seen[c.pid] {
				continue
			}
			seen[c.pid] = true
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// signalEntry signals e through a pidfd after checking that the pid still names the process
// that was scanned (same parent), so a pid recycled between the scan and the signal is never hit.
func signalEntry(e procEntry, sig unix.Signal, buf []byte) bool {
	fd, err := unix.PidfdOpen(e.pid, 0)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			// Kernels before 5.3: accept the tiny recycling window.
			return unix.Kill(e.pid, sig) == nil
		}
		return false
	}
	defer unix.Close(fd)
	now, ok := readStat(e.pid, buf)
	if !ok || now.ppid != e.ppid {
		return false
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0) == nil
}

// signalDescendants sends sig to every live process below root and reports how many it found.
func signalDescendants(root int, sig unix.Signal) int {
	buf := make([]byte, 512)
	n := 0
	for _, e := range descendants(root) {
		if !e.live() {
			continue
		}
		n++
		signalEntry(e, sig, buf)
	}
	return n
}

// killDescendants SIGKILLs everything below root until a scan finds nothing alive. Several
// passes catch children forked between a scan and the kill of their parent. Bounded: a
// process stuck in uninterruptible sleep is left to the caller's final kill.
func killDescendants(root int) {
	delay := 100 * time.Microsecond
	for range 200 {
		if signalDescendants(root, unix.SIGKILL) == 0 {
			return
		}
		time.Sleep(delay)
		delay = min(2*delay, 10*time.Millisecond)
	}
}
