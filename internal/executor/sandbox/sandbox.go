package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnavailable is returned by New when Mode is PIDNS and PID namespaces are refused.
var ErrUnavailable = errors.New("sandbox: pid namespaces unavailable")

const (
	probeTimeout = 10 * time.Second
	startTimeout = 30 * time.Second
	maxStatus    = 4096
)

// Options configures New.
type Options struct {
	Mode     Mode   // Auto (default), PIDNS or PGroup
	InitPath string // absolute path of a binary whose "sandbox-init" subcommand runs InitMain
	Policy   Policy // Landlock and the engines' user; the zero Policy applies neither
	Logger   *slog.Logger
}

// Sandbox starts engine process trees in the mode chosen at New. Safe for concurrent use.
//
// PIDNS: the init is PID 1 of a new PID namespace (and, where possible, of a mount namespace
// with a private /proc, so an engine sees only its own task). Processes of the namespace cannot
// kill their init, and when the init dies for any reason, including the gateway's death
// (Pdeathsig), the kernel kills every process of the namespace. A gateway without
// CAP_SYS_ADMIN gets the same through a user namespace, started by a relay process (see
// InitMain) because a non-dumpable gateway cannot write a child's uid_map itself.
//
// PGroup (fallback): the supervisor is a child subreaper, so orphans and setsid'd processes
// stay in its tree; it and the gateway signal that tree and the process group. A descendant
// escapes only if the supervisor dies before it (an engine can SIGKILL its own supervisor: same
// user) after it was re-parented away or left the group. Engines see the host's /proc. With
// Landlock (ABI 6) an engine can signal nothing outside its task and is granted no /proc.
//
// Policy (both modes): with Landlock the engine's process restricts itself just before it
// execs the engine (see stageMain), so the engine and all its descendants are confined while
// the init is not. With RunAs the engine runs as that user and group, without supplementary
// groups; an engine that stays root gets an empty capability bounding set.
type Sandbox struct {
	mode     Mode
	initPath string
	setup    candidate
	policy   Policy
	abi      int // Landlock ABI applied to engines; 0 = none
	netns    bool
}

// candidate is one way of starting the init.
type candidate struct {
	name      string
	flags     uintptr // clone flags for a direct --ns init; 0 with relay or subreaper
	relay     bool    // the init is started by a relay in a new user+PID namespace
	mountProc bool
}

// New validates opts and, unless Mode is PGroup, probes once which PID namespace setup the
// kernel allows by starting InitPath in it. It logs a warning when it falls back to PGroup or
// cannot give engines a private /proc.
func New(opts Options) (*Sandbox, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mode, err := ParseMode(string(opts.Mode))
	if err != nil {
		return nil, err
	}
	if err := checkInit(opts.InitPath); err != nil {
		return nil, err
	}
	s := &Sandbox{initPath: opts.InitPath}
	if err := s.setPolicy(opts.Policy, log); err != nil {
		return nil, err
	}
	var probeErrs []error
	if mode != PGroup {
		for _, c := range candidates() {
			if c.relay && s.policy.RunAs != nil {
				probeErrs = append(probeErrs, fmt.Errorf("%s: cannot run engines as %s (the namespace maps only the gateway's user)", c.name, s.policy.RunAs))
				continue
			}
			err := s.probe(c)
			if err == nil {
				s.mode, s.setup = PIDNS, c
				break
			}
			probeErrs = append(probeErrs, fmt.Errorf("%s: %w", c.name, err))
		}
		if s.mode == PIDNS {
			switch {
			case !s.setup.mountProc && s.abi > 0:
				log.Warn("sandbox: engines run in a PID namespace without a private /proc (could not mount one); Landlock grants them no /proc at all",
					"probe_errors", joinErrs(probeErrs))
			case !s.setup.mountProc:
				log.Warn("sandbox: engines run in a PID namespace but see the host's /proc (could not mount a private one): an engine can list other processes and read the environment of other engines running as the same user",
					"probe_errors", joinErrs(probeErrs))
			default:
				log.Info("sandbox: engines run in their own PID and mount namespace with a private /proc", "user_namespace", s.setup.relay)
			}
			if s.policy.NetNS {
				if err := s.probe(s.setup, "--netns", "0"); err != nil {
					log.Warn("sandbox: engines share the gateway's network namespace (a namespace of their own was refused): seccomp and Landlock still confine their sockets, but an engine can connect to any host on its egress proxy's port number", "err", err)
				} else {
					s.netns = true
					log.Info("sandbox: engines run in a network namespace of their own (loopback only; the egress proxy is their way out)")
				}
			}
			if err := s.checkStart(); err != nil {
				return nil, err
			}
			return s, nil
		}
		if mode == PIDNS {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(probeErrs...))
		}
	}
	pg := candidate{name: "pgroup"}
	if err := s.probe(pg); err != nil {
		return nil, fmt.Errorf("sandbox: init %s does not work: %w", opts.InitPath, err)
	}
	s.mode, s.setup = PGroup, pg
	if err := s.checkStart(); err != nil {
		return nil, err
	}
	hole := "a descendant that kills its supervisor and was re-parented away can survive its task, and engines see the host's /proc (other engines' environment included when they run as the same user)"
	if s.abi >= abiScope {
		hole = "Landlock keeps engines from signalling their supervisor and grants them no /proc, but should the supervisor die anyway (out of memory), a descendant re-parented away would survive its task"
	}
	if mode == Auto {
		log.Warn("sandbox: PID namespaces unavailable, falling back to process groups: "+hole, "probe_errors", joinErrs(probeErrs))
	} else {
		log.Warn("sandbox: process-group mode configured: " + hole)
	}
	return s, nil
}

