package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// InitArg is the hidden flowgate subcommand that runs InitMain.
const InitArg = "sandbox-init"

// probeToken is printed by a probing init so the probe knows InitPath really is a flowgate init
// and not some binary that happens to exit 0.
const probeToken = "flowgate-sandbox-init-ok"

// MaxNice is the largest nice value (the lowest CPU priority) Linux knows.
const MaxNice = 19

// Exit codes of the init for its own failures, before the engine ran.
const (
	exitUsage     = 125
	exitSetup     = 126
	exitExecFails = 127
)

// Lines on the status fd, read by the gateway.
const (
	statusStartOK  = "start ok"
	statusStartErr = "start err "
	statusInitPid  = "init "
	statusExit     = "exit "
	statusSignal   = "signal "
)

type initConfig struct {
	ns        bool // PID 1 of a fresh PID namespace: kill(-1) reaches exactly the task
	subreaper bool // pgroup mode: child subreaper, signals walk the process tree
	relay     bool // start an --ns init in a new user+PID namespace and relay to it
	exec      bool // the engine's own process: apply the Landlock policy, then exec the engine
	mountProc bool
	probe     bool
	statusFD  int
	asUser    *[2]int // --as-user UID:GID: run the engine as this user in a nested user namespace
	runAs     *IDs    // --run-as UID:GID: the engine's user and group (root gateway only)
	nice      int     // --nice N: the nice value of the init's forking thread, so of all it starts
	landlock  LandlockMode
	cgroups   []string // --cgroup DIR: join these control groups before anything starts
	fsize     int64    // --fsize N: RLIMIT_FSIZE of the engine (bytes)
	netns     bool     // --netns PORT: the engine gets a network namespace with only loopback
	netnsPort int      // relayed to the same port outside (0: no relay)
	seccomp   bool     // the engine's stage installs the seccomp filter (--seccomp)
	udp       bool     // the filter allows UDP (--seccomp-udp: the engine has its own network namespace)
	ro, rw    []string
	tcp       []uint16
	// policyArgs are the --landlock, --ro, --rw and --tcp arguments as given, for the stage
	// (and, in a relay, for the init it starts).
	policyArgs []string
	path       string
	args       []string
}

