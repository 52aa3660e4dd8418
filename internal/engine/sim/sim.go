package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Command is the flowgate subcommand that reaches Main. The setsid grandchild is started as
// "<os.Executable()> engine-sim sleeper …", so the binary must route that word to Main too.
const Command = "engine-sim"

// SleeperCommand is the internal subcommand (first word after Command) of the grandchild.
const SleeperCommand = "sleeper"

// Exit statuses Main asks for besides 0, 1 and --exit-code.
const (
	ExitUsage      = 2
	ExitInterrupt  = 130 // SIGINT
	ExitBrokenPipe = 141 // stdout closed by the reader
	ExitTerminated = 143 // SIGTERM or ctx cancelled
)

// Sentinel errors wrapped by the *ExitError Main returns, for callers that branch on the cause.
var (
	ErrUsage            = errors.New("engine-sim: usage error")
	ErrTerminated       = errors.New("engine-sim: terminated")
	ErrBrokenPipe       = errors.New("engine-sim: stdout closed")
	ErrSimulatedFailure = errors.New("engine-sim: simulated failure")
)

// ExitError carries the exit status Main wants. Main has already written whatever a user should
// see to stdout or stderr, so the caller exits with Code and prints nothing more.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("engine-sim: exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the process exit status for Main's result: 0 for nil, Code for an *ExitError, 1
// for anything else.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// Main runs the simulated engine. args excludes the "engine-sim" word itself. getenv reads the
// FLOWGATE_SIM_* knobs and ANTHROPIC_API_KEY (nil = none set). Main handles SIGTERM, SIGINT and
// SIGPIPE itself while it runs; ctx cancellation stops it like SIGTERM, except under
// --ignore-term, where only SIGKILL ends the run. Every error is an *ExitError whose message
// Main has already written to stderr when there was one to write.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	errOut := &lockedWriter{w: stderr}
	if len(args) > 0 && args[0] == SleeperCommand {
		return sleeperMain(ctx, args[1:], stdout, errOut)
	}
	cfg, err := parse(args, getenv)
	if err != nil {
		return usageExit(err, stdout, errOut)
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if ctx.Err() != nil && !cfg.ignoreTerm {
		return &ExitError{Code: ExitTerminated, Err: ErrTerminated}
	}
	st := startStopper(ctx, cfg.ignoreTerm, true, errOut)
	defer st.close()
	r := newRun(cfg, getenv, stdout, errOut, st.done)
	err = r.run()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errStopped):
		return &ExitError{Code: st.exitCode(), Err: ErrTerminated}
	case errors.Is(err, syscall.EPIPE):
		return &ExitError{Code: ExitBrokenPipe, Err: ErrBrokenPipe}
	case errors.Is(err, ErrSimulatedFailure):
		return err
	default:
		fmt.Fprintf(errOut, "engine-sim: %v\n", err)
		return &ExitError{Code: 1, Err: err}
	}
}

func usageExit(err error, stdout, stderr io.Writer) error {
	if errors.Is(err, errHelp) {
		_, _ = io.WriteString(stdout, usageText)
		return nil
	}
	fmt.Fprintf(stderr, "engine-sim: %v (see flowgate engine-sim --help)\n", err)
	return &ExitError{Code: ExitUsage, Err: err}
}

// sleeperMain is the setsid grandchild: it sleeps for its duration and writes nothing. Under
// --ignore-term it sets SIGTERM to SIG_IGN in the kernel, which /proc/<pid>/status shows.
func sleeperMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sc, err := parseSleeper(args)
	if err != nil {
		return usageExit(err, stdout, stderr)
	}
	if sc.ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	st := startStopper(ctx, sc.ignoreTerm, !sc.ignoreTerm, stderr)
	defer st.close()
	if sc.readyFD > 0 {
		// Tell the engine the signal set-up is done, so it reports the grandchild only once
		// SIGTERM is really ignored.
		f := os.NewFile(uintptr(sc.readyFD), "ready")
		_, _ = f.Write([]byte{'1'})
		_ = f.Close()
	}
	if err := sleepOrStop(sc.duration, st.done); err != nil {
		return &ExitError{Code: st.exitCode(), Err: ErrTerminated}
	}
	return nil
}

// stopper turns signals and ctx into one channel the run watches between events.
type stopper struct {
	sigc chan os.Signal
	done chan struct{} // closed when the run must stop
	quit chan struct{}
	wg   sync.WaitGroup
	code int // set before done is closed
}

// startStopper watches SIGINT, SIGPIPE and (when watchTerm) SIGTERM, and ctx unless ignoreTerm.
// A SIGTERM under ignoreTerm is noted on stderr and otherwise dropped. Catching SIGPIPE makes a
// write to a closed stdout return EPIPE instead of killing the process.
func startStopper(ctx context.Context, ignoreTerm, watchTerm bool, stderr io.Writer) *stopper {
	s := &stopper{sigc: make(chan os.Signal, 8), done: make(chan struct{}), quit: make(chan struct{})}
	sigs := []os.Signal{syscall.SIGINT, syscall.SIGPIPE}
	if watchTerm {
		sigs = append(sigs, syscall.SIGTERM)
	}
	signal.Notify(s.sigc, sigs...)
	ctxDone := ctx.Done()
	if ignoreTerm {
		// The gateway's own ctx is cancelled by SIGTERM too; honouring it would undo the knob.
		ctxDone = nil
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		notes := 0
		for {
			select {
			case <-s.quit:
				return
			case <-ctxDone:
				s.code = ExitTerminated
			case sig := <-s.sigc:
				switch sig {
				case syscall.SIGPIPE:
					continue
				case syscall.SIGTERM:
					if ignoreTerm {
						if notes < maxStderrNotes {
							notes++
							_, _ = io.WriteString(stderr, "engine-sim: ignoring SIGTERM (--ignore-term)\n")
						}
						continue
					}
					s.code = ExitTerminated
				default:
					s.code = ExitInterrupt
				}
			}
			close(s.done)
			return
		}
	}()
	return s
}

// exitCode is valid once done is closed.
func (s *stopper) exitCode() int {
	<-s.done
	return s.code
}

func (s *stopper) close() {
	signal.Stop(s.sigc)
	close(s.quit)
	s.wg.Wait()
}

// lockedWriter serialises stderr lines from the run and the signal watcher.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return len(p), nil
	}
	return l.w.Write(p)
}
