package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Root is where the hierarchies are mounted.
const Root = "/sys/fs/cgroup"

// Limits of one engine. Zero leaves a resource unlimited.
type Limits struct {
	MemoryMax int64 // bytes
	PidsMax   int64
}

// Manager creates task groups. Its zero value is unusable: use Detect.
type Manager struct {
	v2     bool
	memory string // parent directory for task groups (v2: the one directory)
	pids   string
}

// ErrUnavailable: no hierarchy this gateway may create groups in.
var ErrUnavailable = errors.New("cgroup: unavailable")

// Detect finds where this process may create task groups: its own cgroup v2 directory when
// memory and pids are enabled for its children there (a delegated subtree: systemd's
// Delegate=yes), else its own v1 memory and pids cgroups (hybrid hosts). The error says why
// neither works; the caller falls back to rlimits.
func Detect() (*Manager, error) {
	own, err := ownCgroups("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var why []string
	if p, ok := own[""]; ok {
		dir := filepath.Join(Root, p)
		sub, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
		switch {
		case err != nil:
			why = append(why, "v2: "+err.Error())
		case !hasWords(string(sub), "memory", "pids"):
			// The kernel lets a cgroup hand controllers to its children only when no process
			// sits in it (the root excepted), and the gateway sits in its own: moving itself
			// into a leaf first is not done yet.
			why = append(why, fmt.Sprintf("v2: %s does not delegate the memory and pids controllers to its children (cgroup.subtree_control %q); flowgate does not yet move itself into a leaf to enable them", dir, strings.TrimSpace(string(sub))))
		case writable(dir) != nil:
			why = append(why, "v2: "+writable(dir).Error())
		default:
			return &Manager{v2: true, memory: dir, pids: dir}, nil
		}
	}
	mp, mok := own["memory"]
	pp, pok := own["pids"]
	if mok && pok {
		m, p := filepath.Join(Root, "memory", mp), filepath.Join(Root, "pids", pp)
		if err := writable(m); err != nil {
			why = append(why, "v1: "+err.Error())
		} else if err := writable(p); err != nil {
			why = append(why, "v1: "+err.Error())
		} else {
			return &Manager{memory: m, pids: p}, nil
		}
	} else {
		why = append(why, "v1: no memory and pids hierarchies")
	}
	return nil, fmt.Errorf("%w: %s", ErrUnavailable, strings.Join(why, "; "))
}

// Version is 1 or 2.
func (m *Manager) Version() int {
	if m.v2 {
		return 2
	}
	return 1
}

// ownCgroups parses /proc/self/cgroup into controller → path ("" for the v2 hierarchy).
func ownCgroups(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			if _, err := os.Stat(filepath.Join(Root, "cgroup.controllers")); err == nil {
				out[""] = parts[2] // unified mode
			} else if _, err := os.Stat(filepath.Join(Root, "unified", "cgroup.controllers")); err == nil {
				// Hybrid: the v2 tree is mounted at unified/; it carries no memory or pids
				// controller when v1 has them, which the subtree check then finds.
				out[""] = filepath.Join("unified", parts[2])
			}
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, sc.Err()
}

func hasWords(s string, words ...string) bool {
	have := map[string]bool{}
	for _, w := range strings.Fields(s) {
		have[w] = true
	}
	for _, w := range words {
		if !have[w] {
			return false
		}
	}
	return true
}

// writable checks that a child group can be created in dir.
func writable(dir string) error {
	probe := filepath.Join(dir, fmt.Sprintf("flowgate-probe-%d", os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return fmt.Errorf("cannot create groups in %s: %w", dir, err)
	}
	return os.Remove(probe)
}

// Group is one task's cgroup (a directory per hierarchy).
type Group struct {
	v2   bool
	dirs []string

	mu         sync.Mutex
	pidsEvents *os.File // pids.events, opened by the first ForkRefusals, closed by Remove
}

// Create makes the task's group(s) and sets l. name must be a task id (no slashes).
func (m *Manager) Create(name string, l Limits) (*Group, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, errors.New("cgroup: invalid group name")
	}
	g := &Group{v2: m.v2}
	leaf := "flowgate-" + name
	if m.v2 {
		g.dirs = []string{filepath.Join(m.memory, leaf)}
	} else {
		g.dirs = []string{filepath.Join(m.memory, leaf), filepath.Join(m.pids, leaf)}
	}
	for _, d := range g.dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			g.Remove()
			return nil, fmt.Errorf("cgroup: %w", err)
		}
	}
	set := func(dir, file string, v int64) error {
		if v <= 0 {
			return nil
		}
		return os.WriteFile(filepath.Join(dir, file), []byte(strconv.FormatInt(v, 10)), 0)
	}
	var err error
	if m.v2 {
		err = errors.Join(set(g.dirs[0], "memory.max", l.MemoryMax), set(g.dirs[0], "pids.max", l.PidsMax))
		if l.MemoryMax > 0 {
			// No swap on top of the limit (absent where swap is not accounted).
			_ = os.WriteFile(filepath.Join(g.dirs[0], "memory.swap.max"), []byte("0"), 0)
		}
	} else {
		err = errors.Join(set(g.dirs[0], "memory.limit_in_bytes", l.MemoryMax), set(g.dirs[1], "pids.max", l.PidsMax))
		if l.MemoryMax > 0 {
			// Swap counted with memory where the kernel accounts it (memsw); absent otherwise.
			if _, e := os.Stat(filepath.Join(g.dirs[0], "memory.memsw.limit_in_bytes")); e == nil {
				_ = set(g.dirs[0], "memory.memsw.limit_in_bytes", l.MemoryMax)
			}
		}
	}
	if err != nil {
		g.Remove()
		return nil, fmt.Errorf("cgroup: set limits: %w", err)
	}
	return g, nil
}