func parseInitArgs(args []string) (initConfig, error) {
	var c initConfig
	i := 0
	for ; i < len(args); i++ {
		switch a := args[i]; a {
		case "--ns":
			c.ns = true
		case "--subreaper":
			c.subreaper = true
		case "--relay":
			c.relay = true
		case "--mount-proc":
			c.mountProc = true
		case "--probe":
			c.probe = true
		case "--as-user":
			if i+1 >= len(args) {
				return c, errors.New("--as-user needs UID:GID")
			}
			i++
			u, g, ok := strings.Cut(args[i], ":")
			uid, err1 := strconv.Atoi(u)
			gid, err2 := strconv.Atoi(g)
			if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
				return c, errors.New("--as-user: want UID:GID")
			}
			c.asUser = &[2]int{uid, gid}
		case "--exec":
			c.exec = true
		case "--nice":
			if i+1 >= len(args) {
				return c, errors.New("--nice needs a value")
			}
			i++
			n, err := strconv.Atoi(args[i])
			if err != nil || n < 1 || n > MaxNice {
				return c, fmt.Errorf("--nice: want 1 to %d", MaxNice)
			}
			c.nice = n
		case "--run-as":
			if i+1 >= len(args) {
				return c, errors.New("--run-as needs UID:GID")
			}
			i++
			ids, err := ParseIDs(args[i])
			if err != nil {
				return c, fmt.Errorf("--run-as: %w", err)
			}
			c.runAs = &ids
		case "--cgroup":
			if i+1 >= len(args) {
				return c, errors.New("--cgroup needs a directory")
			}
			i++
			if !strings.HasPrefix(args[i], "/sys/fs/cgroup/") || strings.Contains(args[i], "..") || len(c.cgroups) >= 4 {
				return c, errors.New("--cgroup: want a directory under /sys/fs/cgroup (at most 4)")
			}
			c.cgroups = append(c.cgroups, args[i])
		case "--fsize":
			if i+1 >= len(args) {
				return c, errors.New("--fsize needs a size")
			}
			i++
			n, err := strconv.ParseInt(args[i], 10, 64)
			if err != nil || n < 1 {
				return c, errors.New("--fsize: want a positive number of bytes")
			}
			c.fsize = n
		case "--netns":
			if i+1 >= len(args) {
				return c, errors.New("--netns needs a port (0 for none)")
			}
			i++
			port, err := strconv.ParseUint(args[i], 10, 16)
			if err != nil {
				return c, errors.New("--netns: want a port from 0 to 65535")
			}
			c.netns, c.netnsPort = true, int(port)
			c.policyArgs = append(c.policyArgs, a, args[i])
		case "--seccomp", "--seccomp-udp":
			c.seccomp = true
			c.udp = c.udp || a == "--seccomp-udp"
			c.policyArgs = append(c.policyArgs, a)
		case "--landlock", "--ro", "--rw", "--tcp":
			if i+1 >= len(args) {
				return c, fmt.Errorf("%s needs a value", a)
			}
			i++
			v := args[i]
			switch a {
			case "--landlock":
				m, err := ParseLandlockMode(v, "")
				if err != nil || m == LandlockOff || m == "" {
					return c, errors.New("--landlock: want auto or required")
				}
				c.landlock = m
			case "--ro", "--rw":
				if err := checkPolicyPath(v); err != nil {
					return c, fmt.Errorf("%s: %w", a, err)
				}
				if a == "--ro" {
					c.ro = append(c.ro, v)
				} else {
					c.rw = append(c.rw, v)
				}
				if len(c.ro)+len(c.rw) > 2*maxPolicyPaths {
					return c, errors.New("too many --ro and --rw paths")
				}
			case "--tcp":
				port, err := strconv.ParseUint(v, 10, 16)
				if err != nil || port == 0 {
					return c, errors.New("--tcp: want a port from 1 to 65535")
				}
				if c.tcp = append(c.tcp, uint16(port)); len(c.tcp) > maxPolicyPorts {
					return c, errors.New("too many --tcp ports")
				}
			}
			c.policyArgs = append(c.policyArgs, a, v)
		case "--status-fd":
			if i+1 >= len(args) {
				return c, errors.New("--status-fd needs a value")
			}
			i++
			fd, err := strconv.Atoi(args[i])
			if err != nil || fd < 3 {
				return c, errors.New("--status-fd: want a descriptor >= 3")
			}
			c.statusFD = fd
		case "--":
			if i+1 < len(args) {
				c.path, c.args = args[i+1], args[i+2:]
			}
			i = len(args)
		default:
			return c, fmt.Errorf("unknown argument %q", a)
		}
	}
	n := 0
	for _, b := range []bool{c.ns, c.subreaper, c.relay, c.exec} {
		if b {
			n++
		}
	}
	if n != 1 {
		return c, errors.New("exactly one of --ns, --subreaper, --relay and --exec is required")
	}
	if c.asUser != nil && !c.ns {
		return c, errors.New("--as-user needs --ns")
	}
	if c.runAs != nil && !c.ns && !c.subreaper {
		// A relay's namespace maps only the gateway's own user; the stage is already it.
		return c, errors.New("--run-as needs --ns or --subreaper")
	}
	if c.exec && (c.mountProc || c.probe || c.asUser != nil || c.statusFD > 0 || c.nice > 0 || len(c.cgroups) > 0 || c.fsize > 0) {
		return c, errors.New("--exec takes only policy arguments")
	}
	if !c.probe && !filepath.IsAbs(c.path) {
		return c, errors.New("usage: sandbox-init --ns|--subreaper|--relay|--exec [--mount-proc] [--as-user UID:GID] [--run-as UID:GID] [--nice N] [--netns PORT] [--seccomp|--seccomp-udp] [--landlock auto|required] [--ro PATH]... [--rw PATH]... [--tcp PORT]... [--status-fd N] -- /abs/engine [args...]")
	}
	return c, nil
}

