package e2e

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/engine/anthropicmock"
	"github.com/flowgate/flowgate/internal/engine/enginetest"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

// doctor runs `flowgate doctor --dev` with env on top of a bare environment.
func doctor(t *testing.T, env ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "doctor", "--dev", "--data-dir", t.TempDir(), "--timeout", "20s")
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestDoctor(t *testing.T) {
	claude := enginetest.ClaudeBin(t)
	mock := anthropicmock.New(t, anthropicmock.Options{})
	// A loopback port nothing listens on: the egress check must fail on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	real := []string{"FLOWGATE_ENGINE_PROFILE=claude-code", "FLOWGATE_ENGINE_COMMAND=" + claude, "FLOWGATE_ENGINE_ANTHROPIC_BASE_URL=" + mock.URL()}

	tests := []struct {
		name string
		env  []string
		ok   bool
		want []string // lines (or parts) the report must hold
	}{
		{"dev defaults", nil, true, []string{"ok   config", "ok   engine    engine.command:", "ok   sandbox", "ok   egress", "ok   store", "ok   secrets", "ok   redis"}},
		{"real claude-code", real, true, []string{"ok   engine    engine.command: " + claude + " 2.1.332 (Claude Code)", "ok   egress    " + strings.TrimPrefix(mock.URL(), "http://") + " reachable", "permission mode acceptEdits"}},
		{"unknown permission mode", append(real, "FLOWGATE_ENGINE_PERMISSION_MODE=yolo"), false, []string{"FAIL config", "engine.permission_mode"}},
		{"relative claude_command", append(real, "FLOWGATE_ENGINE_CLAUDE_COMMAND=claude"), false, []string{"FAIL config", "engine.claude_command"}},
		{"base URL not http", append(real, "FLOWGATE_ENGINE_ANTHROPIC_BASE_URL=ftp://127.0.0.1/"), false, []string{"FAIL config", "engine.anthropic_base_url"}},
		{"engine missing", []string{"FLOWGATE_ENGINE_PROFILE=claude-code", "FLOWGATE_ENGINE_COMMAND=/nonexistent/claude"}, false, []string{"FAIL engine", "engine.command"}},
		{"egress unreachable", append(real[:2:2], "FLOWGATE_ENGINE_ANTHROPIC_BASE_URL="+closed), false, []string{"FAIL egress", "engine.anthropic_base_url"}},
		{"bypassPermissions outside the sandbox", append(real, "FLOWGATE_ENGINE_PERMISSION_MODE=bypassPermissions", "FLOWGATE_ENGINE_SANDBOX=pgroup"), false, []string{"FAIL sandbox", "engine.permission_mode"}},
		{"redis unreachable", []string{"FLOWGATE_STORE_DRIVER=postgres", "FLOWGATE_STORE_DSN=" + storetest.PostgresDSN(t),
			"FLOWGATE_CLUSTER_REDIS_URL=redis://" + strings.TrimPrefix(closed, "http://")}, false, []string{"FAIL redis", "cluster.redis_url", "ok   store     postgres"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := doctor(t, tt.env...)
			if (code == 0) != tt.ok {
				t.Errorf("exit %d, want ok=%v", code, tt.ok)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("report lacks %q", w)
				}
			}
			if t.Failed() {
				t.Logf("report:\n%s", out)
			}
		})
	}
	t.Run("claude-flow with claude", func(t *testing.T) {
		cf := enginetest.ClaudeFlowBin(t)
		out, code := doctor(t, "FLOWGATE_ENGINE_PROFILE=claude-flow-v2", "FLOWGATE_ENGINE_COMMAND="+cf,
			"FLOWGATE_ENGINE_CLAUDE_COMMAND="+claude, "FLOWGATE_ENGINE_ANTHROPIC_BASE_URL="+mock.URL())
		if code != 0 || !strings.Contains(out, "engine.claude_command: "+claude+" 2.1.332") || !strings.Contains(out, filepath.Join("node_modules", "claude-flow")) {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
	t.Run("claude-flow without claude", func(t *testing.T) {
		cf := enginetest.ClaudeFlowBin(t)
		out, code := doctor(t, "FLOWGATE_ENGINE_PROFILE=claude-flow-v2", "FLOWGATE_ENGINE_COMMAND="+cf)
		if code == 0 || !strings.Contains(out, "FAIL engine") || !strings.Contains(out, "engine.claude_command") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
}
