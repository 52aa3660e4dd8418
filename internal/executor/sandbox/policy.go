package sandbox

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// LandlockMode selects whether engines are confined with Landlock (engine.landlock).
type LandlockMode string

const (
	// LandlockAuto confines engines with the best Landlock ABI the kernel offers and runs them
	// unconfined (logged as a warning) on a kernel without Landlock.
	LandlockAuto LandlockMode = "auto"
	// LandlockRequired refuses to start unless the kernel enforces both the filesystem and the
	// TCP rules (Landlock ABI 4, Linux 6.7, or later).
	LandlockRequired LandlockMode = "required"
	// LandlockOff never applies Landlock.
	LandlockOff LandlockMode = "off"
)

// ParseLandlockMode parses engine.landlock; "" means def.
func ParseLandlockMode(s string, def LandlockMode) (LandlockMode, error) {
	switch LandlockMode(s) {
	case "":
		return def, nil
	case LandlockAuto, LandlockRequired, LandlockOff:
		return LandlockMode(s), nil
	}
	return "", fmt.Errorf("landlock mode %q: want auto, required or off", s)
}

// Landlock ABI levels that change what an engine can do.
const (
	abiNet   = 4 // TCP bind and connect
	abiScope = 6 // signals and abstract UNIX sockets stay inside the domain
	abiUnix  = 9 // connect(2)/sendmsg(2) to pathname UNIX sockets outside the domain
	abiUDP   = 10
	// maxABI is the newest ABI whose rules this package knows how to write.
	maxABI = 11
)

// Bounds on a policy, so a configuration or a bug cannot build an absurd init command line.
const (
	maxPolicyPaths = 1024
	maxPolicyPorts = 256
	maxPathLen     = 4096
)

// ErrLandlockUnavailable is returned by New when Policy.Landlock is LandlockRequired and the
// kernel cannot enforce it.
var ErrLandlockUnavailable = errors.New("sandbox: landlock unavailable")

// Policy is what an engine may reach. Paths are absolute; the caller has resolved and vetted
// them (nothing here checks that a read path does not expose the gateway's secrets).
//
// With Landlock, an engine and all its descendants may, besides the paths listed here and in
// each Command: read /dev/urandom and /dev/random, read and write /dev/null, /dev/zero,
// /dev/full and /dev/tty, read the private /proc of its PID namespace (only when the sandbox
// has one: a host /proc would show every task's command line), connect to the TCP ports
// listed (no TCP bind at all), and, on kernels that restrict UDP, send UDP to port 53 only.
// Signals and abstract UNIX sockets cannot leave the task (ABI 6), nor can connections to
// pathname UNIX sockets (ABI 9). Everything else is refused.
type Policy struct {
	Landlock     LandlockMode // "" = LandlockOff
	ReadPaths    []string     // read and execute beneath each
	WritePaths   []string     // full access beneath each
	ConnectPorts []uint16     // TCP connect(2) allowed to these ports
	// RunAs runs every engine as this user and group, without supplementary groups. Only a
	// root gateway can do that, and not through a user namespace.
	RunAs *IDs
	// Nice is the engines' nice value (1 to MaxNice; 0 keeps the gateway's), so a host full
	// of busy engines still gives the gateway the CPU it needs to serve their events.
	Nice int
	// Seccomp installs the engine's system call filter (seccomp.go). It lets UDP through only
	// where the engine has a network namespace of its own, or with SeccompUDP.
	Seccomp    bool
	SeccompUDP bool
	// NetNS gives each engine a network namespace with only loopback where the kernel allows
	// it (probed at New; NetworkNamespace reports the outcome).
	NetNS bool
}

// IDs is a numeric user and group.
type IDs struct {
	UID, GID int
}

func (id IDs) String() string { return strconv.Itoa(id.UID) + ":" + strconv.Itoa(id.GID) }

// ParseIDs parses "UID:GID" (engine.run_as). Root (0) is refused for either.
func ParseIDs(s string) (IDs, error) {
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.ParseUint(u, 10, 31)
	gid, err2 := strconv.ParseUint(g, 10, 31)
	if !ok || err1 != nil || err2 != nil {
		return IDs{}, fmt.Errorf("%q: want numeric UID:GID such as 65534:65534", s)
	}
	if uid == 0 || gid == 0 {
		return IDs{}, fmt.Errorf("%q: engines must not run as root (uid or gid 0)", s)
	}
	return IDs{UID: int(uid), GID: int(gid)}, nil
}

func checkPolicyPaths(kind string, paths []string) error {
	if len(paths) > maxPolicyPaths {
		return fmt.Errorf("%s: %d paths, at most %d", kind, len(paths), maxPolicyPaths)
	}
	for _, p := range paths {
		if err := checkPolicyPath(p); err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
	}
	return nil
}

func checkPolicyPath(p string) error {
	if !filepath.IsAbs(p) || len(p) > maxPathLen || strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%q is not an absolute path", p)
	}
	return nil
}

// LandlockABI reports the Landlock ABI version of the running kernel, 0 when it has none.
func LandlockABI() int {
	v, _ := landlockABI()
	return v
}

// landlockABI also says why there is none: ENOSYS or EOPNOTSUPP from a kernel without Landlock
// (or with it left out of lsm=), EPERM from a seccomp filter that blocks the system call
// (systemd 252's SystemCallFilter=@system-service does).
func landlockABI() (int, error) {
	v, err := llsys.LandlockGetABIVersion()
	switch {
	case errors.Is(err, unix.EPERM):
		return 0, fmt.Errorf("landlock_create_ruleset: %w (a seccomp filter blocks it; with systemd add SystemCallFilter=landlock_create_ruleset landlock_add_rule landlock_restrict_self)", err)
	case err != nil:
		return 0, fmt.Errorf("landlock_create_ruleset: %w (a kernel without Landlock, or without landlock in its lsm= list)", err)
	case v < 0:
		return 0, errors.New("landlock_create_ruleset: no ABI version")
	}
	return v, nil
}

// landlockGaps describes what the given ABI cannot enforce, for the start-up warning.
func landlockGaps(abi int) []string {
	var gaps []string
	if abi < abiNet {
		gaps = append(gaps, "TCP connect and bind are not restricted (needs ABI 4, Linux 6.7)")
	}
	if abi < abiScope {
		gaps = append(gaps, "engines can signal other processes of their user and reach abstract UNIX sockets (needs ABI 6, Linux 6.12)")
	}
	if abi < abiUnix {
		gaps = append(gaps, "pathname UNIX sockets the engine's user may open outside /run (masked with a private /proc) can be connected to (needs ABI 9)")
	}
	return gaps
}
