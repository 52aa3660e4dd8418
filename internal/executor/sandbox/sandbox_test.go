package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/proctest"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case InitArg:
			// syscall.Exit, not os.Exit: under -race, os.Exit sleeps a second for late race
			// reports, which would make every sandboxed run in these tests a second longer.
			syscall.Exit(InitMain(os.Args[2:]))
		case "helper-mode":
			os.Exit(helperMode())
		case "helper-gateway":
			os.Exit(helperGateway(os.Args[2], os.Args[3]))
		case "helper-server":
			os.Exit(helperServer(os.Args[2] == "nondumpable"))
		case "helper-landlock":
			os.Exit(helperLandlock(os.Args[2]))
		case "helper-hostile":
			port, _ := strconv.Atoi(os.Args[2])
			os.Exit(helperHostile(port))
		case "helper-seccomp":
			os.Exit(helperSeccomp())
		case "helper-unix-connect": // exit 0 if a connection to the UNIX socket opens
			c, err := net.Dial("unix", os.Args[2])
			if err != nil {
				os.Exit(1)
			}
			c.Close()
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// helperMode runs as another user: probes the sandbox and runs one engine in it.
func helperMode() int {
	self, _ := os.Executable()
	if len(os.Args) > 2 && os.Args[2] == "--nondumpable" {
		if err := MakeNonDumpable(); err != nil {
			fmt.Println("error:", err)
			return 1
		}
	}
	sb, err := New(Options{InitPath: self})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Printf("mode=%s private_proc=%v user_namespace=%v\n", sb.Mode(), sb.PrivateProc(), sb.UserNamespace())
	out, status, err := run(sb, "/bin/sh", "-c", `echo "uid=$(id -u) pid=$$ ppid=$PPID procs=$(ls /proc | grep -c '^[0-9]')"`)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Printf("engine: %s status=%d\n", strings.TrimSpace(out), status.ExitCode)
	return 0
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func initPath(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newSandbox(t *testing.T, mode Mode) *Sandbox {
	t.Helper()
	sb, err := New(Options{Mode: mode, InitPath: initPath(t), Logger: testLogger(t)})
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("pid namespaces unavailable here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if sb.Mode() != mode {
		t.Fatalf("mode %s, want %s", sb.Mode(), mode)
	}
	return sb
}

// run starts path with args in sb and returns its combined output and status.
func run(sb *Sandbox, path string, args ...string) (string, Status, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", Status{}, err
	}
	defer r.Close()
	p, err := sb.Start(Command{Path: path, Args: args, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Stdout: w, Stderr: w})
	w.Close()
	if err != nil {
		return "", Status{}, err
	}
	out, _ := io.ReadAll(r)
	st, err := p.Wait()
	return string(out), st, err
}

func marker(t *testing.T) string { return proctest.Marker() }

func survivors(mark string) []int { return proctest.Survivors(mark) }

func killSurvivors(t *testing.T, mark string) {
	t.Helper()
	t.Cleanup(func() {
		for _, pid := range survivors(mark) {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	})
}

func TestAutoUsesPIDNamespaceHere(t *testing.T) {
	sb, err := New(Options{InitPath: initPath(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("auto -> %s, private /proc %v", sb.Mode(), sb.PrivateProc())
	if os.Getuid() == 0 && sb.Mode() != PIDNS {
		t.Errorf("running as root, auto chose %s", sb.Mode())
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "true")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
	}{
		{"relative init", Options{InitPath: "flowgate"}},
		{"missing init", Options{InitPath: filepath.Join(dir, "nope")}},
		{"init is not flowgate (pgroup)", Options{InitPath: script, Mode: PGroup}},
		{"init is not flowgate (pidns)", Options{InitPath: script, Mode: PIDNS}},
		{"bad mode", Options{InitPath: initPath(t), Mode: "chroot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.opts); err == nil {
				t.Fatal("New succeeded")
			} else {
				t.Log(err)
			}
		})
	}
}

// The init must never run kill(-1) outside a namespace of its own.
func TestInitRefusesNSOutsideNamespace(t *testing.T) {
	mark := marker(t)
	cmd := exec.Command(initPath(t), InitArg, "--ns", "--", "/bin/sh", "-c", "echo ran "+mark)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitSetup {
		t.Fatalf("err = %v, output %q", err, out)
	}
	if bytes.Contains(out, []byte("ran")) {
		t.Fatal("engine ran")
	}
}

func TestInitUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--ns", "--subreaper", "--", "/bin/true"},
		{"--ns", "--", "relative"},
		{"--bogus"},
		{"--subreaper", "--status-fd", "1", "--", "/bin/true"},
		{"--subreaper", "--nice", "20", "--", "/bin/true"},
		{"--subreaper", "--nice", "0", "--", "/bin/true"},
		{"--subreaper", "--nice", "-5", "--", "/bin/true"},
		{"--exec", "--nice", "5", "--", "/bin/true"},
	} {
		out, err := exec.Command(initPath(t), append([]string{InitArg}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
			t.Errorf("%q: err %v output %q", args, err, out)
		}
	}
}

func TestExitStatus(t *testing.T) {
	for _, mode := range []Mode{PIDNS, PGroup} {
		t.Run(string(mode), func(t *testing.T) {
			sb := newSandbox(t, mode)
			tests := []struct {
				script string
				want   Status
			}{
				{"exit 0", Status{}},
				{"exit 3", Status{ExitCode: 3}},
				{"exit 143", Status{ExitCode: 143}}, // an exit code, not a signal
				{"kill -TERM $$", Status{ExitCode: 143, Signal: unix.SIGTERM}},
				{"kill -KILL $$", Status{ExitCode: 137, Signal: unix.SIGKILL}},
				{"kill -SEGV $$", Status{ExitCode: 139, Signal: unix.SIGSEGV}},
			}
			for _, tt := range tests {
				_, st, err := run(sb, "/bin/sh", "-c", tt.script)
				if err != nil {
					t.Fatal(err)
				}
				if st != tt.want {
					t.Errorf("%q: status %+v, want %+v", tt.script, st, tt.want)
				}
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	for _, mode := range []Mode{PIDNS, PGroup} {
		t.Run(string(mode), func(t *testing.T) {
			sb := newSandbox(t, mode)
			dir := t.TempDir()
			noexec := filepath.Join(dir, "noexec")
			if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{filepath.Join(dir, "missing"), noexec, "relative/engine"} {
				_, _, err := run(sb, path)
				if !errors.Is(err, ErrStart) {
					t.Errorf("%s: err = %v, want ErrStart", path, err)
				} else {
					t.Log(err)
				}
			}
		})
	}
}

// In PIDNS mode the engine is not PID 1 and cannot kill its init; it sees a private /proc.
func TestPIDNSIsolation(t *testing.T) {
	sb := newSandbox(t, PIDNS)
	out, st, err := run(sb, "/bin/sh", "-c", `echo "pid=$$ ppid=$PPID"; kill -KILL 1; echo "alive"; ls /proc | grep -c '^[0-9]'`)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("output %q status %+v", out, st)
	if !strings.Contains(out, " ppid=1\n") || strings.Contains(out, "pid=1 ") || !strings.Contains(out, "alive") || st.ExitCode != 0 {
		t.Errorf("output %q status %+v", out, st)
	}
	if sb.PrivateProc() {
		lines := strings.Split(strings.TrimSpace(out), "\n")
		n, _ := strconv.Atoi(lines[len(lines)-1])
		// init, sh, ls, grep (threads of the Go init are not listed)
		if n == 0 || n > 4 {
			t.Errorf("engine sees %d processes in /proc", n)
		}
	}
}

// The documented PGroup hole: an engine may kill its own supervisor (same user) and whatever
// it had reparented away survives; the gateway only still reaches its process group.
func TestPGroupSupervisorKilledByEngine(t *testing.T) {
	sb := newSandbox(t, PGroup)
	mark := marker(t)
	killSurvivors(t, mark)
	_, st, err := run(sb, "/bin/sh", "-c",
		`setsid sh -c 'trap "" TERM; sleep 300; : `+mark+`' </dev/null >/dev/null 2>&1 &
		 sleep 300 `+mark+` </dev/null >/dev/null 2>&1 &
		 sleep 0.2; kill -KILL $PPID`)
	if err != nil {
		t.Fatal(err)
	}
	left := survivors(mark)
	t.Logf("status %+v; survivors after the engine killed its supervisor: %v (the setsid'd one escapes, the group member does not)", st, left)
	if len(left) > 1 {
		t.Errorf("survivors %v", left)
	}
}

// runnableByNobody copies the test binary where an unprivileged user can execute it.
func runnableByNobody(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "sandbox.test")
	src, err := os.ReadFile(initPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// The gateway as root, or as an unprivileged user (user namespace through the relay), with and
// without MakeNonDumpable (which a direct user-namespace spawn would not survive: the
// non-dumpable gateway's child cannot have its uid_map written).
func TestModesByUserAndDumpability(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	bin := runnableByNobody(t)
	for _, tt := range []struct {
		name    string
		uid     uint32
		nondump bool
	}{
		{"root", 0, false},
		{"root non-dumpable", 0, true},
		{"nobody", 65534, false},
		{"nobody non-dumpable", 65534, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"helper-mode"}
			if tt.nondump {
				args = append(args, "--nondumpable")
			}
			cmd := exec.Command(bin, args...)
			cmd.Dir = "/"
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tt.uid, Gid: tt.uid}}
			out, err := cmd.CombinedOutput()
			t.Logf("%s", out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(out, []byte("mode=pidns")) {
				if tt.uid != 0 {
					t.Skip("no unprivileged user namespaces here; the gateway would fall back to pgroup")
				}
				t.Fatal("root did not get a pid namespace")
			}
			want := fmt.Sprintf("engine: uid=%d pid=", tt.uid)
			if !bytes.Contains(out, []byte(want)) || !bytes.Contains(out, []byte("status=0")) || bytes.Contains(out, []byte(" pid=1 ")) {
				t.Errorf("want %q in the output", want)
			}
			// With a private /proc the engine sees its namespace only: init, sh, the $(...) subshell,
			// ls, grep.
			if bytes.Contains(out, []byte("private_proc=true")) {
				i := bytes.Index(out, []byte("procs="))
				n, _ := strconv.Atoi(strings.Fields(string(out[i+len("procs="):]))[0])
				if n < 1 || n > 5 {
					t.Errorf("engine sees %d processes", n)
				}
			}
		})
	}
}

// MakeNonDumpable stops a same-user child from reading the server's environment.
func TestMakeNonDumpable(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run the check as an unprivileged user")
	}
	for _, nondump := range []bool{false, true} {
		t.Run(fmt.Sprintf("nondumpable=%v", nondump), func(t *testing.T) {
			mark := marker(t)
			// A process as nobody that optionally makes itself non-dumpable, then waits;
			// a second process as nobody tries to read its environ.
			arg := "dumpable"
			if nondump {
				arg = "nondumpable"
			}
			server := exec.Command(runnableByNobody(t), "helper-server", arg)
			server.Env = []string{"FG_SECRET=" + mark}
			server.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			server.Dir = "/"
			stdout, _ := server.StdoutPipe()
			if err := server.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = server.Process.Kill(); _ = server.Wait() }()
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			if !strings.HasPrefix(line, "ready") {
				t.Fatalf("helper said %q", line)
			}
			reader := exec.Command("/bin/cat", fmt.Sprintf("/proc/%d/environ", server.Process.Pid))
			reader.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err := reader.CombinedOutput()
			leaked := bytes.Contains(out, []byte(mark))
			t.Logf("read environ: err %v, leaked %v", err, leaked)
			if leaked == nondump {
				t.Errorf("non-dumpable %v but environ leaked %v", nondump, leaked)
			}
		})
	}
}

// helperServer is the server side of TestMakeNonDumpable, run in a child process.
func helperServer(nondump bool) int {
	if nondump {
		if err := MakeNonDumpable(); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		if d, err := Dumpable(); err != nil || d {
			fmt.Println("still dumpable:", d, err)
			return 1
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	return 0
}

// Engines run at the policy's nice value, and so does everything they start, however they
// start it; an engine cannot take back the priority it was given.
func TestEnginesRunNiced(t *testing.T) {
	for _, mode := range []Mode{PIDNS, PGroup} {
		t.Run(string(mode), func(t *testing.T) {
			sb, err := New(Options{Mode: mode, InitPath: initPath(t), Logger: testLogger(t), Policy: Policy{Nice: 7}})
			if errors.Is(err, ErrUnavailable) {
				t.Skipf("pid namespaces unavailable here: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			// nice(1) without arguments prints its own nice value.
			out, st, err := run(sb, "/bin/sh", "-c", `nice; (nice); setsid sh -c nice; nice -n -7 nice 2>/dev/null`)
			if err != nil || st.ExitCode != 0 {
				t.Fatalf("engine: %v %+v %q", err, st, out)
			}
			if got := strings.Fields(out); !slices.Equal(got, []string{"7", "7", "7", "7"}) {
				t.Fatalf("nice values %q; want 7 for the engine, a subshell, a setsid grandchild and after an attempt to lower it", out)
			}
		})
	}
	if _, err := New(Options{Mode: PGroup, InitPath: initPath(t), Policy: Policy{Nice: 20}}); err == nil {
		t.Error("New accepted nice 20")
	}
}
