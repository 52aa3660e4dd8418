package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/executor"
	"github.com/flowgate/flowgate/internal/executor/sandbox"
	"github.com/flowgate/flowgate/internal/secrets"
)

// doctorProbeTenant is a tenant id no one creates (ids are [a-z0-9-]); the secrets check asks
// the provider about its key to prove the provider answers, expecting "not found".
const doctorProbeTenant = "flowgate-doctor-probe"

// maxVersionOutput bounds what is read of an engine's --version.
const maxVersionOutput = 4 << 10

// doctorCheck is one line of the report.
type doctorCheck struct {
	name   string
	ok     bool
	detail string
}

// runDoctor checks that the configured gateway can do its job: the engine's binaries resolve
// and run, the sandbox mode, the engine's way out to the API, the secrets provider, the store
// and Redis. One line per check; exit 0 only when every check passes.
func runDoctor(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("doctor", stderr)
	var cf configFlags
	cf.register(fs)
	timeout := fs.Duration("timeout", 10*time.Second, "give up on each check after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("doctor takes no arguments (got %q)", fs.Arg(0))
	}
	if *timeout <= 0 {
		return usageError("doctor: --timeout must be positive")
	}
	var checks []doctorCheck
	report := func(c doctorCheck) {
		checks = append(checks, c)
		word := "ok  "
		if !c.ok {
			word = "FAIL"
		}
		fmt.Fprintf(stdout, "%s %-9s %s\n", word, c.name, oneLine(c.detail))
	}
	cfg, err := cf.load(getenv)
	if err != nil {
		report(doctorCheck{"config", false, err.Error()})
		return &exitError{code: 1}
	}
	source := cf.path
	if cf.dev {
		source = "--dev"
	}
	report(doctorCheck{"config", true, fmt.Sprintf("%s: profile %s, data_dir %s", source, cfg.Engine.Profile, cfg.DataDir)})
	// The checks' own logs would interleave with the report: they go to stderr, warnings only.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	for _, c := range doctorEngine(ctx, cfg, getenv, *timeout, log) {
		report(c)
	}
	for _, c := range doctorServices(ctx, cfg, *timeout, log) {
		report(c)
	}
	for _, c := range checks {
		if !c.ok {
			return &exitError{code: 1}
		}
	}
	return nil
}

// doctorEngine checks the engine profile, its binaries, the sandbox and the egress path.
func doctorEngine(ctx context.Context, cfg config.Config, getenv func(string) string, timeout time.Duration, log *slog.Logger) []doctorCheck {
	self, err := os.Executable()
	if err != nil {
		return []doctorCheck{{"engine", false, "locate own binary: " + err.Error()}}
	}
	profile, err := engine.New(engineConfig(cfg), exec.LookPath, self)
	if err != nil {
		return []doctorCheck{{"engine", false, err.Error()}}
	}
	var out []doctorCheck
	keys := []string{"engine.command", "engine.claude_command"}
	path := profile.Path(executor.DefaultPath)
	for i, bin := range profile.Binaries() {
		key := keys[min(i, 1)]
		switch profile.Name() {
		case engine.ProfileSim:
			out = append(out, doctorCheck{"engine", true, fmt.Sprintf("%s: %s engine-sim (the simulated engine; needs no key and no network)", key, bin)})
			continue
		case engine.ProfileCustom:
			out = append(out, doctorCheck{"engine", true, fmt.Sprintf("%s: %s (custom engine: not run)", key, bin)})
			continue
		}
		in := engine.Inspect(bin, path)
		v, err := engineVersion(ctx, bin, path, timeout)
		if err != nil {
			out = append(out, doctorCheck{"engine", false, fmt.Sprintf("%s: %s --version: %v", key, bin, err)})
			continue
		}
		out = append(out, doctorCheck{"engine", true, fmt.Sprintf("%s: %s %s (installed in %s)", key, bin, v, in.Root)})
	}

	mode, err := sandbox.ParseMode(cfg.Engine.Sandbox)
	if err != nil {
		return append(out, doctorCheck{"sandbox", false, "engine.sandbox: " + err.Error()})
	}
	eg, err := newEgress(cfg, log, nil, nil)
	if err != nil {
		return append(out, doctorCheck{"egress", false, err.Error()})
	}
	cgm, cgErr := engineCgroups(cfg)
	switch {
	case cgErr != nil:
		// Not a failure: the gateway runs; the operator should know the limits do not hold.
		out = append(out, doctorCheck{"limits", true, "WARNING engine.memory_max and engine.pids_max are not enforced: " + cgErr.Error()})
	case cgm != nil:
		out = append(out, doctorCheck{"limits", true, fmt.Sprintf("cgroup v%d: memory_max %d bytes, pids_max %d, workdir_max_bytes %d",
			cgm.Version(), int64(cfg.Engine.MemoryMax), cfg.Engine.PidsMax, int64(cfg.Engine.WorkdirMaxBytes))})
	default:
		out = append(out, doctorCheck{"limits", true, "engine.memory_max and engine.pids_max are 0: no limits"})
	}
	exe, err := executor.New(executorOptions(cfg, getenv, profile, mode, initBinary(self, log), eg, cgm, log))
	if err != nil {
		out = append(out, doctorCheck{"sandbox", false, err.Error()})
	} else {
		detail := fmt.Sprintf("mode %s, Landlock ABI %d, seccomp on", exe.SandboxMode(), exe.LandlockABI())
		if exe.LandlockABI() == 0 {
			detail += " (engines are not confined by Landlock)"
		}
		if exe.NetworkNamespace() {
			detail += ", network namespace (loopback only; the egress proxy is the way out)"
		} else {
			detail += ", no network namespace (refused here: engines reach the network through the egress proxy, Landlock and seccomp only; deploy/kubernetes has the NetworkPolicy for this case)"
		}
		if pm := profile.PermissionMode(); pm != "" {
			detail += ", permission mode " + pm
		}
		out = append(out, doctorCheck{"sandbox", true, detail})
	}

	switch profile.Name() {
	case engine.ProfileClaudeCode, engine.ProfileClaudeFlowV2:
		target := "api.anthropic.com:443"
		key := "engine.anthropic_base_url (unset: Claude Code's default)"
		if cfg.Engine.AnthropicBaseURL != "" {
			target, key = baseURLHostPort(cfg.Engine.AnthropicBaseURL), "engine.anthropic_base_url"
		}
		dctx, cancel := context.WithTimeout(ctx, timeout)
		conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", target)
		cancel()
		if err != nil {
			out = append(out, doctorCheck{"egress", false, fmt.Sprintf("%s: cannot reach %s: %v", key, target, err)})
		} else {
			conn.Close()
			out = append(out, doctorCheck{"egress", true, fmt.Sprintf("%s reachable from the gateway's egress proxy; engines may reach %v", target, egressAllow(cfg))})
		}
	default:
		out = append(out, doctorCheck{"egress", true, "not checked: the " + profile.Name() + " engine is not an Anthropic API client"})
	}
	return out
}

