package sandbox

import (
	"fmt"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The seccomp filter every engine runs under, in every sandbox mode (DESIGN §15). Landlock
// decides which files and TCP ports an engine may reach; this filter closes what Landlock does
// not see: sockets other than Unix, netlink-route and plain TCP (MPTCP sockets bypass
// Landlock's TCP rules; UDP, raw and packet sockets it does not cover before ABI 10), and the
// system calls that attack the kernel or other processes rather than doing an engine's work.
// Refusals return an errno (EPERM, EAFNOSUPPORT…), never kill: a tool that probes a feature
// gets an error and goes on.

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16 // six u64; the low half of arg i (little-endian) is at offArgs+8*i
)

// denyNamespaces are clone flags that create namespaces: with them an engine could build a
// user namespace in which it is root, and from there reach kernel code unprivileged users
// cannot (the usual first step of a container escape).
const denyNamespaces = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWNET | unix.CLONE_NEWPID |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// deniedSyscalls answer EPERM: debugging and memory access to other processes, kernel
// programs and keyrings, mounts and namespaces, modules and kexec, io_uring (its operations
// open sockets and files past this filter).
func deniedSyscalls() []uintptr {
	return []uintptr{
		unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV, unix.SYS_KCMP,
		unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
		unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
		unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT,
		unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_MOVE_MOUNT,
		unix.SYS_OPEN_TREE, unix.SYS_MOUNT_SETATTR,
		unix.SYS_UNSHARE, unix.SYS_SETNS,
		unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
		unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_REBOOT,
		unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_ACCT, unix.SYS_QUOTACTL,
		unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_NAME_TO_HANDLE_AT,
		unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
	}
}

// SeccompOptions select what the filter lets through.
type SeccompOptions struct {
	// AllowUDP allows UDP sockets: only inside a network namespace of the engine's own, where
	// they reach nothing but its loopback.
	AllowUDP bool
}

// seccompProgram assembles the filter for this architecture.
func seccompProgram(o SeccompOptions) ([]bpf.RawInstruction, error) {
	ret := func(action uint32) bpf.Instruction { return bpf.RetConstant{Val: action} }
	allow := ret(unix.SECCOMP_RET_ALLOW)
	errno := func(e unix.Errno) bpf.Instruction { return ret(unix.SECCOMP_RET_ERRNO | uint32(e)) }
	ldNr := bpf.LoadAbsolute{Off: offNr, Size: 4}
	ldArg := func(i uint32) bpf.Instruction { return bpf.LoadAbsolute{Off: offArgs + 8*i, Size: 4} }
	// ifEq runs then (which must end in a return) when A == k, and falls through otherwise
	// with A unchanged.
	ifEq := func(k uint32, then ...bpf.Instruction) []bpf.Instruction {
		return append([]bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpEqual, Val: k, SkipFalse: uint8(len(then))}}, then...)
	}
	cat := func(parts ...[]bpf.Instruction) []bpf.Instruction {
		var out []bpf.Instruction
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	one := func(in ...bpf.Instruction) []bpf.Instruction { return in }

	// socket(domain, type, protocol)
	inet := cat(
		one(ldArg(1), bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf}), // SOCK_TYPE_MASK: drop NONBLOCK/CLOEXEC
		ifEq(unix.SOCK_STREAM, cat(one(ldArg(2)),
			ifEq(0, allow), ifEq(unix.IPPROTO_TCP, allow),
			one(errno(unix.EPROTONOSUPPORT)))...), // MPTCP (262), SCTP (132)
	)
	if o.AllowUDP {
		inet = append(inet, ifEq(unix.SOCK_DGRAM, cat(one(ldArg(2)),
			ifEq(0, allow), ifEq(unix.IPPROTO_UDP, allow),
			one(errno(unix.EPROTONOSUPPORT)))...)...) // ICMP "ping" sockets
	}
	inet = append(inet, errno(unix.EACCES)) // raw, packet, seqpacket; UDP outside a namespace
	socket := cat(
		one(ldArg(0)),
		ifEq(unix.AF_UNIX, allow),
		ifEq(unix.AF_NETLINK, cat(one(ldArg(2)), ifEq(unix.NETLINK_ROUTE, allow), one(errno(unix.EAFNOSUPPORT)))...),
		ifEq(unix.AF_INET, inet...),
		ifEq(unix.AF_INET6, inet...),
		one(errno(unix.EAFNOSUPPORT)),
	)
	clone := cat(
		one(ldArg(0)),
		one(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: denyNamespaces, SkipFalse: 1}),
		one(errno(unix.EPERM), allow),
	)

	prog := cat(
		one(bpf.LoadAbsolute{Off: offArch, Size: 4}),
		// Another ABI's numbers (i386 on amd64) would name other calls: refuse them whole.
		one(bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArch, SkipTrue: 1}, ret(unix.SECCOMP_RET_KILL_PROCESS)),
		one(ldNr),
		archPrologue(),
	)
	for _, nr := range deniedSyscalls() {
		prog = append(prog, ifEq(uint32(nr), errno(unix.EPERM))...)
	}
	// clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc fall back to
	// clone, whose flags it can.
	prog = append(prog, ifEq(unix.SYS_CLONE3, errno(unix.ENOSYS))...)
	prog = append(prog, ifEq(unix.SYS_CLONE, clone...)...)
	prog = append(prog, ifEq(unix.SYS_SOCKET, socket...)...)
	prog = append(prog, allow)

	for _, in := range prog {
		if j, ok := in.(bpf.JumpIf); ok && (int(j.SkipFalse) > 255 || int(j.SkipTrue) > 255) {
			return nil, fmt.Errorf("seccomp: jump too long")
		}
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	if len(raw) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp: %d instructions, at most %d", len(raw), unix.BPF_MAXINSNS)
	}
	return raw, nil
}

// applySeccomp installs the filter on the calling thread (which then execs the engine). It
// needs no_new_privs, which the init set.
func applySeccomp(o SeccompOptions) error {
	raw, err := seccompProgram(o)
	if err != nil {
		return err
	}
	filters := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filters[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filters)), Filter: &filters[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	// seccomp(2) rather than prctl: the same effect, and SECCOMP_FILTER_FLAG_SPEC_ALLOW is
	// not wanted (the kernel's speculation mitigations stay on for the engine).
	_, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): %w", e)
	}
	return nil
}
