package executor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowgate/flowgate/internal/egress"
	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/executor/cgroup"
	"github.com/flowgate/flowgate/internal/executor/sandbox"
)

// Defaults and bounds of Options.
const (
	DefaultKillGrace      = 5 * time.Second
	DefaultMaxLineBytes   = 1 << 20
	DefaultMaxOutputBytes = 64 << 20
	// DefaultPath is the engine's PATH, after the engine binary's own directory. The server's
	// PATH is not used: it is whatever the service manager or a developer shell happened to
	// have, and PATH decides which binary an engine runs for "node", "git" or "sh".
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	DefaultLang = "C.UTF-8"
	DefaultTZ   = "UTC"

	maxKillGrace    = 10 * time.Minute
	maxLineBytes    = 64 << 20
	minLineBytes    = 64
	maxPassEnv      = 64
	maxEnvValue     = 32 << 10
	minDrainTimeout = 2 * time.Second
)

// ErrStart wraps every error of Run that means the engine never ran: the caller reports it as a
// failure to start, distinct from a run that ended badly.
var ErrStart = errors.New("executor: could not start engine")

var (
	// At most 128 bytes each, checked apart: a bounded repetition compiles to one state per
	// repetition, a cost every process linking this package (the sandbox init too) pays.
	taskIDRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Options configures New.
type Options struct {
	Profile        *engine.Profile
	WorkdirRoot    string        // engine.workdir_root; each task gets WorkdirRoot/<taskID>, mode 0700, removed after the run
	KillGrace      time.Duration // engine.kill_grace: SIGTERM to all, SIGKILL after this (default 5s)
	MaxLineBytes   int           // engine.max_line_bytes (default 1 MiB)
	MaxOutputBytes int64         // engine.max_output_bytes: stdout+stderr per task (default 64 MiB); exceeding kills the task
	PassEnv        []string      // engine.env: extra variable NAMES copied from Getenv at New
	Getenv         func(string) string
	Sandbox        sandbox.Mode // auto | pidns | pgroup
	InitPath       string       // the flowgate binary, run as "sandbox-init" (os.Executable())

	// Landlock (engine.landlock, "" = auto) confines every engine to: read and execute in the
	// system directories (defaultReadPaths), the engine binary's directory and ReadPaths;
	// full access to its task directory (HOME, with TMPDIR=HOME/tmp) and WritePaths; a few
	// device files; the private /proc of its namespace when there is one; TCP connections to
	// ConnectPorts (nil = 443) only. No path in Protect (data_dir, key files) nor WorkdirRoot
	// (other tasks) is ever granted, even inside a granted directory.
	Landlock     sandbox.LandlockMode
	ReadPaths    []string // engine.read_paths
	WritePaths   []string // engine.write_paths
	ConnectPorts []int    // engine.connect_ports
	Protect      []string
	// RunAs (engine.run_as, "UID:GID") runs engines as that user without supplementary
	// groups; task directories are created owned by it. Needs a root gateway; 0 is refused.
	RunAs string
	// Nice (engine.nice, 0-19) is every engine's nice value; 0 leaves the gateway's.
	Nice int
	// Egress is the engines' only way out (engine.egress): each task gets its own proxy
	// listener, named in its HTTPS_PROXY and HTTP_PROXY, and may connect to nothing else but
	// ConnectPorts. In a network namespace of its own (NetNS, where the kernel allows it) the
	// task reaches nothing else at all. nil: no proxy (tests of other parts).
	Egress *egress.Proxy
	NetNS  bool
	// Resource limits of each engine (engine.memory_max, engine.pids_max,
	// engine.workdir_max_bytes; 0 = none). Memory and processes are enforced by a control
	// group per task where Cgroups is set; the disk allowance by RLIMIT_FSIZE per file and
	// by watching the task directory's total.
	MemoryMax, PidsMax, WorkdirMax int64
	Cgroups                        *cgroup.Manager
	// MaxStarting (engine.max_starting) is how many engines may be starting at once: from
	// the task's setup (directory, control groups, sandbox) until the engine's first line of
	// output, its exit, or startHold (2 s). 0: no limit. See startGate.
	MaxStarting int

	Logger *slog.Logger
}

// Executor runs engine processes. It is safe for concurrent use; it owns no goroutine between
// calls to Run.
type Executor struct {
	profile  *engine.Profile
	sb       *sandbox.Sandbox
	runAs    *sandbox.IDs
	root     string
	grace    time.Duration
	maxLine  int
	maxOut   int64
	baseEnv  []string // PATH, LANG, TZ, profile variables, passed variables; HOME and the key are per task
	log      *slog.Logger
	drainMax time.Duration
	egress   *egress.Proxy
	cgroups  *cgroup.Manager
	limits   cgroup.Limits
	diskMax  int64
	starts   *startGate // counts the engines starting; bounds them with MaxStarting
}

// Spec is one task to run.
type Spec struct {
	TaskID  string // names the working directory: [A-Za-z0-9][A-Za-z0-9_.-]{0,127}
	Tenant  string // for logs only
	Request engine.Request
	APIKey  string // the tenant's key; only ever in the child's environment, redacted from its output
}

// Output receives the engine's output, one line at a time without its newline, already
// redacted and cut to MaxLineBytes (truncated=true). The slice is valid only during the call.
// Stdout and Stderr are called from two different goroutines, possibly at the same time; each
// of them is called sequentially. A slow Output slows the engine (its pipe fills up), it does
// not lose output; an Output that never returns keeps Run from returning, so it must not block
// on anything that waits for Run (queue or drop instead).
type Output interface {
	Stdout(line []byte, truncated bool)
	Stderr(line []byte, truncated bool)
}

// Result is how a run ended. ExitCode is the engine's; if it was killed by a signal, ExitCode is
// 128+signo and Signal its name ("SIGTERM"). Whether a kill was a cancel, a timeout or a
// shutdown is known to the caller (it cancelled ctx); OutputLimitExceeded says the executor
// killed the task itself for exceeding MaxOutputBytes.
type Result struct {
	ExitCode            int
	Signal              string
	OutputLimitExceeded bool
	StartedAt, EndedAt  time.Time
	// Egress is what the task sent and received through its proxy; nil without one.
	Egress *egress.Stats
	// LimitExceeded names the resource limit that ended the task: "memory", "process" or
	// "disk" ("" for none).
	LimitExceeded string
}

// Resource limit names of Result.LimitExceeded.
const (
	LimitMemory  = "memory"
	LimitProcess = "process"
	LimitDisk    = "disk"
)

// limitPoll is how often a running task's process count and disk use are checked.
const limitPoll = 250 * time.Millisecond

// New validates opts, resolves the environment and probes the sandbox once (a warning is
// logged when it falls back to process groups). Errors name the config key.
func New(opts Options) (*Executor, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Profile == nil {
		return nil, errors.New("executor: engine profile required")
	}
	e := &Executor{profile: opts.Profile, log: log, egress: opts.Egress, cgroups: opts.Cgroups,
		limits: cgroup.Limits{MemoryMax: max(opts.MemoryMax, 0), PidsMax: max(opts.PidsMax, 0)}, diskMax: max(opts.WorkdirMax, 0)}

	switch {
	case opts.KillGrace == 0:
		e.grace = DefaultKillGrace
	case opts.KillGrace < 0 || opts.KillGrace > maxKillGrace:
		return nil, fmt.Errorf("engine.kill_grace: %s not in (0, %s]", opts.KillGrace, maxKillGrace)
	default:
		e.grace = opts.KillGrace
	}
	e.drainMax = max(e.grace, minDrainTimeout)
	switch {
	case opts.MaxStarting < 0:
		return nil, fmt.Errorf("engine.max_starting: %d is negative", opts.MaxStarting)
	default:
		e.starts = newStartGate(opts.MaxStarting, startHold)
	}
	switch {
	case opts.MaxLineBytes == 0:
		e.maxLine = DefaultMaxLineBytes
	case opts.MaxLineBytes < minLineBytes || opts.MaxLineBytes > maxLineBytes:
		return nil, fmt.Errorf("engine.max_line_bytes: %d not in [%d, %d]", opts.MaxLineBytes, minLineBytes, maxLineBytes)
	default:
		e.maxLine = opts.MaxLineBytes
	}
	switch {
	case opts.MaxOutputBytes == 0:
		e.maxOut = DefaultMaxOutputBytes
	case opts.MaxOutputBytes < 0:
		return nil, fmt.Errorf("engine.max_output_bytes: %d is negative", opts.MaxOutputBytes)
	default:
		e.maxOut = opts.MaxOutputBytes
	}

	runAs, err := parseRunAs(opts.RunAs)
	if err != nil {
		return nil, err
	}
	e.runAs = runAs
	root, err := prepareRoot(opts.WorkdirRoot, runAs)
	if err != nil {
		return nil, err
	}
	e.root = root
	if fi, err := os.Stat(root); err == nil && fi.Mode().Perm()&0o022 != 0 {
		log.Warn("engine.workdir_root is writable by other users; task directories are 0700 but others can squat on task names", "path", root)
	}
	if runAs != nil {
		if err := checkReach(opts.Profile.Command(), *runAs, 0o1); err != nil {
			return nil, fmt.Errorf("engine.run_as: %s cannot execute engine.command: %w", runAs, err)
		}
	}
	policy, err := enginePolicy(opts, root, runAs, log)
	if err != nil {
		return nil, err
	}

	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	env, err := baseEnv(opts.Profile, opts.PassEnv, getenv)
	if err != nil {
		return nil, err
	}
	e.baseEnv = env

	sb, err := sandbox.New(sandbox.Options{Mode: opts.Sandbox, InitPath: opts.InitPath, Policy: policy, Logger: log})
	switch {
	case errors.Is(err, sandbox.ErrLandlockUnavailable):
		return nil, fmt.Errorf("engine.landlock: %w", err)
	case err != nil && runAs != nil:
		return nil, fmt.Errorf("engine.sandbox (with engine.run_as %s): %w", runAs, err)
	case err != nil:
		return nil, fmt.Errorf("engine.sandbox: %w", err)
	}
	e.sb = sb
	confined := sb.Mode() == sandbox.PIDNS && sb.LandlockABI() > 0
	switch {
	case opts.Profile.PermissionMode() == engine.PermissionBypass && !confined:
		return nil, fmt.Errorf("engine.permission_mode: bypassPermissions lets the engine run every tool unasked and is only allowed while the sandbox is in force (PID namespace and Landlock); this host runs sandbox %s with Landlock ABI %d", sb.Mode(), sb.LandlockABI())
	case opts.Profile.SkipsPermissions() && confined:
		// Claude Code refuses to skip permission prompts as root unless told that it is
		// sandboxed; it is, so a root gateway's engines work.
		e.baseEnv = append(e.baseEnv, "IS_SANDBOX=1")
	case opts.Profile.SkipsPermissions():
		log.Warn("the engine runs Claude Code without permission prompts but the sandbox is not in force: Claude Code refuses that as root, and such tasks fail",
			"profile", opts.Profile.Name(), "sandbox", sb.Mode(), "landlock_abi", sb.LandlockABI())
	}
	if runAs == nil && os.Geteuid() == 0 {
		// Landlock does not cover what a root uid keeps without capabilities: owning every
		// root file (chmod, chown of its own files, utimes) and connecting to root-only UNIX
		// sockets (systemd's, Docker's) before ABI 9.
		log.Warn("engines run as root, without capabilities: Landlock does not stop a root engine from changing the mode of root's files or, before Landlock ABI 9, from connecting to root-only UNIX sockets (systemd, Docker): set engine.run_as to an unprivileged UID:GID",
			"landlock_abi", sb.LandlockABI())
	}
	return e, nil
}

func prepareRoot(root string, runAs *sandbox.IDs) (string, error) {
	if root == "" || !filepath.IsAbs(root) {
		return "", fmt.Errorf("engine.workdir_root: %q is not an absolute path", root)
	}
	root = filepath.Clean(root)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", fmt.Errorf("engine.workdir_root: %w", err)
	}
	fi, err := os.Lstat(root)
	if err != nil {
		return "", fmt.Errorf("engine.workdir_root: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("engine.workdir_root: %s is not a directory", root)
	}
	if runAs != nil {
		// The engine's user must reach its own directory, but not list the others'.
		if err := os.Chmod(root, 0o711); err != nil {
			return "", fmt.Errorf("engine.workdir_root: %w", err)
		}
		if err := checkReach(root, *runAs, 0o1); err != nil {
			return "", fmt.Errorf("engine.workdir_root: engine.run_as %s cannot reach its task directories: %w; put engine.workdir_root outside data_dir (e.g. /var/lib/flowgate-tasks) or let others search the directory (chmod o+x)", runAs, err)
		}
	}
	return root, nil
}

func baseEnv(p *engine.Profile, pass []string, getenv func(string) string) ([]string, error) {
	profileEnv := p.Env()
	// The executor's own variables; engine.env may not override them.
	taken := map[string]bool{"PATH": true, "HOME": true, "TMPDIR": true, "LANG": true, "TZ": true, "ANTHROPIC_API_KEY": true, "IS_SANDBOX": true}
	for _, n := range proxyVars {
		taken[n] = true
	}
	for _, kv := range profileEnv {
		name, _, _ := strings.Cut(kv, "=")
		taken[name] = true
	}
	if len(pass) > maxPassEnv {
		return nil, fmt.Errorf("engine.env: %d names, at most %d", len(pass), maxPassEnv)
	}
	seen := map[string]bool{}
	var passed []string
	for i, name := range pass {
		switch {
		case len(name) > 128 || !envNameRe.MatchString(name):
			return nil, fmt.Errorf("engine.env[%d]: %q is not a variable name", i, name)
		case taken[name]:
			return nil, fmt.Errorf("engine.env[%d]: %s is set by flowgate and cannot be passed through", i, name)
		case seen[name]:
			return nil, fmt.Errorf("engine.env[%d]: %s listed twice", i, name)
		}
		// Server credentials never reach an engine, even if configured: flowgate's own
		// settings and the AWS credentials that can read every tenant's key.
		for _, pre := range []string{"FLOWGATE_", "AWS_"} {
			if strings.HasPrefix(name, pre) {
				return nil, fmt.Errorf("engine.env[%d]: %s: %s* variables hold server credentials and are never passed to engines", i, name, pre)
			}
		}
		seen[name] = true
		if v := getenv(name); v != "" && validEnvValue(v) {
			passed = append(passed, name+"="+v)
		}
	}

	// The engine's own directories first: a node-based engine installed under /opt/x/bin
	// finds its interpreter there (#!/usr/bin/env node), and claude-flow finds claude.
	env := []string{"PATH=" + p.Path(DefaultPath)}
	env = append(env, "LANG="+envOr(getenv, "LANG", DefaultLang), "TZ="+envOr(getenv, "TZ", DefaultTZ))
	env = append(env, profileEnv...)
	return append(env, passed...), nil
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" && len(v) <= 256 && validEnvValue(v) {
		return v
	}
	return def
}

