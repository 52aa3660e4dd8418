//go:build unix

package main

import "syscall"

// raiseFDLimit lifts the soft RLIMIT_NOFILE to the hard one and returns both as they are
// afterwards. Go's os package does the same at start-up on some systems, but not on all,
// and not when it would exceed the kernel's cap: the check before dialing needs the value
// that actually holds.
func raiseFDLimit() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = want.Max
		// A refusal (a hard limit above fs.nr_open) leaves the soft limit as it was; what
		// it is, not whether it moved, is what matters.
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, 0, err
		}
	}
	return uint64(lim.Cur), uint64(lim.Max), nil
}
