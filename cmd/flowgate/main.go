// Command flowgate is a hardened multi-tenant WebSocket gateway for headless AI swarm engines.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/flowgate/flowgate/internal/engine/sim"
	"github.com/flowgate/flowgate/internal/executor/sandbox"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "0.1.0"
	commit  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitError carries a specific exit status (2 for usage, the engine's for engine-sim).
type exitError struct {
	code int
	err  error // nil: the message was already written
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// exitCode prints err as one line on stderr (unless already reported) and picks the status.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "flowgate: "+oneLine(ee.err.Error()))
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "flowgate: "+oneLine(err.Error()))
	return 1
}

func oneLine(s string) string {
	out := []rune{}
	for _, r := range s {
		if r == '\n' {
			r = ';'
		}
		out = append(out, r)
	}
	return string(out)
}

const usage = `usage: flowgate <command> [flags]

commands:
  serve --config FILE | --dev [--data-dir D]     run the gateway
  migrate up|status                              apply / show schema migrations
  token issue --tenant T --sub S --perm P ...    mint a token with the configured signing key
  token list --tenant T                          the tokens issued for a tenant (from the audit)
  token revoke --jti J [--tenant T]              revoke a token (every tenant without --tenant)
  sessions list|end --url U --tenant T ...       a tenant's live sessions, through the running gateway
  tasks --url U [--owner S] [--status S]         every user's tasks of the tenant (task:admin), through the gateway
  tenant create|list|suspend|resume|budget ...   manage tenants
  key set|delete --tenant T                      set (key on stdin) or delete a tenant's engine key
  audit verify|export [--tenant T]               check the audit chains / dump NDJSON
  usage [--tenant T] [--since 7d] [--by day]     what the engines spent, per tenant (--json)
  swarm --url U [--token T] "objective"          run one swarm and stream its events
  engine-sim ...                                 the bundled simulated engine
  healthcheck [--url U]                          exit 0 when the ops /healthz answers 200
  doctor [--config FILE | --dev]                 check engine, sandbox, egress, secrets, store, Redis
  version                                        print version information

Run "flowgate <command> --help" for a command's flags.
`

// run is the whole program: main only supplies the process's context, arguments,
// environment and standard streams.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return &exitError{code: 2}
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "token":
		return runToken(ctx, rest, getenv, stdout, stderr)
	case "swarm":
		return runSwarm(ctx, rest, getenv, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, rest, getenv, stdout, stderr)
	case "doctor":
		return runDoctor(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, getenv, stdout, stderr)
	case "tenant":
		return runTenant(ctx, rest, getenv, stdout, stderr)
	case "key":
		return runKey(ctx, rest, getenv, os.Stdin, stdout, stderr)
	case "audit":
		return runAudit(ctx, rest, getenv, stdout, stderr)
	case "usage":
		return runUsage(ctx, rest, getenv, stdout, stderr)
	case "sessions":
		return runSessions(ctx, rest, getenv, stdout, stderr)
	case "tasks":
		return runTasks(ctx, rest, getenv, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "flowgate %s (commit %s, %s)\n", version, commit, goVersion())
		return nil
	case sim.Command:
		if err := sim.Main(ctx, rest, getenv, stdout, stderr); err != nil {
			return &exitError{code: sim.ExitCode(err)}
		}
		return nil
	case sandbox.InitArg:
		if code := sandbox.InitMain(rest); code != 0 {
			return &exitError{code: code}
		}
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError("unknown command %q", cmd)
}
