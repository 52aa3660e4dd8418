package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"

	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/egress"
	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/executor"
	"github.com/flowgate/flowgate/internal/executor/cgroup"
	"github.com/flowgate/flowgate/internal/executor/sandbox"
)

// engineConfig is the engine section of cfg as the engine package takes it.
func engineConfig(cfg config.Config) engine.Config {
	e := cfg.Engine
	return engine.Config{
		Profile: e.Profile, Command: e.Command, Args: e.Args, ClaudeCommand: e.ClaudeCommand,
		AnthropicBaseURL: e.AnthropicBaseURL, PermissionMode: e.PermissionMode, MaxRetries: e.MaxRetries,
	}
}

// egressAllow is engine.egress.allow plus engine.anthropic_base_url's host:port: the
// configured API endpoint is always a permitted destination.
func egressAllow(cfg config.Config) []string {
	allow := cfg.Engine.Egress.Allow
	if hp := baseURLHostPort(cfg.Engine.AnthropicBaseURL); hp != "" && !slices.Contains(allow, hp) {
		allow = append(slices.Clone(allow), hp)
	}
	return allow
}

// executorOptions is the engine section of cfg as the executor takes it: serve and doctor
// build the very same executor.
func executorOptions(cfg config.Config, getenv func(string) string, profile *engine.Profile, mode sandbox.Mode,
	initPath string, eg *egress.Proxy, cgm *cgroup.Manager, log *slog.Logger) executor.Options {
	e := cfg.Engine
	return executor.Options{
		Profile: profile, WorkdirRoot: cfg.Path(e.WorkdirRoot), KillGrace: e.KillGrace,
		MaxLineBytes: e.MaxLineBytes, MaxOutputBytes: e.MaxOutputBytes,
		PassEnv: e.Env, Getenv: getenv, Sandbox: mode, InitPath: initPath, Logger: log,
		Landlock: sandbox.LandlockMode(e.Landlock), ReadPaths: e.ReadPaths, WritePaths: e.WritePaths,
		ConnectPorts: e.ConnectPorts, RunAs: e.RunAs, Nice: e.Nice, Protect: cfg.ProtectedPaths(getenv),
		Egress: eg, NetNS: true, Cgroups: cgm, MaxStarting: e.MaxStarting,
		MemoryMax: int64(e.MemoryMax), PidsMax: int64(e.PidsMax), WorkdirMax: int64(e.WorkdirMaxBytes),
	}
}

// engineCgroups finds where per-task control groups can be made, nil (and the reason) when
// nowhere: memory and process limits are then not enforced.
func engineCgroups(cfg config.Config) (*cgroup.Manager, error) {
	if cfg.Engine.MemoryMax == 0 && cfg.Engine.PidsMax == 0 {
		return nil, nil
	}
	return cgroup.Detect()
}

// newEgress builds the engines' egress proxy. onDenied may be nil (doctor).
func newEgress(cfg config.Config, log *slog.Logger, m egress.Metrics, onDenied func(egress.Denial)) (*egress.Proxy, error) {
	pol, err := egress.ParsePolicy("engine.egress.allow", cfg.Engine.Egress.Allow)
	if err != nil {
		return nil, err
	}
	if hp := baseURLHostPort(cfg.Engine.AnthropicBaseURL); hp != "" {
		// The operator named this endpoint: an LLM gateway on a private address is fine.
		if err := pol.Trust(hp); err != nil {
			return nil, fmt.Errorf("engine.anthropic_base_url: %w", err)
		}
	}
	return egress.New(egress.Options{Policy: pol, Logger: log, Metrics: m, OnDenied: onDenied})
}

// baseURLPort is the TCP port of an http(s) URL (its scheme's default when none is given), 0
// for "" or a URL config validation would refuse.
func baseURLPort(raw string) int {
	if raw == "" {
		return 0
	}
	u, err := url.Parse(raw)
	if err != nil {
		return 0
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return 0
		}
		return n
	}
	switch u.Scheme {
	case "https":
		return 443
	case "http":
		return 80
	}
	return 0
}

// baseURLHostPort is host:port of an http(s) URL, "" when it has none.
func baseURLHostPort(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	p := baseURLPort(raw)
	if p == 0 {
		return ""
	}
	return net.JoinHostPort(u.Hostname(), strconv.Itoa(p))
}
