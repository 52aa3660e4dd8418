package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// hostileProbes are what a hostile engine tries first once it has a shell: each prints
// name=ok or name=denied(errno). Only loopback addresses are ever targeted.
func hostileProbes(tcpPort int) []struct {
	name string
	fn   func() error
} {
	sock := func(domain, typ, proto int) func() error {
		return func() error {
			fd, err := unix.Socket(domain, typ, proto)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}
	}
	connect := func(proto int) func() error {
		return func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, proto)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Connect(fd, &unix.SockaddrInet4{Port: tcpPort, Addr: [4]byte{127, 0, 0, 1}})
		}
	}
	raw := func(nr uintptr, a ...uintptr) func() error {
		return func() error {
			var args [6]uintptr
			copy(args[:], a)
			_, _, e := unix.Syscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5])
			if e != 0 {
				return e
			}
			return nil
		}
	}
	return []struct {
		name string
		fn   func() error
	}{
		{"tcp-connect", connect(0)},
		{"mptcp-connect", connect(unix.IPPROTO_MPTCP)},
		{"sctp-socket", sock(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP)},
		{"sctp-seqpacket", sock(unix.AF_INET, unix.SOCK_SEQPACKET, unix.IPPROTO_SCTP)},
		{"udp-socket", sock(unix.AF_INET, unix.SOCK_DGRAM, 0)},
		{"udp6-socket", sock(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)},
		{"icmp-socket", sock(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)},
		{"raw-socket", sock(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)},
		{"packet-socket", sock(unix.AF_PACKET, unix.SOCK_RAW, 0)},
		{"netlink-route", sock(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)},
		{"netlink-audit", sock(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT)},
		{"unix-socket", sock(unix.AF_UNIX, unix.SOCK_STREAM, 0)},
		{"vsock-socket", sock(unix.AF_VSOCK, unix.SOCK_STREAM, 0)},
		{"ptrace-attach", raw(unix.SYS_PTRACE, unix.PTRACE_ATTACH, 1)},
		{"bpf", raw(unix.SYS_BPF, 0, 0, 0)},
		{"perf-event-open", raw(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0)},
		{"keyctl", raw(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, ^uintptr(3)+1, 0)},
		{"add-key", raw(unix.SYS_ADD_KEY, 0, 0, 0, 0, 0)},
		{"userfaultfd", raw(unix.SYS_USERFAULTFD, 0)},
		{"mount", raw(unix.SYS_MOUNT, 0, 0, 0, 0, 0)},
		{"unshare-user", raw(unix.SYS_UNSHARE, unix.CLONE_NEWUSER)},
		{"unshare-net", raw(unix.SYS_UNSHARE, unix.CLONE_NEWNET)},
		{"setns", raw(unix.SYS_SETNS, ^uintptr(0), 0)},
		{"clone-newuser", func() error {
			pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
			if e != 0 {
				return e
			}
			if pid == 0 {
				unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
			}
			var ws unix.WaitStatus
			_, _ = unix.Wait4(int(pid), &ws, 0, nil)
			return nil
		}},
		{"clone3", raw(unix.SYS_CLONE3, 0, 0)},
		{"io-uring-setup", raw(unix.SYS_IO_URING_SETUP, 1, 0)},
		{"init-module", raw(unix.SYS_INIT_MODULE, 0, 0, 0)},
		{"kexec-load", raw(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0)},
		{"process-vm-readv", raw(unix.SYS_PROCESS_VM_READV, 1, 0, 0, 0, 0, 0)},
		{"getpid", raw(unix.SYS_GETPID)},
	}
}

// helperHostile is the hostile engine: it runs every probe and prints the outcome.
func helperHostile(port int) int {
	for _, p := range hostileProbes(port) {
		if err := p.fn(); err != nil {
			fmt.Printf("%s=denied(%v)\n", p.name, err)
		} else {
			fmt.Printf("%s=ok\n", p.name)
		}
	}
	return 0
}

