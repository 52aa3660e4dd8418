package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/executor/sandbox"
)

// TestMain lets the test binary act as the sandbox init and as small engines. Helpers exit with
// syscall.Exit: under -race os.Exit sleeps a second for late race reports.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case sandbox.InitArg:
			syscall.Exit(sandbox.InitMain(os.Args[2:]))
		case "helper-argv":
			b, _ := json.Marshal(os.Args[2:])
			fmt.Printf("%s\n", b)
			syscall.Exit(0)
		case "swarm": // the claude-flow-v2 profile's argv[1]
			sum := sha256.Sum256([]byte(os.Getenv("ANTHROPIC_API_KEY")))
			b, _ := json.Marshal(map[string]any{"args": os.Args[1:], "env": os.Environ(), "keySHA": hex.EncodeToString(sum[:])})
			fmt.Printf("%s\n", b)
			syscall.Exit(0)
		case "helper-sleep":
			// A descendant that ignores SIGTERM and SIGHUP, optionally in its own session.
			signal.Ignore(syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT)
			if len(os.Args) > 2 && os.Args[2] == "--setsid" {
				if _, err := syscall.Setsid(); err != nil {
					fmt.Println("setsid failed:", err)
				}
			}
			fmt.Println("helper-sleep ready")
			time.Sleep(time.Hour)
			syscall.Exit(0)
		case "helper-gateway":
			syscall.Exit(helperGateway(os.Args[2:]))
		case "helper-connect": // helper-connect HOST:PORT: exit 0 if a TCP connection opens
			c, err := net.DialTimeout("tcp", os.Args[2], 5*time.Second)
			if err != nil {
				fmt.Println(err)
				syscall.Exit(1)
			}
			c.Close()
			syscall.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// helperGateway is a gateway that runs one task and waits to be SIGKILLed:
// helper-gateway MODE WORKDIR_ROOT MARK.
func helperGateway(args []string) int {
	self, _ := os.Executable()
	mode, root, mark := sandbox.Mode(args[0]), args[1], args[2]
	script := fmt.Sprintf(`%[1]s helper-sleep --setsid %[2]s </dev/null & %[1]s helper-sleep %[2]s & wait`, self, mark)
	p, err := engine.New(engine.Config{Profile: engine.ProfileCustom, Command: "/bin/sh", Args: []string{"-c", script, "sh", "{objective}"}}, nil, "")
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	ex, err := New(Options{Profile: p, WorkdirRoot: root, Sandbox: mode, InitPath: self, ReadPaths: []string{filepath.Dir(self)}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	ready := 0
	out := funcOutput(func(line []byte) {
		if strings.Contains(string(line), "ready") {
			ready++
			if ready == 2 {
				fmt.Println("ready")
			}
		}
	})
	_, err = ex.Run(context.Background(), Spec{TaskID: "gw", Request: engine.Request{Objective: mark, Agents: 1}}, out)
	fmt.Println("run returned:", err)
	return 0
}

type funcOutput func(line []byte)

func (f funcOutput) Stdout(line []byte, _ bool) { f(line) }
func (f funcOutput) Stderr(line []byte, _ bool) { f(line) }
