package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/clientip"
	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/executor"
	"github.com/flowgate/flowgate/internal/executor/sandbox"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/ratelimit"
	"github.com/flowgate/flowgate/internal/server"
	"github.com/flowgate/flowgate/internal/session"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/task"
	"github.com/flowgate/flowgate/internal/tenant"
	"github.com/flowgate/flowgate/internal/validation"
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	var cf configFlags
	cf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("serve takes no arguments (got %q)", fs.Arg(0))
	}
	cfg, err := cf.load(getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	// A child must not be able to read this process's memory or environment through /proc.
	if err := sandbox.MakeNonDumpable(); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}

	a, err := openApp(ctx, cfg, log, appOptions{checkpoints: true})
	if err != nil {
		return err
	}
	defer a.close(context.WithoutCancel(ctx))
	if cfg.Dev {
		if err := devBootstrap(ctx, a); err != nil {
			return err
		}
	}
	node := cfg.Cluster.NodeID
	if node == "" {
		node = nodeName()
	}
	if n, err := a.db.InterruptRunning(ctx, ""); err != nil {
		return fmt.Errorf("store: mark interrupted tasks: %w", err)
	} else if n > 0 {
		log.Warn("tasks left running by an earlier process were marked interrupted", "count", n)
	}

	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locate own binary: %w", err)
	}
	profile, err := engine.New(engine.Config{Profile: cfg.Engine.Profile, Command: cfg.Engine.Command, Args: cfg.Engine.Args}, exec.LookPath, self)
	if err != nil {
		return err
	}
	mode, err := sandbox.ParseMode(cfg.Engine.Sandbox)
	if err != nil {
		return fmt.Errorf("engine.sandbox: %w", err)
	}
	workdir := cfg.Path(cfg.Engine.WorkdirRoot)
	exe, err := executor.New(executor.Options{
		Profile: profile, WorkdirRoot: workdir, KillGrace: cfg.Engine.KillGrace,
		MaxLineBytes: cfg.Engine.MaxLineBytes, MaxOutputBytes: cfg.Engine.MaxOutputBytes,
		PassEnv: cfg.Engine.Env, Getenv: getenv, Sandbox: mode, InitPath: self, Logger: log,
	})
	if err != nil {
		return err
	}
	log.Info("engine", "profile", profile.Name(), "command", profile.Command(), "sandbox", string(exe.SandboxMode()))

	l := cfg.Limits
	tasks, err := task.NewManager(task.Options{
		Runner: exe, Keys: a.keys, Store: a.db, Audit: a.recorder, Logger: log, Node: node,
		Pool: l.ExecutorPool, Queue: l.ExecutorQueue, UserConcurrent: l.UserConcurrentTasks,
		TenantConcurrent: l.TenantConcurrentTasks, OnDisconnectCancel: cfg.Tasks.OnDisconnect == "cancel",
		DetachGrace: cfg.Tasks.DetachGrace, Retention: cfg.Tasks.Retention, MaxRetained: cfg.Tasks.MaxRetainedTasks,
		MaxResultBytes: cfg.Tasks.MaxResultBytes, MaxLogBytes: cfg.Tasks.MaxTaskLogBytes, MaxLogEvents: cfg.Tasks.MaxTaskLogEvents,
		SendQueueMessages: l.SendQueueMessages, SendQueueBytes: l.SendQueueBytes, WriteTimeout: l.WriteTimeout,
		ListLimit: cfg.Tasks.ListLimit,
	})
	if err != nil {
		return err
	}

	revocations := auth.NewRevocations(nil)
	if err := loadRevocations(ctx, a, revocations, time.Time{}); err != nil {
		return err
	}
	limiter := ratelimit.New(ratelimit.Options{MaxEntries: l.LimiterMaxEntries})
	conns := ratelimit.NewCounter(ratelimit.CounterOptions{})
	swarmLimits := validation.Limits{
		MaxObjectiveChars: l.MaxObjectiveChars, MaxObjectiveBytes: l.MaxObjectiveBytes, MaxAgents: l.MaxAgents,
		MaxTimeoutSeconds: l.MaxTimeoutSeconds, DefaultAgents: l.DefaultAgents, DefaultTimeoutSeconds: l.DefaultTimeoutSeconds,
		Strategies: profile.Strategies(), Modes: profile.Modes(), DefaultStrategy: profile.DefaultStrategy(), DefaultMode: profile.DefaultMode(),
	}
	validator := validation.New()
	hub := session.NewHub(session.Options{
		Logger: log, Tasks: tasks, Validator: validator, Verifier: a.verifier, Revocations: revocations,
		Tenants: a.tenants, Audit: a.recorder, Swarms: limiter,
		Version: version, SwarmLimits: swarmLimits,
		PublicLimits: protocol.Limits{
			MaxMessageBytes: l.MaxMessageBytes, MaxObjectiveChars: l.MaxObjectiveChars, MaxObjectiveBytes: l.MaxObjectiveBytes,
			MaxAgents: l.MaxAgents, MaxTimeoutSeconds: l.MaxTimeoutSeconds, SwarmsPerMinute: l.SwarmsPerMinute,
			SwarmBurst: l.SwarmBurst, ConcurrentTasks: l.UserConcurrentTasks, MessagesPerSecond: l.MessagesPerSecond,
			PingIntervalSeconds: int(l.PingInterval / time.Second),
		},
		MaxMessageBytes: int64(l.MaxMessageBytes), PingInterval: l.PingInterval, PongTimeout: l.PongTimeout,
		WriteTimeout: l.WriteTimeout, SendQueueMessages: l.SendQueueMessages, SendQueueBytes: l.SendQueueBytes,
		MaxSubscriptions: cfg.Tasks.MaxSubscriptions, MessagesPerSecond: l.MessagesPerSecond, MessageBurst: l.MessageBurst,
		SwarmsPerMinute: l.SwarmsPerMinute, SwarmBurst: l.SwarmBurst,
	})
	ips, err := clientip.New(clientip.Options{TrustedProxies: cfg.Server.TrustedProxies})
	if err != nil {
		return fmt.Errorf("server.trusted_proxies: %w", err)
	}

	auditLog, err := audit.NewReader(audit.ReaderOptions{Storage: a.db, PublicKeys: a.auditPub, Logger: log})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	var draining atomic.Bool
	deps := &server.Deps{
		Logger: log, Limits: l, QueryTokens: cfg.QueryTokensAllowed(), Origins: cfg.Server.AllowedOrigins,
		Verifier: a.verifier, Signer: a.signer, Tickets: auth.NewTickets(cfg.Auth.TicketTTL, nil), Revocations: revocations,
		Tenants: a.tenants, Audit: a.recorder, Hub: hub, Tasks: tasks, Limiter: limiter, Conns: conns, IPs: ips,
		MaxBodySize: cfg.Server.MaxBodyBytes, Pprof: cfg.Ops.Pprof,
		Store: a.db, Keys: a.keys, AuditLog: auditLog, Validator: validator, TenantDefaults: swarmLimits,
		TenantChanged: func(ctx context.Context, t store.Tenant) {
			a.tenants.Invalidate(t.ID)
			if t.Status != tenant.StatusActive {
				hub.CloseTenant(t.ID)
			}
		},
		TokenRevoked: func(ctx context.Context, jti string, exp time.Time) {
			revocations.Add(jti, exp)
			hub.CloseJTI(jti)
		},
		KeyChanged: func(ctx context.Context, tenant string) {},
		Ready:    func(ctx context.Context) error { return a.db.Ping(ctx) },
		Draining: draining.Load,
	}

	ln, err := net.Listen("tcp", cfg.Server.Addr)
	if err != nil {
		return fmt.Errorf("server.addr: %w", err)
	}
	public := server.NewHTTPServer(server.Public(deps), cfg.Server.ReadHeaderTimeout, cfg.Server.IdleTimeout, cfg.Server.MaxHeaderBytes, log)
	var opsLn net.Listener
	var ops *http.Server
	if cfg.Ops.Addr != "" {
		if opsLn, err = net.Listen("tcp", cfg.Ops.Addr); err != nil {
			ln.Close()
			return fmt.Errorf("ops.addr: %w", err)
		}
		ops = server.NewHTTPServer(server.Ops(deps), cfg.Server.ReadHeaderTimeout, cfg.Server.IdleTimeout, cfg.Server.MaxHeaderBytes, log)
	}

	var wg sync.WaitGroup
	serveErr := make(chan error, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := public.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("server: %w", err)
		}
	}()
	if ops != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ops.Serve(opsLn); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("ops server: %w", err)
			}
		}()
	}
	bgCtx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	wg.Add(2)
	go func() {
		defer wg.Done()
		hub.Run(bgCtx)
	}()
	go func() {
		defer wg.Done()
		janitor(bgCtx, a, revocations, deps.Tickets, tasks)
	}()

	if err := a.recorder.Record(ctx, audit.Record{Action: audit.ActionServerStart, Outcome: audit.OutcomeSuccess,
		Actor: audit.Actor{Sub: "system"}, Details: map[string]any{"version": version, "node": node, "profile": profile.Name(), "sandbox": string(exe.SandboxMode())}}); err != nil {
		log.Error("audit: server.start not recorded", "err", err)
	}
	log.Info("listening", "addr", ln.Addr().String(), "ops", addrOf(opsLn), "dev", cfg.Dev)
	if cfg.Dev {
		if err := printDevBanner(stdout, a, ln.Addr()); err != nil {
			log.Error("dev banner", "err", err)
		}
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "grace", cfg.Shutdown.Grace.String())
	case runErr = <-serveErr:
		log.Error("listener failed; shutting down", "err", runErr)
	}
	// Drain (DESIGN §11): refuse new work, give tasks the grace, then close everything.
	draining.Store(true)
	graceCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Shutdown.Grace)
	tasks.Drain(graceCtx)
	cancel()
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	hub.Shutdown(closeCtx)
	_ = public.Shutdown(closeCtx)
	if ops != nil {
		_ = ops.Shutdown(closeCtx)
	}
	cancel()
	stopBG()
	wg.Wait()
	if err := a.recorder.Record(context.WithoutCancel(ctx), audit.Record{Action: audit.ActionServerStop, Outcome: audit.OutcomeSuccess,
		Actor: audit.Actor{Sub: "system"}, Details: map[string]any{"node": node}}); err != nil {
		log.Error("audit: server.stop not recorded", "err", err)
	}
	log.Info("stopped")
	return runErr
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

func nodeName() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	if host == "" {
		host = "node"
	}
	return host + "-" + hex.EncodeToString(b[:])
}

// janitor runs the periodic housekeeping of a server: revocations from other processes,
// expired tickets and tasks, until ctx ends.
func janitor(ctx context.Context, a *app, rev *auth.Revocations, tickets *auth.Tickets, tasks *task.Manager) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	since := time.Now().Add(-time.Minute)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if err := loadRevocations(ctx, a, rev, since); err != nil {
				a.log.Warn("revocations refresh failed", "err", err)
			} else {
				since = now.Add(-time.Minute)
			}
			rev.Prune()
			tickets.Prune()
			tasks.Sweep()
		}
	}
}

func loadRevocations(ctx context.Context, a *app, rev *auth.Revocations, since time.Time) error {
	list, err := a.db.ListRevoked(ctx, since)
	if err != nil {
		return fmt.Errorf("store: revoked tokens: %w", err)
	}
	for _, r := range list {
		rev.Add(r.JTI, r.ExpiresAt)
	}
	return nil
}