func TestSeccompRefusesWhatLandlockDoesNotSee(t *testing.T) {
	_, port := listener(t)
	self := initPath(t)
	denied := []string{"mptcp-connect", "sctp-socket", "sctp-seqpacket", "udp-socket", "udp6-socket", "icmp-socket",
		"raw-socket", "packet-socket", "netlink-audit", "vsock-socket", "ptrace-attach", "bpf", "perf-event-open",
		"keyctl", "add-key", "userfaultfd", "mount", "unshare-user", "unshare-net", "setns", "clone-newuser",
		"clone3", "io-uring-setup", "init-module", "kexec-load", "process-vm-readv"}
	allowed := []string{"tcp-connect", "netlink-route", "unix-socket", "getpid"}
	for _, udp := range []bool{false, true} {
		p := Policy{Seccomp: true, SeccompUDP: udp}
		for name, sb := range policySetups(t, p) {
			t.Run(fmt.Sprintf("%s/udp=%v", name, udp), func(t *testing.T) {
				out, st := runCmd(t, sb, Command{Path: self, Args: []string{"helper-hostile", strconv.Itoa(int(port))}})
				if st.ExitCode != 0 {
					t.Fatalf("hostile engine exited %+v:\n%s", st, out)
				}
				want := map[string]bool{}
				for _, n := range denied {
					want[n] = false
				}
				for _, n := range allowed {
					want[n] = true
				}
				if udp {
					want["udp-socket"], want["udp6-socket"] = true, true
				}
				for n, ok := range want {
					line := n + "=ok\n"
					if got := strings.Contains(out, line); got != ok {
						t.Errorf("%s: allowed=%v, want %v", n, got, ok)
					}
				}
				if t.Failed() {
					t.Logf("probes:\n%s", out)
				}
			})
		}
	}
}

// Without the filter the same engine can open an MPTCP socket: the test above tests the
// filter, not the kernel.
func TestWithoutSeccompMPTCPOpens(t *testing.T) {
	if _, err := os.Stat("/proc/sys/net/mptcp/enabled"); err != nil {
		t.Skip("this kernel has no MPTCP")
	}
	_, port := listener(t)
	for name, sb := range policySetups(t, Policy{}) {
		t.Run(name, func(t *testing.T) {
			out, _ := runCmd(t, sb, Command{Path: initPath(t), Args: []string{"helper-hostile", strconv.Itoa(int(port))}})
			if !strings.Contains(out, "mptcp-connect=ok\n") {
				t.Errorf("mptcp without the filter:\n%s", out)
			}
		})
	}
}

func TestSeccompProgramAssembles(t *testing.T) {
	for _, udp := range []bool{false, true} {
		raw, err := seccompProgram(SeccompOptions{AllowUDP: udp})
		if err != nil || len(raw) < 50 {
			t.Fatalf("udp=%v: %d instructions, %v", udp, len(raw), err)
		}
	}
}

// TestOnlyTheEngineIsConfined: the engine runs under the seccomp filter, and no thread of the
// init (or of a relay) does — the init's thread that confined itself to fork the engine is
// gone (startConfined), so nothing of the supervisor shares the engine's confinement (a
// process in a Landlock domain may signal the others in it).
func TestOnlyTheEngineIsConfined(t *testing.T) {
	for name, sb := range policySetups(t, Policy{Seccomp: true}) {
		t.Run(name, func(t *testing.T) {
			p, err := sb.Start(Command{Path: "/bin/sleep", Args: []string{"30"}, Dir: "/", Env: []string{"PATH=/usr/bin:/bin"}})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { p.Kill(); _, _ = p.Wait() }()
			engines := 0
			var walk func(pid int)
			walk = func(pid int) {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				isEngine := strings.TrimSpace(string(comm)) == "sleep"
				if isEngine {
					engines++
				}
				tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
				for _, tk := range tasks {
					status, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, tk.Name()))
					if err != nil {
						continue // the thread just ended
					}
					filtered := strings.Contains(string(status), "\nSeccomp:\t2\n")
					if filtered != isEngine {
						t.Errorf("pid %d (%s) thread %s: seccomp filter %v", pid, strings.TrimSpace(string(comm)), tk.Name(), filtered)
					}
					children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, tk.Name()))
					for _, c := range strings.Fields(string(children)) {
						n, _ := strconv.Atoi(c)
						walk(n)
					}
				}
			}
			walk(p.pid)
			if engines != 1 {
				t.Fatalf("found %d engine processes under the init %d", engines, p.pid)
			}
		})
	}
}