// setPolicy validates p, checks what the kernel can enforce and logs what engines get.
func (s *Sandbox) setPolicy(p Policy, log *slog.Logger) error {
	ll, err := ParseLandlockMode(string(p.Landlock), LandlockOff)
	if err != nil {
		return err
	}
	p.Landlock = ll
	if err := checkPolicyPaths("read paths", p.ReadPaths); err != nil {
		return err
	}
	if err := checkPolicyPaths("write paths", p.WritePaths); err != nil {
		return err
	}
	if len(p.ConnectPorts) > maxPolicyPorts {
		return fmt.Errorf("sandbox: %d connect ports, at most %d", len(p.ConnectPorts), maxPolicyPorts)
	}
	for _, port := range p.ConnectPorts {
		if port == 0 {
			return errors.New("sandbox: connect port 0")
		}
	}
	if p.Nice < 0 || p.Nice > MaxNice {
		return fmt.Errorf("sandbox: nice %d: want 0 to %d", p.Nice, MaxNice)
	}
	if p.RunAs != nil {
		if p.RunAs.UID <= 0 || p.RunAs.GID <= 0 {
			return fmt.Errorf("sandbox: engines must not run as root (%s)", p.RunAs)
		}
		if os.Geteuid() != 0 {
			return fmt.Errorf("sandbox: running engines as %s needs a gateway running as root (it runs as uid %d)", p.RunAs, os.Geteuid())
		}
	}
	s.policy = p
	if ll == LandlockOff {
		log.Warn("sandbox: Landlock is off: engines can read and connect to whatever their user can")
		return nil
	}
	abi, abiErr := landlockABI()
	switch {
	case abi == 0 && ll == LandlockRequired:
		return fmt.Errorf("%w: %w", ErrLandlockUnavailable, abiErr)
	case abi < abiNet && ll == LandlockRequired:
		return fmt.Errorf("%w: Landlock ABI %d cannot restrict TCP connections (needs ABI %d, Linux 6.7)", ErrLandlockUnavailable, abi, abiNet)
	case abi == 0:
		log.Warn("sandbox: Landlock unavailable: engines can read and connect to whatever their user can (set engine.landlock: required to refuse to start instead)", "err", abiErr)
		return nil
	}
	s.abi = min(abi, maxABI)
	log.Info("sandbox: engines are confined with Landlock", "landlock_abi", abi, "applied_abi", s.abi,
		"read_paths", len(p.ReadPaths), "write_paths", len(p.WritePaths), "tcp_connect_ports", p.ConnectPorts)
	if gaps := landlockGaps(s.abi); len(gaps) > 0 {
		log.Warn("sandbox: this kernel's Landlock leaves gaps", "landlock_abi", abi, "gaps", strings.Join(gaps, "; "))
	}
	return nil
}

