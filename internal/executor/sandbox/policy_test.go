package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/flowgate/flowgate/internal/listentest"
)

// systemPaths is what the executor grants by default, minus the engine's directory.
var systemPaths = []string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/opt"}

func needLandlock(t *testing.T, abi int) {
	t.Helper()
	if got := LandlockABI(); got < abi {
		t.Skipf("kernel Landlock ABI %d, this test needs %d", got, abi)
	}
}

// policySetups returns every way this machine can start a task (as setups does) with policy p.
func policySetups(t *testing.T, p Policy) map[string]*Sandbox {
	t.Helper()
	out := map[string]*Sandbox{}
	for name, sb := range setups(t) {
		if sb.setup.relay && p.RunAs != nil {
			continue
		}
		if err := sb.setPolicy(p, testLogger(t)); err != nil {
			t.Fatal(err)
		}
		if err := sb.checkStart(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = sb
	}
	return out
}

// listener accepts on a fresh loopback port until the test ends.
func listener(t *testing.T) (net.Listener, uint16) {
	t.Helper()
	l := listentest.Serve(t, "tcp4", "127.0.0.1:0", listentest.Drop)
	return l, uint16(l.Addr().(*net.TCPAddr).Port)
}

// probeScript prints "name=ok" or "name=denied" for each check; $1 is the secret file, $2 the
// writable directory, $3 and $4 a forbidden and an allowed loopback port.
const probeScript = `
check() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name=ok"; else echo "$name=denied"; fi; }
check read-secret cat "$1"
check list-secret-dir ls "$(dirname "$1")"
check read-etc cat /etc/hostname
check exec-sh /bin/sh -c true
check write-own sh -c "echo hi > '$2/f' && mkdir '$2/d' && mv '$2/f' '$2/d/g' && rm -r '$2/d'"
check write-tmp sh -c "echo hi > /tmp/flowgate-landlock-test-$$"
check read-root ls /root
check stderr-dev sh -c 'echo x >/dev/stderr'
check connect-forbidden bash -c "exec 3<>/dev/tcp/127.0.0.1/$3"
check connect-allowed bash -c "exec 3<>/dev/tcp/127.0.0.1/$4"
check kill-outside kill -0 "$5"
`

func TestLandlockConfinesEngine(t *testing.T) {
	needLandlock(t, abiNet)
	if _, err := os.Stat("/bin/bash"); err != nil {
		t.Skip("needs bash for /dev/tcp")
	}
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "signing.key")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	own := t.TempDir()
	_, forbidden := listener(t)
	_, allowed := listener(t)
	// A process outside the task, of the same user.
	outside := exec.Command("sleep", "300")
	if err := outside.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = outside.Process.Kill(); _ = outside.Wait() })

	p := Policy{Landlock: LandlockRequired, ReadPaths: systemPaths, ConnectPorts: []uint16{allowed}}
	for name, sb := range policySetups(t, p) {
		t.Run(name, func(t *testing.T) {
			out, st := runCmd(t, sb, Command{Path: "/bin/sh",
				Args:       []string{"-c", probeScript, "sh", secret, own, strconv.Itoa(int(forbidden)), strconv.Itoa(int(allowed)), strconv.Itoa(outside.Process.Pid)},
				WritePaths: []string{own}})
			t.Logf("landlock ABI %d, status %+v:\n%s", sb.LandlockABI(), st, out)
			want := map[string]string{
				"read-secret": "denied", "list-secret-dir": "denied", "read-etc": "ok", "exec-sh": "ok",
				"write-own": "ok", "write-tmp": "denied", "read-root": "denied", "stderr-dev": "ok",
				"connect-forbidden": "denied", "connect-allowed": "ok",
			}
			if sb.LandlockABI() >= abiScope {
				want["kill-outside"] = "denied"
			}
			for k, v := range want {
				if !strings.Contains(out, k+"="+v+"\n") {
					t.Errorf("want %s=%s", k, v)
				}
			}
		})
	}
}

// runCmd runs cmd in sb with / as its directory and returns its output and status.
func runCmd(t *testing.T, sb *Sandbox, cmd Command) (string, Status) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Stdout, cmd.Stderr = w, w
	p, err := sb.Start(cmd)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), st
}

// The PGroup hole (an engine SIGKILLs its own supervisor, same user) is closed by Landlock's
// signal scope: the supervisor is outside the engine's domain.
func TestLandlockEngineCannotKillPGroupSupervisor(t *testing.T) {
	needLandlock(t, abiScope)
	sb, err := New(Options{Mode: PGroup, InitPath: initPath(t), Logger: testLogger(t),
		Policy: Policy{Landlock: LandlockRequired, ReadPaths: systemPaths}})
	if err != nil {
		t.Fatal(err)
	}
	out, st := runCmd(t, sb, Command{Path: "/bin/sh", Args: []string{"-c", `kill -KILL $PPID && echo killed; echo alive; exit 3`}})
	if strings.Contains(out, "killed") || st.ExitCode != 3 {
		t.Errorf("output %q status %+v", out, st)
	}
}