func validEnvValue(v string) bool {
	return len(v) <= maxEnvValue && strings.IndexByte(v, 0) < 0
}

func groupDirs(g *cgroup.Group) []string {
	if g == nil {
		return nil
	}
	return g.Dirs()
}

// dirUsageAtLeast reports whether the files under dir take max bytes of disk or more (a file
// stopped by RLIMIT_FSIZE is exactly max long). It stops counting once there; a tree too large
// to walk counts as full.
func dirUsageAtLeast(dir string, max int64) bool {
	var used, entries int64
	over := errors.New("over")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished or unreadable: the engine's own business
		}
		if entries++; entries > maxWalkEntries {
			return over
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			used += st.Blocks * 512
		} else {
			used += info.Size()
		}
		if used >= max {
			return over
		}
		return nil
	})
	return err == over
}

// maxWalkEntries bounds one disk-usage walk of a task directory.
const maxWalkEntries = 200_000

// proxyVars name the egress proxy to the engine: both spellings, as tools read either.
// NO_PROXY is never set: nothing bypasses the proxy.
var proxyVars = []string{"HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"}

func proxyPort(s *egress.Session) int {
	if s == nil {
		return 0
	}
	return s.Port()
}

// NetworkNamespace reports whether engines get a network namespace of their own.
func (e *Executor) NetworkNamespace() bool { return e.sb.NetworkNamespace() }