// An init must keep its main goroutine on the process's first thread, the thread-group
// leader: startConfined confines a new thread and lets it end, and the runtime never ends
// the leader, so a goroutine that landed there would leave the leader confined (a
// process-directed signal is checked against it) and stuck. A package's init runs on that
// thread, and locking it here keeps InitMain there.
//
// One P as well: an init never has two goroutines with work at once, and with a second P
// the runtime starts and parks threads to look for it (an init had 8 threads, now 6). In a
// burst of 200 starts on two cores the inits took 33.8 % of the machine's CPU samples with
// two Ps and 25.9 % with one (medians of 3 runs, `scripts/bench-burst --perf 12`).
func init() {
	if len(os.Args) > 1 && os.Args[1] == InitArg {
		runtime.LockOSThread()
		runtime.GOMAXPROCS(1)
	}
}

// InitMain is the flowgate sandbox init; args are the arguments after "sandbox-init". It must
// run before anything else in main (no config, no logging on stdout: stdout and stderr belong
// to the engine). It returns the process exit code: the engine's exit code, 128+signal if the
// engine was killed, or 125-127 when the init itself failed.
//
// With --ns it must be PID 1 of a new PID namespace (it refuses otherwise, because kill(-1)
// anywhere else would signal every process of the user). It then starts the engine with the
// environment, directory and stdio it was given (adding or changing nothing), reaps every
// process that gets reparented to it, forwards SIGTERM, SIGINT and SIGHUP as kill(-1, SIGTERM),
// and once the engine has exited SIGKILLs whatever is left, reaps it and exits with the engine's
// status. With --subreaper it does the same as a child subreaper, signalling its process tree
// instead of kill(-1); on SIGHUP with a new parent (the gateway died, see Pdeathsig) it
// SIGKILLs the tree. With --relay it starts itself with --ns in a new user and PID namespace
// (for a gateway that may not create a PID namespace itself) and forwards signals to it; with
// --mount-proc too, the relay maps the gateway's user to root in that namespace so the init can
// mount /proc, and the init starts the engine as the gateway's user again, without
// capabilities, in a nested user namespace (--as-user).
//
// The engine is started as --run-as UID:GID when given (no supplementary groups), and, when
// the init runs as root, with an empty capability bounding set, so an engine left as root has
// no capabilities. With --landlock (the --ro, --rw and --tcp rules) or --seccomp, a PID 1 init
// (--ns) forks the engine from a short-lived thread that confines itself first (see
// startConfined); otherwise the engine's process first execs this binary again with --exec,
// which confines itself (see stageMain) and then execs the engine.
//
// The gateway wires it as a hidden subcommand, first thing in main:
//
//	if len(os.Args) > 1 && os.Args[1] == sandbox.InitArg {
//		os.Exit(sandbox.InitMain(os.Args[2:]))
//	}
func InitMain(args []string) int {
	cfg, err := parseInitArgs(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flowgate sandbox-init: %v\n", err)
		return exitUsage
	}
	if cfg.exec {
		return stageMain(cfg)
	}
	status := -1
	if cfg.statusFD > 0 {
		status = cfg.statusFD
		unix.CloseOnExec(status)
		// Never block on the status pipe: the gateway reads it only at the start and the
		// end, and an engine must not be able to wedge the init by filling it.
		_ = unix.SetNonblock(status, true)
	}
	report := func(line string) {
		if status >= 0 {
			_, _ = unix.Write(status, []byte(line+"\n"))
		}
	}
	fail := func(code int, format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		report(statusStartErr + msg)
		fmt.Fprintf(os.Stderr, "flowgate sandbox-init: %s\n", msg)
		return code
	}

	// NO_NEW_PRIVS and PDEATHSIG are per thread, and children are forked from this thread:
	// keep the goroutine on it for good.
	runtime.LockOSThread()
	if cfg.nice > 0 {
		// Linux keeps the nice value per thread and a child takes its forking thread's: set
		// on this thread, it reaches the engine and everything the engine starts, before any
		// of them exists. Raising it needs no privilege, and no engine can lower it again.
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, cfg.nice); err != nil {
			return fail(exitSetup, "setpriority(%d): %v", cfg.nice, err)
		}
	}

	if cfg.ns && os.Getpid() != 1 {
		return fail(exitSetup, "--ns: not PID 1 of a new PID namespace")
	}
	origParent := os.Getppid()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)

	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail(exitSetup, "prctl(PR_SET_NO_NEW_PRIVS): %v", err)
	}
	// Into the task's control groups before anything else starts: every process of the task
	// (a relay's namespace init, the engine and all it forks) is born inside the limits.
	for _, dir := range cfg.cgroups {
		if err := os.WriteFile(dir+"/cgroup.procs", []byte("0"), 0); err != nil {
			return fail(exitSetup, "join cgroup %s: %v", dir, err)
		}
	}
	if cfg.fsize > 0 {
		// Per file: one write cannot run past the task's disk allowance (the gateway watches
		// the directory's total). Inherited by everything the init starts.
		if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: uint64(cfg.fsize), Max: uint64(cfg.fsize)}); err != nil {
			return fail(exitSetup, "setrlimit(RLIMIT_FSIZE): %v", err)
		}
	}
	// Hard limit too, so the engine cannot raise it back: a core file of an engine holds the
	// tenant's key.
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fail(exitSetup, "setrlimit(RLIMIT_CORE): %v", err)
	}
	if cfg.relay {
		return relay(cfg, sigs, report, fail)
	}
	// Non-dumpable: an engine of the same (non-root) user can then neither ptrace the init
	// nor open its descriptors through /proc/<pid>/fd (the status pipe). Reset by execve, so
	// the engine itself is unaffected.
	if err := MakeNonDumpable(); err != nil {
		return fail(exitSetup, "%v", err)
	}
	if cfg.subreaper {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fail(exitSetup, "prctl(PR_SET_CHILD_SUBREAPER): %v", err)
		}
	}
	if cfg.mountProc {
		// A private /proc shows only this namespace's processes, so an engine cannot even
		// see other tasks' engines (whose environ holds other tenants' keys).
		if err := unix.Mount("none", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fail(exitSetup, "make mounts private: %v", err)
		}
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fail(exitSetup, "mount /proc: %v", err)
		}
		if err := maskSocketDirs(cfg); err != nil {
			return fail(exitSetup, "%v", err)
		}
	}
	var netns *os.File
	if cfg.netns && cfg.ns {
		// The PID 1 init of the task's namespaces only: a relay passes --netns on to it, and
		// the stage ignores it (it runs in the namespace already).
		if err := enterNetNS(cfg.netnsPort); err != nil {
			return fail(exitSetup, "network namespace: %v", err)
		}
		// The thread that forks a confined engine (startConfined) is not this one: it joins
		// the namespace through this handle.
		if netns, err = os.Open("/proc/thread-self/ns/net"); err != nil {
			return fail(exitSetup, "network namespace: %v", err)
		}
		defer netns.Close()
	}
	engineAttr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if cfg.asUser != nil {
		// The relay mapped the gateway's user to root here so that this init could mount
		// /proc; the engine must not be root, so it gets a nested user namespace in which it
		// is the gateway's user again, without capabilities.
		uid, gid := cfg.asUser[0], cfg.asUser[1]
		engineAttr.Cloneflags = unix.CLONE_NEWUSER
		engineAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: os.Getuid(), Size: 1}}
		engineAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: os.Getgid(), Size: 1}}
	}
	if cfg.runAs != nil {
		// No supplementary groups (an empty Groups means setgroups(0)): the gateway's groups
		// may open files its user cannot.
		engineAttr.Credential = &syscall.Credential{Uid: uint32(cfg.runAs.UID), Gid: uint32(cfg.runAs.GID)}
	}
	if os.Geteuid() == 0 {
		// An engine that stays root (no engine.run_as) must not keep root's capabilities:
		// with an empty bounding set its execve grants none. Per thread, like everything here,
		// and inherited by the engine forked from this thread; this init keeps its own.
		if err := dropBoundingSet(); err != nil {
			return fail(exitSetup, "%v", err)
		}
	}
	if cfg.probe {
		if cfg.asUser != nil {
			// Prove the nested namespace works too, or this setup is no good.
			pid, err := syscall.ForkExec("/proc/self/exe", []string{"true", InitArg, "--usage-probe"}, &syscall.ProcAttr{Sys: engineAttr})
			if err != nil {
				return fail(exitSetup, "nested user namespace: %v", err)
			}
			var ws unix.WaitStatus
			for {
				if _, err := unix.Wait4(pid, &ws, 0, nil); err != unix.EINTR {
					break
				}
			}
		}
		fmt.Fprintln(os.Stdout, probeToken)
		return 0
	}

	pid, code, msg := startEngine(cfg, engineAttr, netns)
	if code != 0 {
		return fail(code, "%s", msg)
	}
	report(statusStartOK)

	killAll := func(sig unix.Signal) {
		if cfg.ns {
			_ = unix.Kill(-1, sig) // PID 1: every other process of the namespace, nothing else
			return
		}
		signalDescendants(os.Getpid(), sig)
	}
	go func() {
		for s := range sigs {
			if s == unix.SIGHUP && cfg.subreaper && os.Getppid() != origParent {
				// Our Pdeathsig: the gateway is gone and nobody will ever SIGKILL us.
				killDescendants(os.Getpid())
				continue
			}
			killAll(unix.SIGTERM)
		}
	}()

	var ws unix.WaitStatus
	for {
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// ECHILD cannot happen while the engine is ours; be safe rather than spin.
			return fail(exitSetup, "wait: %v", err)
		}
		if wpid == pid {
			break
		}
	}
	engine := ws

	// The engine is gone: nothing of the task may outlive it.
	delay := 100 * time.Microsecond
	for {
		killAll(unix.SIGKILL)
		var w unix.WaitStatus
		for {
			wpid, err := unix.Wait4(-1, &w, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err == unix.ECHILD {
				return exitWith(engine, report)
			}
			if err != nil || wpid == 0 {
				break
			}
		}
		time.Sleep(delay)
		delay = min(2*delay, 10*time.Millisecond)
	}
}

