package executor

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/executor/sandbox"
)

// DefaultConnectPort is engine.connect_ports when none are configured: HTTPS.
const DefaultConnectPort = 443

// Bounds of the Landlock policy.
const (
	maxExtraPaths   = 64
	maxConnectPorts = 64
	maxPolicyRules  = 1000 // after carving protected paths out of directories (sandbox allows 1024)
	maxCarveDepth   = 16
)

// defaultReadPaths are the system directories every engine may read and execute from.
func defaultReadPaths() []string {
	return []string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/opt"}
}

// etcLinks are files under /etc that are often symlinks to elsewhere (systemd-resolved's
// resolv.conf points into /run): Landlock checks the file a path resolves to, so the target
// itself, and only it, is granted.
func etcLinks() []string {
	return []string{"/etc/resolv.conf", "/etc/hosts", "/etc/hostname", "/etc/localtime", "/etc/nsswitch.conf"}
}

// pathSet collects the Landlock rules of the policy, keeping every protected path (data_dir,
// key files, the task root) out: a configured or default directory that contains one is
// replaced by its entries minus the protected one, recursively.
type pathSet struct {
	protected []string // absolute, cleaned, and resolved when they exist
	out       []string
	seen      map[string]bool
	log       *slog.Logger
}

func newPathSet(protect []string, log *slog.Logger) (*pathSet, error) {
	ps := &pathSet{seen: map[string]bool{}, log: log}
	for _, p := range protect {
		if p == "" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		ps.protected = append(ps.protected, abs)
		if r, err := filepath.EvalSymlinks(abs); err == nil && r != abs {
			ps.protected = append(ps.protected, r)
		}
	}
	return ps, nil
}

// within reports whether p is base or below it.
func within(p, base string) bool {
	if base == "/" {
		return true
	}
	return p == base || strings.HasPrefix(p, base+"/")
}

// clash returns a protected path that p is, or lies in (inside), or one that lies below p.
func (ps *pathSet) clash(p string) (q string, inside bool) {
	for _, q := range ps.protected {
		if within(p, q) {
			return q, true
		}
	}
	for _, q := range ps.protected {
		if within(q, p) {
			return q, false
		}
	}
	return "", false
}

// add grants p (resolved). key names the configuration for errors; an explicit path must exist
// and may not lie inside a protected path, an implicit one is skipped then.
func (ps *pathSet) add(key, p string, explicit bool) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s: %q is not an absolute path", key, p)
	}
	r, err := filepath.EvalSymlinks(filepath.Clean(p))
	if err != nil {
		if explicit {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	}
	q, inside := ps.clash(r)
	switch {
	case q == "":
		return ps.emit(r)
	case inside:
		if explicit {
			return fmt.Errorf("%s: %s would give engines the gateway's own files (%s)", key, p, q)
		}
		ps.log.Warn("engine sandbox: a default path holds the gateway's own files and is not granted to engines", "path", r, "protected", q)
		return nil
	}
	fi, err := os.Stat(r)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if !fi.IsDir() {
		return ps.emit(r)
	}
	ps.log.Info("engine sandbox: granting a directory without the gateway's files inside it", "path", r, "protected", q)
	return ps.carve(key, r, 0)
}