func TestLandlockStartErrors(t *testing.T) {
	needLandlock(t, 1)
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(dir, "outside")
	if err := os.WriteFile(outside, []byte("#!/bin/sh\necho ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, sb := range policySetups(t, Policy{Landlock: LandlockAuto, ReadPaths: []string{"/usr", "/bin", "/lib", "/lib64"}}) {
		t.Run(name, func(t *testing.T) {
			// An engine outside every read path may not even be executed.
			for _, path := range []string{filepath.Join(dir, "missing"), noexec, outside} {
				p, err := sb.Start(Command{Path: path, Env: []string{}, Dir: "/", Stdout: os.Stderr, Stderr: os.Stderr})
				if err == nil {
					_, _ = p.Wait()
				}
				if !errors.Is(err, ErrStart) {
					t.Errorf("%s: err = %v, want ErrStart", path, err)
				} else {
					t.Log(err)
				}
			}
		})
	}
}

func TestPolicyErrors(t *testing.T) {
	for _, p := range []Policy{
		{Landlock: "sometimes"},
		{Landlock: LandlockAuto, ReadPaths: []string{"relative"}},
		{Landlock: LandlockAuto, WritePaths: []string{""}},
		{Landlock: LandlockAuto, ConnectPorts: []uint16{0}},
		{RunAs: &IDs{UID: 0, GID: 1}},
		{RunAs: &IDs{UID: 1, GID: 0}},
	} {
		if _, err := New(Options{InitPath: initPath(t), Policy: p}); err == nil {
			t.Errorf("%+v: New succeeded", p)
		}
	}
	for _, s := range []string{"", "0:0", "0:65534", "65534:0", "nobody:nogroup", "1", "1:2:3", "-1:5", "65534:65534x"} {
		if _, err := ParseIDs(s); err == nil {
			t.Errorf("ParseIDs(%q) succeeded", s)
		}
	}
	if ids, err := ParseIDs("65534:65533"); err != nil || ids != (IDs{65534, 65533}) {
		t.Errorf("ParseIDs = %v, %v", ids, err)
	}
}

// An engine of a root gateway has no capabilities, whether it stays root or runs as RunAs,
// and RunAs leaves it no supplementary groups.
func TestEngineCredentials(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	bin := runnableByNobody(t)
	script := `echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; grep -E '^Cap(Eff|Prm|Bnd|Amb):' /proc/self/status`
	for _, runAs := range []*IDs{nil, {UID: 65534, GID: 65533}} {
		for name, sb := range setups(t) {
			if sb.setup.relay && runAs != nil {
				continue
			}
			sb.initPath = bin
			// Landlock off: the pgroup and PID-namespace-only engines could not read their
			// /proc/self/status otherwise.
			if err := sb.setPolicy(Policy{Landlock: LandlockOff, RunAs: runAs}, testLogger(t)); err != nil {
				t.Fatal(err)
			}
			t.Run(fmt.Sprintf("%s/run_as=%v", name, runAs), func(t *testing.T) {
				out, _ := runCmd(t, sb, Command{Path: "/bin/sh", Args: []string{"-c", script}})
				t.Logf("%s", out)
				for _, c := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
					if sb.setup.relay && sb.setup.mountProc {
						// Root of a user namespace of its own (only there), without Landlock
						// and so without the stage that would empty its bounding set.
						break
					}
					if !strings.Contains(out, c+":\t0000000000000000\n") {
						t.Errorf("%s not empty", c)
					}
				}
				want := "uid=0 gid=0 "
				if runAs != nil {
					want = "uid=65534 gid=65533 groups=65533\n"
				}
				if !strings.Contains(out, want) {
					t.Errorf("want %q", want)
				}
			})
		}
	}
}

// The init's own checks on the new arguments.
func TestInitPolicyUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--relay", "--run-as", "65534:65534", "--", "/bin/true"},
		{"--ns", "--run-as", "0:0", "--", "/bin/true"},
		{"--ns", "--landlock", "off", "--", "/bin/true"},
		{"--ns", "--ro", "relative", "--", "/bin/true"},
		{"--ns", "--tcp", "0", "--", "/bin/true"},
		{"--ns", "--tcp", "65536", "--", "/bin/true"},
		{"--exec", "--mount-proc", "--", "/bin/true"},
		{"--exec", "--ns", "--", "/bin/true"},
	} {
		out, err := exec.Command(initPath(t), append([]string{InitArg}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
			t.Errorf("%q: err %v output %q", args, err, out)
		}
	}
}