// maskSocketDirs puts an empty tmpfs over the directories where hosts keep UNIX sockets, in
// the task's mount namespace: before Landlock ABI 9 nothing else keeps an engine from
// connecting to a socket it can name. /run always (PostgreSQL's, Docker's, systemd's, D-Bus);
// /tmp, /var/tmp and /dev/shm too when the Landlock policy grants nothing beneath them (the
// engine's own TMPDIR is in its task directory).
func maskSocketDirs(cfg initConfig) error {
	dirs := []string{"/run", "/var/run"}
	if cfg.landlock != "" {
		for _, d := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
			if !grantsBeneath(cfg, d) {
				dirs = append(dirs, d)
			}
		}
	}
	for _, d := range dirs {
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() {
			continue // absent, or a link (/var/run -> /run) masked with its target
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=64k,mode=0755"); err != nil {
			return fmt.Errorf("mask %s: %w", d, err)
		}
	}
	return nil
}

// grantsBeneath reports whether the policy grants dir itself or a path beneath it.
func grantsBeneath(cfg initConfig, dir string) bool {
	for _, p := range append(slices.Clip(cfg.ro), cfg.rw...) {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

// relay starts the --ns init in a new user and PID namespace and stands between it and the
// gateway. It exists because a gateway that is not root must map its ids into the new user
// namespace through /proc/<child>/uid_map, which a non-dumpable gateway (MakeNonDumpable)
// cannot open: the relay is a fresh, dumpable exec and can. It reports the init's pid so the
// gateway can SIGKILL the namespace directly, and exits only after the init is reaped, that is
// after the kernel has killed everything in the namespace.
func relay(cfg initConfig, sigs chan os.Signal, report func(string), fail func(int, string, ...any) int) int {
	exe, err := os.Executable()
	if err != nil {
		return fail(exitSetup, "relay: %v", err)
	}
	args := []string{exe, InitArg, "--ns"}
	files := []uintptr{0, 1, 2}
	uid, gid := os.Getuid(), os.Getgid()
	inner := [2]int{uid, gid} // our ids as seen inside the new user namespace
	if cfg.mountProc {
		// Mounting /proc needs capabilities in the new namespace, which only its root
		// has: map us to root there; the init starts the engine as us again (--as-user).
		inner = [2]int{0, 0}
		args = append(args, "--mount-proc", "--as-user", fmt.Sprintf("%d:%d", uid, gid))
	}
	if cfg.probe {
		args = append(args, "--probe")
	}
	args = append(args, cfg.policyArgs...)
	if cfg.statusFD > 0 {
		args = append(args, "--status-fd", "3")
		files = append(files, uintptr(cfg.statusFD))
	}
	if !cfg.probe {
		args = append(args, "--")
		args = append(args, cfg.path)
		args = append(args, cfg.args...)
	}
	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWPID)
	if cfg.mountProc {
		flags |= unix.CLONE_NEWNS
	}
	pid, err := syscall.ForkExec(exe, args, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: files,
		Sys: &syscall.SysProcAttr{
			Cloneflags:  flags,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: inner[0], HostID: uid, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: inner[1], HostID: gid, Size: 1}},
			Pdeathsig:   syscall.SIGKILL, // our death takes the namespace down
		},
	})
	if err != nil {
		return fail(exitSetup, "start namespace init: %v", err)
	}
	report(statusInitPid + strconv.Itoa(pid))
	// Only now: the uid_map above had to be written while we were dumpable.
	_ = MakeNonDumpable()
	go func() {
		for range sigs {
			_ = unix.Kill(pid, unix.SIGTERM) // our unreaped child: the pid cannot be recycled
		}
	}()
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err != unix.EINTR {
			break
		}
	}
	if ws.Signaled() {
		// The init was killed and wrote nothing; its last words are ours to say.
		return exitWith(ws, report)
	}
	return ws.ExitStatus()
}

