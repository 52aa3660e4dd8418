//go:build linux

package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests here run the engine as a real process: the test binary itself, which TestMain turns
// into "flowgate engine-sim" when SIM_TEST_MAIN=1.

const waitLimit = 30 * time.Second // generous bound on a wait for a condition, not a timing assert

func engineCmd(args []string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{Command}, args...)...)
	// The race detector sleeps a second at a clean exit by default; the engine has nothing to wait for.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(append(os.Environ(), testMainEnv+"=1", "GORACE="+gorace), env...)
	return cmd
}

// engine is a running engine process with its stdout read line by line and stderr collected.
type engine struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout io.ReadCloser
	lines  *bufio.Reader
	errs   chan string // stderr lines; closed at EOF
	done   chan struct{}
	state  *os.ProcessState
}

func startEngine(t *testing.T, args []string, env ...string) *engine {
	t.Helper()
	cmd := engineCmd(args, env...)
	// Own pipes rather than StdoutPipe: Wait may then run while the test still reads.
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	e := &engine{t: t, cmd: cmd, stdout: outR, lines: bufio.NewReader(outR), errs: make(chan string, 1024), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(e.errs)
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			select {
			case e.errs <- sc.Text():
			default: // a test that floods stderr only needs the first lines
			}
		}
	}()
	go func() {
		defer wg.Done()
		_ = cmd.Wait()
		e.state = cmd.ProcessState
		close(e.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-e.done
		_ = outR.Close()
		_ = errR.Close()
		wg.Wait()
	})
	return e
}

func (e *engine) readEvent() event {
	e.t.Helper()
	line, err := e.lines.ReadString('\n')
	if err != nil {
		e.t.Fatalf("read stdout: %v (got %q)", err, line)
	}
	o := decode(e.t, line)
	if len(o.events) != 1 {
		e.t.Fatalf("not an event: %q", line)
	}
	return o.events[0]
}

func (e *engine) readType(typ string) event {
	e.t.Helper()
	ev := e.readEvent()
	if ev.str("type") != typ {
		e.t.Fatalf("got %v, want a %s event", ev, typ)
	}
	return ev
}

func (e *engine) waitStderr(substr string) {
	e.t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case line, ok := <-e.errs:
			if !ok {
				e.t.Fatalf("stderr closed before %q", substr)
			}
			if strings.Contains(line, substr) {
				return
			}
		case <-timeout:
			e.t.Fatalf("no stderr line containing %q", substr)
		}
	}
}

func (e *engine) signal(sig syscall.Signal) {
	e.t.Helper()
	if err := e.cmd.Process.Signal(sig); err != nil {
		e.t.Fatalf("signal %v: %v", sig, err)
	}
}

func (e *engine) wait() *os.ProcessState {
	e.t.Helper()
	select {
	case <-e.done:
		return e.state
	case <-time.After(waitLimit):
		e.t.Fatal("engine did not exit")
		return nil
	}
}

// procStat returns the state, ppid and session of pid from /proc/<pid>/stat.
func procStat(pid int) (state string, ppid, session int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, err
	}
	// comm may contain spaces and parentheses: fields start after the last ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 4 {
		return "", 0, 0, fmt.Errorf("short stat %q", b)
	}
	ppid, _ = strconv.Atoi(f[1])
	session, _ = strconv.Atoi(f[3])
	return f[0], ppid, session, nil
}

func alive(pid int) bool {
	state, _, _, err := procStat(pid)
	return err == nil && state != "Z" && state != "X"
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// sigIgnored reports whether pid has sig set to SIG_IGN (the SigIgn mask of /proc/<pid>/status).
func sigIgnored(t *testing.T, pid int, sig syscall.Signal) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return mask&(1<<(uint(sig)-1)) != 0
		}
	}
	t.Fatal("no SigIgn in status")
	return false
}

func TestProcessExitStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		env        []string
		code       int
		stdout     string // substring
		stderr     string // substring
		emptyOut   bool
		wantEvents int // 0 = do not count
	}{
		{name: "success", args: []string{"swarm", "x", "--pace", "0", "--events", "4"}, stdout: `"subtype":"success"`, wantEvents: 1 + 5 + 4 + 1},
		{name: "help", args: []string{"--help"}, stdout: "SIMULATED"},
		{name: "unknown flag", args: []string{"swarm", "x", "--nope"}, code: 2, stderr: `unknown flag "--nope"`, emptyOut: true},
		{name: "fail", args: []string{"swarm", "x sim:fail sim:pace=0"}, code: 1, stdout: `"is_error":true`, stderr: "simulated failure"},
		{name: "exit code", args: []string{"-p", "x", "--exit-code", "5", "--pace", "0"}, code: 5, stdout: `"is_error":false`},
		{name: "env knobs", args: []string{"swarm", "x"}, env: []string{"FLOWGATE_SIM_EVENTS=3", "FLOWGATE_SIM_PACE=0", "FLOWGATE_SIM_IS_ERROR=1"}, stdout: `"is_error":true`, wantEvents: 1 + 5 + 3 + 1},
		{name: "print-env", args: []string{"swarm", "x", "--print-env", "--pace", "0", "--events", "1"}, env: []string{"ANTHROPIC_API_KEY=sk-ant-probe"}, stdout: `"ANTHROPIC_API_KEY":"sk-ant-probe"`},
		{name: "sleeper", args: []string{"sleeper", "--marker", "m", "--duration", "1ms"}, emptyOut: true},
		{name: "objective with shell syntax", args: []string{"swarm", "$(touch /tmp/sim-pwned) `id` ; exit 3", "--pace", "0", "--events", "2"}, stdout: `$(touch /tmp/sim-pwned)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := engineCmd(tt.args, tt.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			// stdin is a pipe nobody writes or closes: the engine must not wait for it.
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			cmd.Stdin = r
			err = cmd.Run()
			r.Close()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatal(err)
			}
			if got := cmd.ProcessState.ExitCode(); got != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", got, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) {
				t.Fatalf("stdout %q\nstderr %q", stdout.String(), stderr.String())
			}
			if tt.emptyOut && stdout.Len() != 0 {
				t.Fatalf("stdout %q, want nothing", stdout.String())
			}
			if tt.wantEvents > 0 {
				if o := decode(t, stdout.String()); len(o.events) != tt.wantEvents {
					t.Fatalf("%d events, want %d", len(o.events), tt.wantEvents)
				}
			}
		})
	}
	if _, err := os.Stat("/tmp/sim-pwned"); err == nil {
		t.Fatal("the objective was run by a shell")
	}
}

func TestProcessSIGTERM(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"hang", []string{"swarm", "x", "--hang"}},
		{"hang directive", []string{"swarm", "x sim:hang"}},
		{"paced", []string{"swarm", "x", "--events", "100000", "--pace", "5ms"}},
		{"unpaced", []string{"swarm", "x", "--events", "10000000", "--pace", "0"}},
		{"sleep", []string{"swarm", "x", "--events", "1", "--pace", "0", "--sleep", "1h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := startEngine(t, tt.args)
			e.readType("system")
			if tt.name == "sleep" {
				for e.readEvent().str("type") != "result" {
				}
			}
			e.signal(syscall.SIGTERM)
			rest, _ := io.ReadAll(e.lines)
			st := e.wait()
			if st.ExitCode() != ExitTerminated {
				t.Fatalf("exit status %v, want %d", st, ExitTerminated)
			}
			if bytes.Contains(rest, []byte(`"type":"result"`)) {
				t.Fatal("a result was written after SIGTERM")
			}
			if (tt.name == "hang" || tt.name == "sleep") && len(rest) != 0 {
				t.Fatalf("wrote %q after SIGTERM", rest)
			}
			if len(rest) > 0 && rest[len(rest)-1] != '\n' {
				t.Fatal("the last line was cut short")
			}
		})
	}
}

func TestProcessIgnoreTerm(t *testing.T) {
	t.Parallel()
	t.Run("hang dies only on SIGKILL", func(t *testing.T) {
		t.Parallel()
		e := startEngine(t, []string{"swarm", "x", "--hang", "--ignore-term"})
		e.readType("system")
		for range 2 {
			e.signal(syscall.SIGTERM)
			e.waitStderr("ignoring SIGTERM")
			if !alive(e.cmd.Process.Pid) {
				t.Fatal("engine died on SIGTERM")
			}
		}
		e.signal(syscall.SIGKILL)
		ws := e.wait().Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("wait status %v, want killed by SIGKILL", ws)
		}
	})
	t.Run("run completes despite SIGTERM", func(t *testing.T) {
		t.Parallel()
		e := startEngine(t, []string{"swarm", "x sim:ignore-term", "--events", "4", "--pace", "20ms"})
		e.readType("system")
		e.signal(syscall.SIGTERM)
		e.waitStderr("ignoring SIGTERM")
		rest, _ := io.ReadAll(e.lines)
		if st := e.wait(); st.ExitCode() != 0 {
			t.Fatalf("exit status %v, want 0", st)
		}
		if o := decode(t, string(rest)); lastEvent(o).str("type") != "result" {
			t.Fatalf("no result after an ignored SIGTERM: %q", rest)
		}
	})
}

func TestProcessSetsidGrandchild(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		ignoreTerm bool
	}{
		{"flag", []string{"swarm", "x", "--setsid-child", "--hang", "--marker", "MARKER"}, false},
		{"directive ignore-term", []string{"swarm", "x sim:setsid-child sim:hang sim:ignore-term sim:marker=MARKER"}, true},
		{"env", []string{"swarm", "x"}, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			marker := fmt.Sprintf("simtest-%d-%d", os.Getpid(), i)
			for j := range tt.args {
				tt.args[j] = strings.ReplaceAll(tt.args[j], "MARKER", marker)
			}
			var env []string
			if tt.name == "env" {
				env = []string{"FLOWGATE_SIM_SETSID_CHILD=1", "FLOWGATE_SIM_HANG=true", "FLOWGATE_SIM_MARKER=" + marker}
			}
			e := startEngine(t, tt.args, env...)
			e.readType("system")
			gc := e.readType("sim_grandchild")
			gpid := int(gc.num(t, "pid"))
			t.Cleanup(func() {
				if strings.Contains(cmdline(gpid), marker) { // never kill a recycled pid
					_ = syscall.Kill(gpid, syscall.SIGKILL)
				}
			})
			if gc.str("marker") != marker || gc["ignoreTerm"] != tt.ignoreTerm {
				t.Fatalf("sim_grandchild = %v", gc)
			}
			if cl := cmdline(gpid); !strings.Contains(cl, Command+" "+SleeperCommand+" --marker "+marker) {
				t.Fatalf("grandchild cmdline %q", cl)
			}
			enginePid := e.cmd.Process.Pid
			_, ppid, gSession, err := procStat(gpid)
			if err != nil {
				t.Fatal(err)
			}
			_, _, eSession, err := procStat(enginePid)
			if err != nil {
				t.Fatal(err)
			}
			if ppid != enginePid || gSession != gpid || gSession == eSession {
				t.Fatalf("grandchild ppid %d session %d; engine pid %d session %d: want a new session led by the grandchild",
					ppid, gSession, enginePid, eSession)
			}
			if got := sigIgnored(t, gpid, syscall.SIGTERM); got != tt.ignoreTerm {
				t.Fatalf("grandchild ignores SIGTERM = %v, want %v", got, tt.ignoreTerm)
			}

			if tt.ignoreTerm {
				// SIG_IGN discards the signal when it is sent, so this check has no race.
				if err := syscall.Kill(gpid, syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				if !alive(gpid) {
					t.Fatal("grandchild died on SIGTERM")
				}
				e.signal(syscall.SIGKILL)
			} else {
				e.signal(syscall.SIGTERM)
			}
			e.wait()
			// The engine is gone; the grandchild, in its own session, is not.
			if !alive(gpid) {
				t.Fatal("the grandchild died with the engine")
			}
			if err := syscall.Kill(gpid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestProcessBrokenPipe(t *testing.T) {
	t.Parallel()
	for _, pace := range []string{"0", "1ms"} {
		t.Run("pace "+pace, func(t *testing.T) {
			t.Parallel()
			e := startEngine(t, []string{"swarm", "x", "--pace", pace, "--events", "10000000"})
			e.readType("system")
			if err := e.stdout.Close(); err != nil {
				t.Fatal(err)
			}
			st := e.wait()
			var stderr []string
			for line := range e.errs {
				stderr = append(stderr, line)
			}
			if st.ExitCode() != ExitBrokenPipe || len(stderr) != 0 {
				t.Fatalf("exit status %v, stderr %q; want exit %d and nothing on stderr", st, stderr, ExitBrokenPipe)
			}
		})
	}
}

func TestProcessLinesAreWhole(t *testing.T) {
	t.Parallel()
	// Through a real pipe, with a huge line in the middle: every line is whole and every JSON
	// line is valid.
	e := startEngine(t, []string{"swarm", "x", "--pace", "0", "--events", "50000", "--huge-line", "3000000", "--non-json"})
	n := 0
	for {
		line, err := e.lines.ReadString('\n')
		if err == io.EOF && line == "" {
			break
		}
		if err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		if strings.HasPrefix(line, "{") && !json.Valid([]byte(line)) {
			t.Fatalf("line %d is not valid JSON: %.200s", n, line)
		}
		n++
	}
	if st := e.wait(); st.ExitCode() != 0 || n < 50000 {
		t.Fatalf("exit %v after %d lines", st, n)
	}
}