// SandboxMode is the sandbox mode in use (pidns or pgroup, never auto).
func (e *Executor) SandboxMode() sandbox.Mode { return e.sb.Mode() }

// LandlockABI is the Landlock ABI engines are confined with, 0 when they are not.
func (e *Executor) LandlockABI() int { return e.sb.LandlockABI() }

// Run runs spec's engine to completion and returns only when the engine and every descendant
// are gone and both pipes are drained. Cancelling ctx (cancel, timeout, shutdown) sends SIGTERM
// to every process of the task and SIGKILL after KillGrace; exceeding MaxOutputBytes SIGKILLs
// them at once. The error is non-nil only if the engine could not be started; it then wraps
// ErrStart. Output is called from two goroutines (see Output).
func (e *Executor) Run(ctx context.Context, spec Spec, out Output) (Result, error) {
	if out == nil {
		return Result{}, fmt.Errorf("%w: no output", ErrStart)
	}
	if len(spec.TaskID) > 128 || !taskIDRe.MatchString(spec.TaskID) {
		return Result{}, fmt.Errorf("%w: invalid task id", ErrStart)
	}
	if strings.IndexByte(spec.APIKey, 0) >= 0 || len(spec.APIKey) > maxEnvValue {
		return Result{}, fmt.Errorf("%w: malformed api key", ErrStart)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrStart, err)
	}
	workdir := filepath.Join(e.root, spec.TaskID)
	argv, err := e.profile.Argv(spec.Request, workdir)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrStart, err)
	}
	// The start begins here: a task queued for a start slot holds no directory, descriptor,
	// proxy listener or control group, and setting them up counts as part of its start.
	endStart, err := e.starts.acquire(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrStart, err)
	}
	defer endStart()
	// Mkdir, not MkdirAll: an existing entry (a previous task, a planted symlink) is an error.
	if err := os.Mkdir(workdir, 0o700); err != nil {
		return Result{}, fmt.Errorf("%w: task directory: %w", ErrStart, err)
	}
	defer e.removeWorkdir(workdir, spec.TaskID)
	// TMPDIR is the engine's private temporary directory: with Landlock, /tmp is not its own.
	tmpdir := filepath.Join(workdir, "tmp")
	if err := ownTaskDir(workdir, e.runAs); err != nil {
		return Result{}, fmt.Errorf("%w: task directory: %w", ErrStart, err)
	}
	if err := os.Mkdir(tmpdir, 0o700); err != nil {
		return Result{}, fmt.Errorf("%w: task directory: %w", ErrStart, err)
	}
	if err := ownTaskDir(tmpdir, e.runAs); err != nil {
		return Result{}, fmt.Errorf("%w: task directory: %w", ErrStart, err)
	}

	env := make([]string, 0, len(e.baseEnv)+3+len(proxyVars))
	env = append(env, e.baseEnv[0], "HOME="+workdir, "TMPDIR="+tmpdir)
	env = append(env, e.baseEnv[1:]...)
	if spec.APIKey != "" {
		env = append(env, "ANTHROPIC_API_KEY="+spec.APIKey)
	}
	var proxy *egress.Session
	cmdPorts := []uint16(nil)
	if e.egress != nil {
		if proxy, err = e.egress.Open(spec.TaskID, spec.Tenant); err != nil {
			return Result{}, fmt.Errorf("%w: %w", ErrStart, err)
		}
		defer proxy.Close()
		url := "http://127.0.0.1:" + strconv.Itoa(proxy.Port())
		for _, n := range proxyVars {
			env = append(env, n+"="+url)
		}
		cmdPorts = []uint16{uint16(proxy.Port())}
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrStart, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return Result{}, fmt.Errorf("%w: %w", ErrStart, err)
	}
	var group *cgroup.Group
	if e.cgroups != nil && (e.limits.MemoryMax > 0 || e.limits.PidsMax > 0) {
		if group, err = e.cgroups.Create(spec.TaskID, e.limits); err != nil {
			outR.Close()
			outW.Close()
			errR.Close()
			errW.Close()
			return Result{}, fmt.Errorf("%w: %w", ErrStart, err)
		}
		defer group.Remove()
	}
	res := Result{StartedAt: time.Now()}
	proc, err := e.sb.Start(sandbox.Command{
		Path: e.profile.Command(), Args: argv, Env: env, Dir: workdir, Stdout: outW, Stderr: errW,
		WritePaths: []string{workdir}, ConnectPorts: cmdPorts, ProxyPort: proxyPort(proxy),
		Cgroups: groupDirs(group), FileSizeMax: e.diskMax,
	})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return Result{}, fmt.Errorf("%w: %w", ErrStart, err)
	}
	log := e.log.With("task", spec.TaskID, "tenant", spec.Tenant)
	log.Debug("engine started", "profile", e.profile.Name(), "pid", proc.Pid(), "sandbox", e.sb.Mode())

	red := NewRedactor(spec.APIKey)
	b := newBudget(e.maxOut)
	var wg sync.WaitGroup
	wg.Add(2)
	var spoke atomic.Bool
	stdout, stderr := startedOn(endStart, &spoke, out.Stdout), startedOn(endStart, &spoke, out.Stderr)
	go func() { defer wg.Done(); pump(outR, readBufSize, e.maxLine, red, b, stdout) }()
	go func() { defer wg.Done(); pump(errR, errReadBufSize, e.maxLine, red, b, stderr) }()

	var grace *time.Timer
	var graceC <-chan time.Time
	var pollC <-chan time.Time
	if group != nil || e.diskMax > 0 {
		poll := time.NewTicker(limitPoll)
		defer poll.Stop()
		pollC = poll.C
	}
	ctxDone, limit := ctx.Done(), b.ch
