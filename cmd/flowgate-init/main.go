// Command flowgate-init is the sandbox init of flowgate's engine processes, as a binary of
// its own: it links only the sandbox package, so it starts in about a millisecond where the
// full flowgate binary (which can serve as the init too, via its sandbox-init subcommand)
// takes several. The gateway uses it when it sits next to the flowgate binary.
package main

import (
	"os"

	"github.com/flowgate/flowgate/internal/executor/sandbox"
)

func main() {
	args := os.Args[1:]
	// The executor runs "<init> sandbox-init …" whichever binary the init is.
	if len(args) > 0 && args[0] == sandbox.InitArg {
		args = args[1:]
	}
	os.Exit(sandbox.InitMain(args))
}