// startEngine forks the engine from this (locked) thread or, with a Landlock policy or a
// seccomp filter to apply, from a confined thread (startConfined) or through the --exec stage.
// It returns the engine's pid, or an exit code and a message when the engine could not be
// started.
func startEngine(cfg initConfig, attr *syscall.SysProcAttr, netns *os.File) (pid, code int, msg string) {
	argv := append([]string{cfg.path}, cfg.args...)
	if cfg.landlock == "" && !cfg.seccomp {
		pid, err := syscall.ForkExec(cfg.path, argv, &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}, Sys: attr})
		if err != nil {
			return 0, exitExecFails, fmt.Sprintf("start engine: %v", err)
		}
		return pid, 0, ""
	}
	if cfg.ns && cfg.asUser == nil {
		return startConfined(cfg, argv, attr, netns)
	}
	// Outside a PID namespace of its own (--subreaper), or in a nested user namespace
	// (--as-user, which the seccomp filter would refuse to create): the child execs this binary
	// again (--exec), restricts itself and execs the engine, so the engine and every descendant
	// inherit the domain while this init stays unrestricted (it must read /proc, signal and
	// reap). The stage reports a
	// failure on a close-on-exec pipe: EOF without a word means the engine was exec'd.
	r, w, err := os.Pipe()
	if err != nil {
		return 0, exitSetup, fmt.Sprintf("stage pipe: %v", err)
	}
	stage := append([]string{os.Args[0], InitArg, "--exec"}, cfg.policyArgs...)
	stage = append(append(stage, "--"), argv...)
	// /proc/self/exe, not a path: it names this very binary even if the file was replaced,
	// and an engine user (engine.run_as) needs no search permission on its directory.
	pid, err = syscall.ForkExec("/proc/self/exe", stage, &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2, w.Fd()}, Sys: attr})
	w.Close()
	if err != nil {
		r.Close()
		return 0, exitExecFails, fmt.Sprintf("start engine stage: %v", err)
	}
	out, _ := io.ReadAll(io.LimitReader(r, maxStatus))
	r.Close()
	if len(out) == 0 {
		return pid, 0, ""
	}
	var ws unix.WaitStatus
	for {
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != unix.EINTR {
			break
		}
	}
	code = exitExecFails
	if ws.Exited() && ws.ExitStatus() == exitSetup {
		code = exitSetup
	}
	return 0, code, strings.Join(strings.Fields(string(out)), " ")
}