supervise:
	for {
		select {
		case <-proc.Done():
			break supervise
		case <-pollC:
			switch {
			case group != nil && group.ForkRefusals() > 0:
				// A fork refused at pids.max: a fork bomb spins forever at the limit.
				res.LimitExceeded = LimitProcess
			case e.diskMax > 0 && dirUsageAtLeast(workdir, e.diskMax):
				res.LimitExceeded = LimitDisk
			default:
				continue
			}
			pollC = nil
			log.Warn("engine resource limit exceeded, killing", "limit", res.LimitExceeded)
			proc.Kill()
		case <-ctxDone:
			ctxDone = nil
			proc.Terminate()
			grace = time.NewTimer(e.grace)
			graceC = grace.C
		case <-graceC:
			graceC = nil
			log.Info("engine ignored SIGTERM, killing", "grace", e.grace)
			proc.Kill()
		case <-limit:
			limit = nil
			log.Warn("engine output limit exceeded, killing", "max_output_bytes", e.maxOut)
			proc.Kill()
		}
	}
	endStart() // an engine that exits without a word has started and ended
	if grace != nil {
		grace.Stop()
	}
	st, werr := proc.Wait()

	// Every process of the task is gone, so the pipes reach EOF as soon as the readers have
	// consumed what is buffered. Only a descriptor smuggled out of the task (or a PGroup-mode
	// escapee) could keep them open: stop reading then rather than hang.
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(e.drainMax):
		log.Warn("engine output still open after the process tree ended, closing it")
		past := time.Unix(1, 0)
		_ = outR.SetReadDeadline(past)
		_ = errR.SetReadDeadline(past)
		<-drained
	}
	outR.Close()
	errR.Close()

	res.EndedAt = time.Now()
	res.OutputLimitExceeded = b.exceeded.Load()
	if res.LimitExceeded == "" {
		var ev cgroup.Events // read once: a handful of control-group files, per task
		if group != nil {
			ev = group.Events()
		}
		switch {
		case ev.OOMKills > 0:
			res.LimitExceeded = LimitMemory
		case st.Signal == unix.SIGXFSZ:
			res.LimitExceeded = LimitDisk
		case e.diskMax > 0 && dirUsageAtLeast(workdir, e.diskMax):
			// The last write hit RLIMIT_FSIZE (an engine that ignores SIGXFSZ gets EFBIG and
			// may well exit 0) or filled the rest since the last poll.
			res.LimitExceeded = LimitDisk
		case ev.PidsMax > 0:
			res.LimitExceeded = LimitProcess
		}
	}
	if proxy != nil {
		proxy.Close() // the engine is gone; cut what its relay left open before counting
		st := proxy.Stats()
		res.Egress = &st
	}
	if werr != nil {
		// The init was started and is gone; its status is unknown. Report it as killed.
		log.Error("engine wait failed", "err", werr)
		res.ExitCode, res.Signal = 128+int(unix.SIGKILL), unix.SignalName(unix.SIGKILL)
	} else {
		res.ExitCode = st.ExitCode
		if st.Signal != 0 {
			res.Signal = unix.SignalName(st.Signal)
		}
	}
	log.Debug("engine exited", "exit_code", res.ExitCode, "signal", res.Signal,
		"output_bytes", b.used.Load(), "output_limit_exceeded", res.OutputLimitExceeded,
		"duration", res.EndedAt.Sub(res.StartedAt))
	return res, nil
}

// Starts reports the engines starting now (sandbox start to first line, exit or 2 s) and the
// tasks waiting for a start slot (engine.max_starting; always 0 without it).
func (e *Executor) Starts() (starting, waiting int) { return e.starts.counts() }

// removeWorkdir deletes the task directory. An engine may leave read-only directories behind;
// they are made writable and removal is retried.
func (e *Executor) removeWorkdir(dir, taskID string) {
	if err := os.RemoveAll(dir); err == nil {
		return
	}
	// WalkDir visits a directory before reading it, so the chmod lets it descend.
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		e.log.Error("could not remove task directory", "task", taskID, "err", err)
	}
}