// LandlockABI is the Landlock ABI applied to engines, 0 when they are not confined.
func (s *Sandbox) LandlockABI() int { return s.abi }

// checkStart starts one engine (the init binary, which exits at once) through the whole start
// path when a policy applies, so a policy the kernel refuses, or an engine user that cannot
// start the binary, stops the gateway at start rather than failing every task.
func (s *Sandbox) checkStart() error {
	if s.abi == 0 && s.policy.RunAs == nil {
		return nil
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	p, err := s.Start(Command{Path: s.initPath, Args: []string{InitArg, "--start-check"}, Env: []string{},
		Dir: "/", ReadPaths: []string{s.initPath}, Stdout: devnull, Stderr: devnull})
	if err != nil {
		return fmt.Errorf("sandbox: engines cannot be started with this policy: %w", err)
	}
	_, err = p.Wait()
	return err
}

func joinErrs(errs []error) string {
	if err := errors.Join(errs...); err != nil {
		return err.Error()
	}
	return ""
}

// candidates in order of preference. Direct namespaces need CAP_SYS_ADMIN; the relayed ones
// work for an unprivileged gateway where the kernel allows unprivileged user namespaces. A
// private /proc fails where /proc is partly masked (as in most containers).
func candidates() []candidate {
	const pid, mnt = unix.CLONE_NEWPID, unix.CLONE_NEWNS
	return []candidate{
		{name: "pid+mount namespace", flags: pid | mnt, mountProc: true},
		{name: "user+pid+mount namespace", relay: true, mountProc: true},
		{name: "pid namespace", flags: pid},
		{name: "user+pid namespace", relay: true},
	}
}

func checkInit(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("sandbox: init path %q is not absolute", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("sandbox: init path: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("sandbox: init path %s is not an executable file", path)
	}
	return nil
}

// Mode is the mode in use (never Auto).
func (s *Sandbox) Mode() Mode { return s.mode }

// PrivateProc reports whether engines get a /proc showing only their own namespace.
func (s *Sandbox) PrivateProc() bool { return s.setup.mountProc }

// UserNamespace reports whether engines run in a user namespace (unprivileged gateway).
func (s *Sandbox) UserNamespace() bool { return s.setup.relay }

// NetworkNamespace reports whether engines get a network namespace of their own.
func (s *Sandbox) NetworkNamespace() bool { return s.netns }

func (s *Sandbox) sysProcAttr(c candidate) *syscall.SysProcAttr {
	// Setpgid in every mode: a ^C on the gateway's terminal must not reach engines directly.
	attr := &syscall.SysProcAttr{Setpgid: true}
	switch {
	case c.flags != 0:
		attr.Cloneflags = c.flags
		attr.Pdeathsig = syscall.SIGKILL // the kernel then kills the whole namespace
	case c.relay:
		attr.Pdeathsig = syscall.SIGKILL // the relay's death SIGKILLs the init (its Pdeathsig)
	default:
		// PGroup: a catchable parent-death signal, so the supervisor can kill its tree first.
		attr.Pdeathsig = syscall.SIGHUP
	}
	return attr
}

func (s *Sandbox) initArgs(c candidate, extra ...string) []string {
	args := []string{s.initPath, InitArg}
	switch {
	case c.flags != 0:
		args = append(args, "--ns")
	case c.relay:
		args = append(args, "--relay")
	default:
		args = append(args, "--subreaper")
	}
	if c.mountProc {
		args = append(args, "--mount-proc")
	}
	return append(args, extra...)
}

func (s *Sandbox) probe(c candidate, extra ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		w.Close()
		return err
	}
	defer devnull.Close()
	type started struct {
		p   *os.Process
		err error
	}
	res := make(chan started, 1)
	done := make(chan *os.ProcessState, 1)
	go func() {
		runtime.LockOSThread() // Pdeathsig follows the forking thread
		defer runtime.UnlockOSThread()
		p, err := os.StartProcess(s.initPath, s.initArgs(c, append([]string{"--probe"}, extra...)...), &os.ProcAttr{
			Env:   []string{},
			Files: []*os.File{devnull, w, w},
			Sys:   s.sysProcAttr(c),
		})
		res <- started{p, err}
		if err != nil {
			return
		}
		st, _ := p.Wait()
		done <- st
	}()
	st := <-res
	w.Close()
	if st.err != nil {
		return st.err
	}
	var out []byte
	readDone := make(chan struct{})
	go func() {
		out, _ = io.ReadAll(io.LimitReader(r, maxStatus))
		close(readDone)
	}()
	var state *os.ProcessState
	select {
	case state = <-done:
	case <-ctx.Done():
		_ = st.p.Kill()
		state = <-done
	}
	<-readDone
	if state == nil || !state.Success() {
		return fmt.Errorf("init failed (%v): %s", state, strings.TrimSpace(string(out)))
	}
	if !strings.Contains(string(out), probeToken) {
		return fmt.Errorf("%s does not implement %q", s.initPath, InitArg)
	}
	return nil
}

// Command is one engine invocation.
type Command struct {
	Path   string   // absolute
	Args   []string // argv[1:]
	Env    []string // the complete environment; the init adds nothing
	Dir    string
	Stdout *os.File // write ends, owned by the caller (close them after Start)
	Stderr *os.File
	// ReadPaths and WritePaths extend the Policy for this engine (its working directory).
	ReadPaths, WritePaths []string
	// ConnectPorts extend the Policy's TCP ports for this engine.
	ConnectPorts []uint16
	// ProxyPort is this engine's egress proxy on 127.0.0.1; with a network namespace the
	// init relays the same port inside it. 0: none.
	ProxyPort int
	// Cgroups are control group directories the task joins before the engine starts.
	Cgroups []string
	// FileSizeMax is the engine's RLIMIT_FSIZE (0: unlimited).
	FileSizeMax int64
}

// Status is how the engine ended.
type Status struct {
	ExitCode int         // the engine's exit code, or 128+signal
	Signal   unix.Signal // non-zero if the engine (or, when it had to be killed, its init) died of a signal
}

// Process is a started task. Terminate and Kill may be called from any goroutine, any number
// of times, also after the process ended.
type Process struct {
	s      *Sandbox
	proc   *os.Process
	pid    int
	status *bufio.Reader
	statR  *os.File
	ready  chan struct{} // Start has set pid and initFD
	done   chan struct{}

	mu     sync.Mutex // guards reaped against group signals racing the reap
	reaped bool
	state  *os.ProcessState
	err    error

	initFD int // relay mode: pidfd of the namespace init (a grandchild), or -1

	waitOnce   sync.Once
	exitStatus Status
	waitErr    error
}

// openInit takes a pidfd on the relay's init. The pid is checked to be the relay's child after
// opening, so a recycled pid is never signalled.
func (p *Process) openInit(v string) {
	pid, err := strconv.Atoi(v)
	if err != nil || pid <= 1 {
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	if e, ok := readStat(pid, make([]byte, 512)); !ok || e.ppid != p.pid {
		unix.Close(fd)
		return
	}
	p.initFD = fd
}

// ErrStart wraps every failure to get the engine running.
var ErrStart = errors.New("sandbox: could not start engine")

// Start starts the init (or supervisor) and, through it, the engine. It returns once the
// engine has been exec'd, or an error wrapping ErrStart.
func (s *Sandbox) Start(cmd Command) (*Process, error) {
	if !filepath.IsAbs(cmd.Path) {
		return nil, fmt.Errorf("%w: engine path is not absolute", ErrStart)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	defer devnull.Close()
	statR, statW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	c := s.setup
	policy, err := s.policyArgs(cmd)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	args := s.initArgs(c, "--status-fd", "3")
	for _, d := range cmd.Cgroups {
		args = append(args, "--cgroup", d)
	}
	if cmd.FileSizeMax > 0 {
		args = append(args, "--fsize", strconv.FormatInt(cmd.FileSizeMax, 10))
	}
	args = append(args, policy...)
	args = append(args, "--", cmd.Path)
	args = append(args, cmd.Args...)
	env := cmd.Env
	if env == nil {
		env = []string{} // nil would mean "inherit the server's environment"
	}
	p := &Process{s: s, statR: statR, status: bufio.NewReaderSize(io.LimitReader(statR, maxStatus), 512), done: make(chan struct{}), ready: make(chan struct{}), initFD: -1}
	type started struct {
		proc *os.Process
		err  error
	}
	res := make(chan started, 1)
	go func() {
		// Pdeathsig fires when the forking thread exits, not the process (go.dev/issue/27505):
		// keep this goroutine on its thread until the init is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		proc, err := os.StartProcess(s.initPath, args, &os.ProcAttr{
			Dir:   cmd.Dir,
			Env:   env,
			Files: []*os.File{devnull, cmd.Stdout, cmd.Stderr, statW},
			Sys:   s.sysProcAttr(c),
		})
		res <- started{proc, err}
		if err != nil {
			return
		}
		<-p.ready
		p.wait(proc)
	}()
	st := <-res
	statW.Close()
	if st.err != nil {
		statR.Close()
		return nil, fmt.Errorf("%w: %w", ErrStart, st.err)
	}
	p.proc, p.pid = st.proc, st.proc.Pid

	_ = statR.SetReadDeadline(time.Now().Add(startTimeout))
	line, rerr := p.status.ReadString('\n')
	line = strings.TrimSuffix(line, "\n")
	if v, ok := strings.CutPrefix(line, statusInitPid); ok && c.relay {
		p.openInit(v)
		line, rerr = p.status.ReadString('\n')
		line = strings.TrimSuffix(line, "\n")
	}
	_ = statR.SetReadDeadline(time.Time{})
	close(p.ready)
	if line != statusStartOK {
		p.Kill()
		_, _ = p.Wait()
		msg := strings.TrimPrefix(line, statusStartErr)
		if msg == "" && rerr != nil {
			msg = fmt.Sprintf("init reported nothing: %v", rerr)
		}
		return nil, fmt.Errorf("%w: %s", ErrStart, msg)
	}
	return p, nil
}

// policyArgs are the init's arguments for the policy and cmd's own paths.
func (s *Sandbox) policyArgs(cmd Command) ([]string, error) {
	var args []string
	if s.policy.RunAs != nil {
		args = append(args, "--run-as", s.policy.RunAs.String())
	}
	if s.policy.Nice > 0 {
		args = append(args, "--nice", strconv.Itoa(s.policy.Nice))
	}
	if s.netns {
		args = append(args, "--netns", strconv.Itoa(cmd.ProxyPort))
	}
	switch {
	case s.policy.Seccomp && (s.policy.SeccompUDP || s.netns):
		// In a namespace of its own UDP reaches nothing but the engine's loopback.
		args = append(args, "--seccomp-udp")
	case s.policy.Seccomp:
		args = append(args, "--seccomp")
	}
	if s.abi == 0 {
		return args, nil
	}
	if err := checkPolicyPaths("read paths", cmd.ReadPaths); err != nil {
		return nil, err
	}
	if err := checkPolicyPaths("write paths", cmd.WritePaths); err != nil {
		return nil, err
	}
	args = append(args, "--landlock", string(s.policy.Landlock))
	ro := append(slices.Clip(s.policy.ReadPaths), cmd.ReadPaths...)
	if s.setup.mountProc {
		// Only a private /proc: the host's shows every task's command line (the objective).
		ro = append(ro, "/proc")
	}
	for _, p := range ro {
		args = append(args, "--ro", p)
	}
	for _, p := range append(slices.Clip(s.policy.WritePaths), cmd.WritePaths...) {
		args = append(args, "--rw", p)
	}
	if len(s.policy.ConnectPorts)+len(cmd.ConnectPorts) > maxPolicyPorts {
		return nil, fmt.Errorf("%d connect ports, at most %d", len(s.policy.ConnectPorts)+len(cmd.ConnectPorts), maxPolicyPorts)
	}
	for _, port := range append(slices.Clip(s.policy.ConnectPorts), cmd.ConnectPorts...) {
		if port == 0 {
			return nil, errors.New("connect port 0")
		}
		args = append(args, "--tcp", strconv.Itoa(int(port)))
	}
	return args, nil
}

// wait runs on the locked thread that started the init.
func (p *Process) wait(proc *os.Process) {
	defer close(p.done)
	defer p.waitInit()
	if p.s.mode == PGroup {
		// Wait for the exit without reaping, so the supervisor's pid, and with it the process
		// group id, cannot be recycled while the group is swept.
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, proc.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if err != unix.EINTR {
				break
			}
		}
		p.mu.Lock()
		killDescendants(proc.Pid)
		_ = unix.Kill(-proc.Pid, unix.SIGKILL)
		p.reaped = true
		p.mu.Unlock()
	}
	state, err := proc.Wait()
	p.mu.Lock()
	p.reaped = true
	p.state, p.err = state, err
	p.mu.Unlock()
}