// startConfined forks the engine from a thread of its own that first takes on everything
// the engine must inherit and then ends, so that no thread of this init stays in the
// engine's Landlock domain (a process in the domain may signal processes in it, and a
// process-directed signal is checked against the thread-group leader, this init's main
// thread) while the engine starts without a second Go process (the --exec stage: ≈ 3.5 ms of
// CPU a task, issue 21). Landlock domains, seccomp filters, no_new_privs, the capability
// bounding set, the nice value and the network namespace all belong to a thread and pass to
// the child it forks. The new thread comes from the runtime's template thread, made before
// this init set any of them on its main thread, so it sets them all again. Only with --ns:
// the engine gets no parent-death signal (it would fire when this thread ends); the PID
// namespace kills it with its init instead.
func startConfined(cfg initConfig, argv []string, attr *syscall.SysProcAttr, netns *os.File) (pid, code int, msg string) {
	type started struct {
		pid, code, tid int
		msg            string
	}
	res := make(chan started, 1)
	go func() {
		// Never unlocked: the runtime ends a thread whose goroutine exits locked to it.
		runtime.LockOSThread()
		fail := func(code int, format string, a ...any) started {
			return started{code: code, msg: fmt.Sprintf(format, a...)}
		}
		res <- func() started {
			if unix.Gettid() == unix.Getpid() {
				// Never the leader (see init): its confinement would cover the whole init.
				return fail(exitSetup, "confined start on the thread-group leader")
			}
			if netns != nil {
				if err := unix.Setns(int(netns.Fd()), unix.CLONE_NEWNET); err != nil {
					return fail(exitSetup, "network namespace: setns: %v", err)
				}
			}
			if cfg.nice > 0 {
				if err := unix.Setpriority(unix.PRIO_PROCESS, 0, cfg.nice); err != nil {
					return fail(exitSetup, "setpriority(%d): %v", cfg.nice, err)
				}
			}
			if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
				return fail(exitSetup, "prctl(PR_SET_NO_NEW_PRIVS): %v", err)
			}
			if msg := confineThread(cfg); msg != "" {
				return fail(exitSetup, "%s", msg)
			}
			a := *attr
			a.Pdeathsig = 0
			pid, err := syscall.ForkExec(cfg.path, argv, &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}, Sys: &a})
			if err != nil {
				return fail(exitExecFails, "start engine: %v", err)
			}
			return started{pid: pid, tid: unix.Gettid()}
		}()
	}()
	s := <-res
	if s.code != 0 {
		return s.pid, s.code, s.msg
	}
	// The thread ends right after it hands over the result, but not before: until it is gone
	// it shares the engine's domain, and a thread-directed signal from the engine would be
	// checked against it. Report the start only once it is.
	if err := waitThreadGone(s.tid, 2*time.Second); err != nil {
		_ = unix.Kill(s.pid, unix.SIGKILL)
		return 0, exitSetup, err.Error()
	}
	return s.pid, 0, ""
}