// engineVersion runs bin --version with an environment as bare as an engine's.
func engineVersion(ctx context.Context, bin, path string, timeout time.Duration) (string, error) {
	home, err := os.MkdirTemp("", "flowgate-doctor-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(home)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.Env = []string{"PATH=" + path, "HOME=" + home, "TMPDIR=" + home, "LANG=C.UTF-8",
		"DISABLE_AUTOUPDATER=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"}
	cmd.Dir = home
	var buf bytes.Buffer
	cmd.Stdout = &limitWriter{w: &buf, n: maxVersionOutput}
	cmd.Stderr = cmd.Stdout
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	first, _, _ := strings.Cut(strings.TrimSpace(buf.String()), "\n")
	if err != nil {
		if first != "" {
			return "", fmt.Errorf("%w: %s", err, truncateRunes(first, 200))
		}
		return "", err
	}
	if first == "" {
		return "", errors.New("printed nothing")
	}
	return truncateRunes(first, 200), nil
}

// doctorServices checks the secrets provider, the store and Redis.
func doctorServices(ctx context.Context, cfg config.Config, timeout time.Duration, log *slog.Logger) []doctorCheck {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out []doctorCheck
	a, err := openApp(ctx, cfg, log, appOptions{})
	if err != nil {
		// openApp names the failing key (store:, secrets.…:, auth.…:).
		return append(out, doctorCheck{"store", false, err.Error()})
	}
	defer a.close(context.WithoutCancel(ctx))
	if err := a.db.Ping(ctx); err != nil {
		out = append(out, doctorCheck{"store", false, "store: " + err.Error()})
	} else {
		where := cfg.Path(cfg.Store.Path)
		if cfg.Store.Driver == "postgres" {
			where = "store.dsn"
		}
		out = append(out, doctorCheck{"store", true, fmt.Sprintf("%s (%s), migrations applied", cfg.Store.Driver, where)})
	}
	// Ask about a real tenant's key where there is one: a gateway role scoped to tenants'
	// secrets (deploy/iam) may be refused anything else. Not found is an answer too.
	probe, keyRef := doctorProbeTenant, ""
	if ts, err := a.db.ListTenants(ctx, 1, ""); err == nil && len(ts) > 0 {
		probe, keyRef = ts[0].ID, ts[0].KeyRef
	}
	_, err = a.keys.Describe(ctx, probe, keyRef)
	switch {
	case err == nil, errors.Is(err, secrets.ErrNotFound):
		out = append(out, doctorCheck{"secrets", true, fmt.Sprintf("provider %s answers (asked about tenant %s's key)", cfg.Secrets.Provider, probe)})
	default:
		out = append(out, doctorCheck{"secrets", false, fmt.Sprintf("secrets.%s: %v", cfg.Secrets.Provider, err)})
	}
	if cfg.Cluster.RedisURL == "" {
		out = append(out, doctorCheck{"redis", true, "not used (cluster.redis_url is empty: single node)"})
		return out
	}
	opts, err := redis.ParseURL(cfg.Cluster.RedisURL)
	if err != nil {
		return append(out, doctorCheck{"redis", false, "cluster.redis_url: not a redis URL"})
	}
	rc := redis.NewClient(opts)
	defer rc.Close()
	if err := rc.Ping(ctx).Err(); err != nil {
		out = append(out, doctorCheck{"redis", false, fmt.Sprintf("cluster.redis_url: %s: %v", opts.Addr, err)})
	} else {
		out = append(out, doctorCheck{"redis", true, opts.Addr + " answers"})
	}
	return out
}

// limitWriter keeps the first n bytes and discards the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.n -= k
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