// waitInit (relay mode) waits until the namespace init has exited. The relay normally reaps it
// before exiting, but if the relay was killed the init dies asynchronously (Pdeathsig), and the
// pidfd turns readable only once the kernel has killed the rest of its namespace.
func (p *Process) waitInit() {
	if p.initFD < 0 {
		return
	}
	fds := []unix.PollFd{{Fd: int32(p.initFD), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != unix.EINTR {
			break
		}
	}
}

// Pid is the host pid of the init (PIDNS), relay (PIDNS in a user namespace) or supervisor
// (PGroup).
func (p *Process) Pid() int { return p.pid }

// Done is closed when the init and, with it, every process of the task is gone.
func (p *Process) Done() <-chan struct{} { return p.done }

// Terminate asks every process of the task to exit (SIGTERM): the init forwards it with
// kill(-1) in its namespace, the PGroup supervisor to its whole tree.
func (p *Process) Terminate() {
	_ = p.proc.Signal(unix.SIGTERM) // a relay forwards it to its init
}

// Kill SIGKILLs every process of the task. In PIDNS mode killing the init is enough: the
// kernel kills the rest of the namespace before the init can be reaped. In PGroup mode the
// tree below the supervisor is killed first (while the supervisor still holds the orphans),
// then the process group.
func (p *Process) Kill() {
	if p.s.mode == PIDNS {
		if p.initFD >= 0 {
			// The init first, so the relay can still reap it and report the status.
			_ = unix.PidfdSendSignal(p.initFD, unix.SIGKILL, nil, 0)
			return
		}
		_ = p.proc.Kill()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return
	}
	killDescendants(p.pid)
	_ = unix.Kill(-p.pid, unix.SIGKILL)
}

// Wait waits for Done and returns the engine's status. Later calls return the same.
func (p *Process) Wait() (Status, error) {
	p.waitOnce.Do(func() { p.exitStatus, p.waitErr = p.result() })
	return p.exitStatus, p.waitErr
}

func (p *Process) result() (Status, error) {
	<-p.done
	defer p.statR.Close()
	if p.initFD >= 0 {
		defer unix.Close(p.initFD)
	}
	p.mu.Lock()
	state, err := p.state, p.err
	p.mu.Unlock()
	if err != nil {
		return Status{}, fmt.Errorf("sandbox: wait: %w", err)
	}
	ws, _ := state.Sys().(syscall.WaitStatus)
	if !ws.Signaled() {
		// The init reports the engine's own status as its last line, written after every
		// other process of the task is gone; the exit code alone cannot tell "exit 143" from
		// SIGTERM. When the init itself was killed there is no such line (and anything on
		// the pipe may come from elsewhere): its own wait status is the answer.
		_ = p.statR.SetReadDeadline(time.Now().Add(time.Second))
		rest, _ := io.ReadAll(p.status)
		lines := strings.Split(strings.TrimSpace(string(rest)), "\n")
		last := lines[len(lines)-1]
		if v, ok := strings.CutPrefix(last, statusExit); ok {
			if n, err := strconv.Atoi(v); err == nil && n == ws.ExitStatus() {
				return Status{ExitCode: n}, nil
			}
		}
		if v, ok := strings.CutPrefix(last, statusSignal); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 65 && 128+n == ws.ExitStatus() {
				return Status{ExitCode: 128 + n, Signal: unix.Signal(n)}, nil
			}
		}
	}
	if ws.Signaled() {
		return Status{ExitCode: 128 + int(ws.Signal()), Signal: unix.Signal(ws.Signal())}, nil
	}
	return Status{ExitCode: ws.ExitStatus()}, nil
}