// waitThreadGone waits until thread tid of this process has ended. Threads other than the
// leader are released as soon as they exit, so tgkill's existence check (signal 0) says
// ESRCH from then on; a tid reused meanwhile by another process does not match our tgid.
func waitThreadGone(tid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	pause := 10 * time.Microsecond
	for {
		err := unix.Tgkill(unix.Getpid(), tid, 0)
		if err == unix.ESRCH {
			return nil
		}
		if err != nil {
			return fmt.Errorf("confined thread %d: %w", tid, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("confined thread %d did not end within %s", tid, limit)
		}
		time.Sleep(pause)
		if pause < time.Millisecond {
			pause *= 2
		}
	}
}

// dropBoundingSet empties the calling thread's capability bounding set and ambient set.
func dropBoundingSet() error {
	for c := 0; c < 64; c++ {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err == unix.EINVAL {
			break // past the kernel's last capability
		}
		if err != nil || in == 0 {
			continue // already gone (dropping it again would need CAP_SETPCAP)
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_CAPBSET_DROP, %d): %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("prctl(PR_CAP_AMBIENT_CLEAR_ALL): %w", err)
	}
	return nil
}

func exitWith(ws unix.WaitStatus, report func(string)) int {
	if ws.Signaled() {
		report(statusSignal + strconv.Itoa(int(ws.Signal())))
		return 128 + int(ws.Signal())
	}
	report(statusExit + strconv.Itoa(ws.ExitStatus()))
	return ws.ExitStatus()
}