// carve grants every entry of dir except the protected paths below it.
func (ps *pathSet) carve(key, dir string, depth int) error {
	if depth > maxCarveDepth {
		return fmt.Errorf("%s: %s: protected paths nested too deep to carve out", key, dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		r, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		q, inside := ps.clash(r)
		switch {
		case q == "":
		case inside:
			continue
		case r != p:
			// A link to a directory that holds a protected path: leave it out rather than
			// follow it (it may lead back up).
			continue
		default:
			if err := ps.carve(key, p, depth+1); err != nil {
				return err
			}
			continue
		}
		fi, err := os.Stat(r)
		if err != nil || (!fi.IsDir() && !fi.Mode().IsRegular()) {
			continue
		}
		if err := ps.emit(r); err != nil {
			return err
		}
	}
	return nil
}

func (ps *pathSet) emit(p string) error {
	if ps.seen[p] {
		return nil
	}
	if len(ps.out) >= maxPolicyRules {
		return fmt.Errorf("engine sandbox: more than %d Landlock rules (too many entries carved around protected paths)", maxPolicyRules)
	}
	ps.seen[p] = true
	ps.out = append(ps.out, p)
	return nil
}

// enginePolicy builds the static part of the Landlock policy; each task adds its own directory.
func enginePolicy(opts Options, root string, runAs *sandbox.IDs, log *slog.Logger) (sandbox.Policy, error) {
	mode, err := sandbox.ParseLandlockMode(string(opts.Landlock), sandbox.LandlockAuto)
	if err != nil {
		return sandbox.Policy{}, fmt.Errorf("engine.landlock: %w", err)
	}
	// The system call filter applies in every mode, Landlock or not. Engines behind the
	// egress proxy resolve no names themselves (the proxy does): UDP is closed to them unless
	// they have a network namespace of their own, where it reaches only their loopback.
	pol := sandbox.Policy{Landlock: mode, RunAs: runAs, Nice: opts.Nice, Seccomp: true,
		SeccompUDP: opts.Egress == nil, NetNS: opts.NetNS}
	ports := opts.ConnectPorts
	if ports == nil {
		ports = []int{DefaultConnectPort}
	}
	if len(ports) > maxConnectPorts {
		return pol, fmt.Errorf("engine.connect_ports: %d ports, at most %d", len(ports), maxConnectPorts)
	}
	for i, p := range ports {
		if p < 1 || p > 65535 {
			return pol, fmt.Errorf("engine.connect_ports[%d]: %d is not a port (1-65535)", i, p)
		}
		if !slices.Contains(pol.ConnectPorts, uint16(p)) {
			pol.ConnectPorts = append(pol.ConnectPorts, uint16(p))
		}
	}
	if len(opts.ReadPaths) > maxExtraPaths {
		return pol, fmt.Errorf("engine.read_paths: %d paths, at most %d", len(opts.ReadPaths), maxExtraPaths)
	}
	if len(opts.WritePaths) > maxExtraPaths {
		return pol, fmt.Errorf("engine.write_paths: %d paths, at most %d", len(opts.WritePaths), maxExtraPaths)
	}
	if mode == sandbox.LandlockOff {
		return pol, nil
	}

	protect := append([]string{root}, opts.Protect...)
	for i, cmd := range opts.Profile.Binaries() {
		key := "engine.command"
		if i > 0 {
			key = "engine.claude_command"
		}
		if real, err := filepath.EvalSymlinks(cmd); err == nil {
			for _, p := range protect {
				if abs, err := filepath.Abs(p); err == nil && (within(real, abs) || within(cmd, abs)) {
					return pol, fmt.Errorf("%s: %s lies in %s, which engines may never read", key, cmd, abs)
				}
			}
		}
	}

	read, err := newPathSet(protect, log)
	if err != nil {
		return pol, err
	}
	for _, p := range defaultReadPaths() {
		if err := read.add("engine sandbox", p, false); err != nil {
			return pol, err
		}
	}
	// Each engine binary's directory as configured (npm's bin/, with its symlinks), and the
	// installation it resolves into: the whole npm package (a Node engine reads its own
	// package.json and modules at start), and the interpreter of a #! script. Only the
	// binary itself when it sits at the top.
	keys := []string{"engine.command", "engine.claude_command"}
	for i, bin := range opts.Profile.Binaries() {
		key := keys[min(i, len(keys)-1)]
		in := engine.Inspect(bin, opts.Profile.Path(DefaultPath))
		grants := []string{filepath.Dir(bin), in.Root}
		if in.Interpreter != "" {
			grants = append(grants, interpreterRoot(in.Interpreter))
		}
		for _, dir := range grants {
			if dir == "/" {
				dir = bin
			}
			if err := read.add(key, dir, false); err != nil {
				return pol, err
			}
		}
		log.Info("engine sandbox: granting an engine's installation", "key", key, "binary", bin,
			"resolved", in.Resolved, "root", in.Root, "interpreter", in.Interpreter)
	}
	for _, p := range etcLinks() {
		if r := evalOr(p); r != p {
			if err := read.add("engine sandbox", r, false); err != nil {
				return pol, err
			}
		}
	}
	for i, p := range opts.ReadPaths {
		if err := read.add(fmt.Sprintf("engine.read_paths[%d]", i), p, true); err != nil {
			return pol, err
		}
	}
	write, err := newPathSet(protect, log)
	if err != nil {
		return pol, err
	}
	for i, p := range opts.WritePaths {
		if err := write.add(fmt.Sprintf("engine.write_paths[%d]", i), p, true); err != nil {
			return pol, err
		}
	}
	pol.ReadPaths, pol.WritePaths = read.out, write.out
	return pol, nil
}

// interpreterRoot is the installation prefix of an interpreter: /opt/node for
// /opt/node/bin/node (its modules live under the prefix), the directory itself otherwise.
func interpreterRoot(interp string) string {
	dir := filepath.Dir(interp)
	if filepath.Base(dir) == "bin" && filepath.Dir(dir) != "/" {
		return filepath.Dir(dir)
	}
	return dir
}

// evalOr resolves symlinks in p, or returns p.
func evalOr(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// checkReach reports why ids cannot reach path: every directory on the way must let them
// search it and path itself must have the perm bits (04 read, 01 execute, for the class ids
// fall in: owner, group, or other; no supplementary groups, no ACLs).
func checkReach(path string, ids sandbox.IDs, perm os.FileMode) error {
	var dirs []string
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == "/" {
			break
		}
	}
	slices.Reverse(dirs)
	allowed := func(p string, want os.FileMode) error {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		m := fi.Mode().Perm()
		var bits os.FileMode
		switch {
		case int(st.Uid) == ids.UID:
			bits = m >> 6
		case int(st.Gid) == ids.GID:
			bits = m >> 3
		default:
			bits = m
		}
		if bits&want != want {
			return fmt.Errorf("%s (mode %#o, owner %d:%d) is closed to %s", p, m, st.Uid, st.Gid, ids)
		}
		return nil
	}
	for _, d := range dirs {
		if err := allowed(d, 0o1); err != nil {
			return err
		}
	}
	return allowed(path, perm)
}

// parseRunAs parses engine.run_as; "" means the gateway's own user.
func parseRunAs(s string) (*sandbox.IDs, error) {
	if s == "" {
		return nil, nil
	}
	ids, err := sandbox.ParseIDs(s)
	if err != nil {
		return nil, fmt.Errorf("engine.run_as: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("engine.run_as: needs the gateway to run as root, it runs as uid %d (a gateway that is not root, as in a container, gives engines its own user: there Landlock, engine.landlock, is the control)", os.Geteuid())
	}
	return &ids, nil
}

// ownTaskDir makes a directory the gateway just created 0700 whatever the umask, owned by ids
// when set.
func ownTaskDir(dir string, ids *sandbox.IDs) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if ids != nil {
		return os.Lchown(dir, ids.UID, ids.GID)
	}
	return nil
}