// The stage alone (as the init runs it): a failed restriction is reported on fd 3 and the
// engine never runs.
func TestStageReportsFailure(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(initPath(t), InitArg, "--exec", "--landlock", "auto", "--", "/nonexistent/engine")
	cmd.ExtraFiles = []*os.File{w}
	out, err := cmd.CombinedOutput()
	w.Close()
	msg := make([]byte, 512)
	n, _ := r.Read(msg)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitExecFails || !strings.Contains(string(msg[:n]), "start engine") {
		t.Errorf("err %v output %q message %q", err, out, msg[:n])
	}
}

// helperLandlock is an unprivileged gateway (as in a container) starting one confined engine
// that tries to read secret, a file of the gateway's own user.
func helperLandlock(secret string) int {
	self, _ := os.Executable()
	sb, err := New(Options{InitPath: self, Policy: Policy{Landlock: LandlockRequired, ReadPaths: systemPaths}})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Printf("mode=%s user_namespace=%v landlock_abi=%d\n", sb.Mode(), sb.UserNamespace(), sb.LandlockABI())
	out, _, err := run(sb, "/bin/sh", "-c", checkScript+`check read-own-secret cat '`+secret+`'; check read-etc cat /etc/hostname; echo "uid=$(id -u)"`)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Print(out)
	return 0
}

const checkScript = `check() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name=ok"; else echo "$name=denied"; fi; }
`

// In a container the gateway is not root and engines run as its user: file permissions cannot
// protect its files from them, Landlock does.
func TestLandlockUnprivilegedGateway(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	needLandlock(t, abiNet)
	bin := runnableByNobody(t)
	dir := filepath.Dir(bin)
	secret := filepath.Join(dir, "signing.key")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(secret, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "helper-landlock", secret)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"uid=65534", "read-own-secret=denied", "read-etc=ok"} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("want %s", want)
		}
	}
}

// What Landlock does not cover, pinned down so SECURITY.md stays true: an engine that is root
// (a root gateway without engine.run_as) can still change the mode of root's files and, before
// ABI 9, connect to a root-only UNIX socket; anyone can stat a path. engine.run_as closes the
// first two through file permissions.
func TestLandlockKnownGaps(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	needLandlock(t, 1)
	bin := runnableByNobody(t)
	dir := filepath.Dir(bin)
	secret := filepath.Join(dir, "signing.key")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "root.sock")
	listentest.Serve(t, "unix", sock, listentest.Drop)
	if err := os.Chmod(sock, 0o600); err != nil {
		t.Fatal(err)
	}
	script := checkScript + fmt.Sprintf(`check read-secret cat '%[1]s'
check stat-secret stat '%[1]s'
check chmod-secret chmod 0600 '%[1]s'
check connect-root-socket '%[2]s' helper-unix-connect '%[3]s'
`, secret, bin, sock)
	for _, runAs := range []*IDs{nil, {UID: 65534, GID: 65534}} {
		sb, err := New(Options{Mode: PIDNS, InitPath: bin, Logger: testLogger(t),
			Policy: Policy{Landlock: LandlockAuto, ReadPaths: append([]string{bin}, systemPaths...), RunAs: runAs}})
		if err != nil {
			t.Fatal(err)
		}
		out, _ := runCmd(t, sb, Command{Path: "/bin/sh", Args: []string{"-c", script}})
		t.Logf("run_as %v, Landlock ABI %d:\n%s", runAs, sb.LandlockABI(), out)
		want := map[string]string{"read-secret": "denied", "stat-secret": "ok", "chmod-secret": "ok", "connect-root-socket": "ok"}
		if sb.LandlockABI() >= abiUnix {
			want["connect-root-socket"] = "denied"
		}
		if runAs != nil {
			want["chmod-secret"], want["connect-root-socket"] = "denied", "denied"
		}
		for k, v := range want {
			if !strings.Contains(out, k+"="+v+"\n") {
				t.Errorf("run_as %v: want %s=%s", runAs, k, v)
			}
		}
	}
}

// helperSeccomp is a gateway under a seccomp filter that refuses landlock_create_ruleset with
// EPERM, as systemd's SystemCallFilter=@system-service does.
func helperSeccomp() int {
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_LANDLOCK_CREATE_RULESET},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); e != 0 {
		fmt.Println("error:", e)
		return 1
	}
	self, _ := os.Executable()
	_, err := New(Options{InitPath: self, Policy: Policy{Landlock: LandlockRequired}})
	fmt.Printf("required: %v\n", err)
	sb, err := New(Options{InitPath: self, Policy: Policy{Landlock: LandlockAuto}})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Printf("auto: abi=%d\n", sb.LandlockABI())
	return 0
}

// A seccomp filter that hides Landlock: required refuses to start and says why, auto runs
// engines unconfined (with a warning).
func TestLandlockBlockedBySeccomp(t *testing.T) {
	needLandlock(t, 1)
	out, err := exec.Command(initPath(t), "helper-seccomp").CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"required: sandbox: landlock unavailable: landlock_create_ruleset: operation not permitted (a seccomp filter blocks it", "auto: abi=0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("want %q", want)
		}
	}
}
