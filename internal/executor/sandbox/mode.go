package sandbox

import "fmt"

// Mode selects how a task's process tree is contained.
type Mode string

const (
	// Auto uses a PID namespace when the kernel allows it and falls back to PGroup (logged as
	// a warning).
	Auto Mode = "auto"
	// PIDNS runs every task in a fresh PID namespace whose PID 1 is the flowgate init. Killing
	// the init kills every process of the task, including setsid'd and reparented ones, and the
	// kernel does it too when the gateway dies.
	PIDNS Mode = "pidns"
	// PGroup runs every task in its own process group under a flowgate supervisor that is a
	// child subreaper. It is weaker than PIDNS: see the package's known limits in Sandbox.
	PGroup Mode = "pgroup"
)

// ParseMode parses engine.sandbox ("" means Auto).
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", Auto:
		return Auto, nil
	case PIDNS, PGroup:
		return Mode(s), nil
	}
	return "", fmt.Errorf("sandbox mode %q: want auto, pidns or pgroup", s)
}

func (m Mode) String() string { return string(m) }
