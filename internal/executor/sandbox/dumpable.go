package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// MakeNonDumpable clears the calling process's dumpable flag. A non-dumpable process's
// /proc/<pid>/environ, mem, maps and fds are owned by root and refused to ptrace-mode readers,
// so an engine running as the same user cannot read the server's environment or memory (where
// every tenant's key passes). It also disables core dumps of the server. The flag is reset by
// execve, so children are unaffected.
func MakeNonDumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}

// Dumpable reports the calling process's dumpable flag.
func Dumpable() (bool, error) {
	v, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		return false, fmt.Errorf("prctl(PR_GET_DUMPABLE): %w", err)
	}
	return v != 0, nil
}