// Dirs are the group's directories; a process joins by writing "0" to each one's
// cgroup.procs (the sandbox init does, before it starts the engine).
func (g *Group) Dirs() []string { return append([]string(nil), g.dirs...) }

// Events is what the limits did so far.
type Events struct {
	OOMKills int64 // processes the kernel killed for exceeding MemoryMax
	PidsMax  int64 // forks refused for exceeding PidsMax
}

// Events reads the group's counters.
func (g *Group) Events() Events {
	var e Events
	if g.v2 {
		e.OOMKills = field(filepath.Join(g.dirs[0], "memory.events"), "oom_kill")
		e.PidsMax = g.ForkRefusals()
		return e
	}
	e.OOMKills = field(filepath.Join(g.dirs[0], "memory.oom_control"), "oom_kill")
	if e.OOMKills == 0 {
		// Kernels before 4.13 have no oom_kill line: a failed charge at the limit is the sign.
		if fc := readInt(filepath.Join(g.dirs[0], "memory.failcnt")); fc > 0 && readInt(filepath.Join(g.dirs[0], "memory.max_usage_in_bytes")) >= readInt(filepath.Join(g.dirs[0], "memory.limit_in_bytes")) {
			e.OOMKills = 1
		}
	}
	e.PidsMax = g.ForkRefusals()
	return e
}

// pidsEventsPath is the file whose "max" line counts the forks pids.max refused.
func (g *Group) pidsEventsPath() string {
	return filepath.Join(g.dirs[len(g.dirs)-1], "pids.events")
}

// ForkRefusals is how many forks pids.max refused so far. A running task's supervisor asks
// every poll, for every task: the file stays open and each call is one pread (a control-group
// file is generated afresh at offset 0), not an open, stat, read and close (a start burst of
// 200 tasks spent a fifth of the gateway's CPU on those).
func (g *Group) ForkRefusals() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pidsEvents == nil {
		f, err := os.Open(g.pidsEventsPath())
		if err != nil {
			return 0
		}
		g.pidsEvents = f
	}
	var buf [128]byte
	n, err := g.pidsEvents.ReadAt(buf[:], 0)
	if n == 0 && err != nil {
		return 0
	}
	return fieldIn(buf[:n], "max")
}

// Remove deletes the group once its processes are gone (the caller waited for them; the
// kernel may take a moment to let go of the last one).
func (g *Group) Remove() {
	g.mu.Lock()
	if g.pidsEvents != nil {
		_ = g.pidsEvents.Close()
		g.pidsEvents = nil
	}
	g.mu.Unlock()
	for _, d := range g.dirs {
		for i := 0; i < 50; i++ {
			err := os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// field reads "name N" from a flat keyed file.
func field(path, name string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return fieldIn(b, name)
}

// fieldIn reads name's value from a flat-keyed file's content ("key value" lines).
func fieldIn(b []byte, name string) int64 {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == name {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}
