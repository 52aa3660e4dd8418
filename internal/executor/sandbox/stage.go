package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"syscall"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// stageErrFD is where the stage reports why the engine could not be started.
const stageErrFD = 3

// Device files every engine may use; nothing else of /dev (no /dev/shm, shared by every process
// of the host; no /dev/pts, engines run headless).
var (
	devReadWrite = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/tty"}
	devRead      = []string{"/dev/urandom", "/dev/random"}
)

// landlockPresets are the library's configurations by ABI (index 0 is ABI 1): each handles
// every access right its ABI knows, so what no rule grants is denied.
func landlockPresets() []landlock.Config {
	return []landlock.Config{landlock.V1, landlock.V2, landlock.V3, landlock.V4, landlock.V5,
		landlock.V6, landlock.V7, landlock.V8, landlock.V9, landlock.V10, landlock.V11}
}

// stageMain is the engine's own process between the init's fork and the engine's exec
// (--exec): it restricts itself with Landlock and seccomp, then execs the engine, which inherits the
// domain, as does everything it starts. Its credentials, namespaces, parent-death signal,
// no_new_privs and rlimits were set by the init. Nothing of it survives the exec.
func stageMain(cfg initConfig) int {
	unix.CloseOnExec(stageErrFD)
	fail := func(code int, format string, a ...any) int {
		_, _ = unix.Write(stageErrFD, fmt.Appendf(nil, format, a...))
		return code
	}
	// Landlock domains, no_new_privs and the bounding set belong to a thread, and execve
	// gives the new program the calling thread's: everything below runs on this one thread,
	// which is never unlocked (the other threads of this Go runtime vanish with the exec).
	runtime.LockOSThread()
	if msg := confineThread(cfg); msg != "" {
		return fail(exitSetup, "%s", msg)
	}
	argv := append([]string{cfg.path}, cfg.args...)
	err := syscall.Exec(cfg.path, argv, os.Environ())
	return fail(exitExecFails, "start engine: %v", err)
}

// confineThread gives the calling thread what the engine inherits from it: an empty
// capability bounding set when it is root (root in a user namespace of its own, as a relayed
// init's engine is, starts with a full one there), the Landlock policy, and last the seccomp
// filter (it refuses calls, such as unshare and mount, that nothing before it needs). It
// returns why it failed, or "".
func confineThread(cfg initConfig) string {
	if os.Geteuid() == 0 {
		if err := dropBoundingSet(); err != nil {
			return err.Error()
		}
	}
	if cfg.landlock != "" {
		if err := restrictThread(cfg); err != nil {
			return "landlock: " + err.Error()
		}
	}
	if cfg.seccomp {
		if err := applySeccomp(SeccompOptions{AllowUDP: cfg.udp}); err != nil {
			return err.Error()
		}
	}
	return ""
}

// restrictThread confines the calling thread with the stage's policy, at the best ABI the
// kernel has (up to maxABI). Rules are built for that exact ABI rather than in the library's
// best-effort mode, which silently enforces nothing when a rule does not fit the kernel.
//
// Only this thread: the library's Restrict would restrict every thread of the process through
// libpsx, which lists /proc/<pid>/task, wrong or absent in a PID namespace without a private
// /proc. The engine is exec'd from this thread, so it and all it starts inherit the domain.
func restrictThread(cfg initConfig) error {
	abi := LandlockABI()
	switch {
	case abi == 0 && cfg.landlock == LandlockRequired:
		return errors.New("the kernel does not support Landlock")
	case abi == 0:
		return nil // the gateway warned at start
	case abi < abiNet && cfg.landlock == LandlockRequired:
		return fmt.Errorf("landlock ABI %d cannot restrict TCP (needs %d)", abi, abiNet)
	}
	presets := landlockPresets()
	conf := presets[min(abi, len(presets))-1]

	var rules []landlock.Rule
	add := func(p string, write bool) error {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // granting nothing is the safe side
		}
		if err != nil {
			return err
		}
		var r landlock.FSRule
		switch {
		case fi.IsDir() && write:
			r = landlock.RWDirs(p)
			if abi >= 2 {
				r = r.WithRefer() // rename and link between directories of the tree
			}
		case fi.IsDir():
			r = landlock.RODirs(p)
		case write:
			r = landlock.RWFiles(p)
		default:
			r = landlock.ROFiles(p)
		}
		rules = append(rules, r)
		return nil
	}
	for _, p := range cfg.ro {
		if err := add(p, false); err != nil {
			return err
		}
	}
	for _, p := range cfg.rw {
		if err := add(p, true); err != nil {
			return err
		}
	}
	rules = append(rules, landlock.RWFiles(devReadWrite...).IgnoreIfMissing(), landlock.ROFiles(devRead...).IgnoreIfMissing())
	if abi >= abiNet {
		for _, port := range cfg.tcp {
			rules = append(rules, landlock.ConnectTCP(port))
		}
	}
	if abi >= abiUDP {
		// DNS keeps working; nothing else goes out over UDP. Port 0 is the kernel's implicit
		// bind of an unbound socket to an ephemeral port.
		rules = append(rules, landlock.BindUDP(0), landlock.ConnectSendUDP(53))
	}
	fd, flags, err := conf.NewRulesetFD(rules...)
	if err != nil {
		return err
	}
	if fd < 0 {
		return errors.New("empty ruleset") // cannot happen with a handled access right
	}
	defer unix.Close(fd)
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	if err := llsys.LandlockRestrictSelf(fd, flags); err != nil {
		return fmt.Errorf("landlock_restrict_self: %w", err)
	}
	return nil
}
