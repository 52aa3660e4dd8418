package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/cluster"
	"github.com/flowgate/flowgate/internal/config"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/clientip"
	"github.com/flowgate/flowgate/internal/egress"
	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/executor"
	"github.com/flowgate/flowgate/internal/executor/sandbox"
	"github.com/flowgate/flowgate/internal/metrics"
	"github.com/flowgate/flowgate/internal/netpoll"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/ratelimit"
	"github.com/flowgate/flowgate/internal/server"
	"github.com/flowgate/flowgate/internal/session"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/task"
	"github.com/flowgate/flowgate/internal/validation"
	"github.com/flowgate/flowgate/internal/web"
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

	// The server's own registry (never the global one), served on the ops listener only.
	mx := metrics.New(metrics.Options{Version: version, Commit: commit, Logger: log})
	a, err := openApp(ctx, cfg, log, appOptions{checkpoints: true, auditLinger: time.Millisecond, retention: cfg.Audit.Retention, auditHooks: mx.AuditHooks(), onSecretFetch: mx.SecretFetch})
	if err != nil {
		return err
	}
	defer a.close(context.WithoutCancel(ctx))
	a.db.SetObserver(mx.Store())
	if cfg.Dev {
		if err := devBootstrap(ctx, a); err != nil {
			return err
		}
	}
	node := cfg.Cluster.NodeID
	if node == "" {
		node = nodeName()
	}
	cl, err := openCluster(ctx, cfg, a, node, mx.Redis(), log)
	if err != nil {
		return err
	}
	if cl != nil {
		defer cl.Close()
	}
	eng, err := buildEngine(cfg, a, getenv, mx, log)
	if err != nil {
		return err
	}
	tasks, err := buildTasks(cfg, a, eng, cl, node, mx, log)
	if err != nil {
		return err
	}
	revocations := auth.NewRevocations(nil)
	if err := loadRevocations(ctx, a, revocations, time.Time{}); err != nil {
		return err
	}
	poller, stopPoller := startPoller(ctx, log)
	defer stopPoller() // after hub.Shutdown below, or on an early return
	f, err := buildFrontEnd(cfg, a, eng, tasks, cl, revocations, poller, mx, log)
	if err != nil {
		return err
	}

	var notify admin.Notifier = f.local
	if cl != nil {
		notify = clusterNotifier(cl, f.local)
	}
	deps, err := buildDeps(cfg, a, f, tasks, cl, revocations, notify, mx, log)
	if err != nil {
		return err
	}
	if err := observe(mx, a, f, tasks, eng.exe, poller, deps); err != nil {
		return err
	}
	return serve(ctx, cfg, a, deps, f, tasks, cl, eng, node, revocations, mx, stdout, log)
}

// engineParts is the engine side of the gateway: the profile it runs and the executor that
// runs it, sandboxed.
type engineParts struct {
	profile *engine.Profile
	exe     *executor.Executor
}

// buildEngine resolves the engine profile, the sandbox, the egress proxy and the control
// groups, and builds the executor.
func buildEngine(cfg config.Config, a *app, getenv func(string) string, mx *metrics.Metrics, log *slog.Logger) (engineParts, error) {
	self, err := os.Executable()
	if err != nil {
		return engineParts{}, fmt.Errorf("locate own binary: %w", err)
	}
	profile, err := engine.New(engineConfig(cfg), exec.LookPath, self)
	if err != nil {
		return engineParts{}, err
	}
	mode, err := sandbox.ParseMode(cfg.Engine.Sandbox)
	if err != nil {
		return engineParts{}, fmt.Errorf("engine.sandbox: %w", err)
	}
	eg, err := newEgress(cfg, log, mx.Egress(), func(d egress.Denial) {
		// The proxy reports the first few refusals of each task; the rest are counted in
		// task_complete.egress.denied and the metrics.
		if err := a.recorder.Record(context.Background(), audit.Record{
			Action: audit.ActionEgressDenied, Outcome: audit.OutcomeDenied, Reason: d.Reason, Tenant: d.Tenant,
			Target: audit.Target{Type: "task", ID: d.Task}, Details: map[string]any{"destination": d.Destination},
		}); err != nil {
			log.Error("audit write failed for egress.denied", "task", d.Task, "err", err)
		}
	})
	if err != nil {
		return engineParts{}, err
	}
	cgm, cgErr := engineCgroups(cfg)
	if cgErr != nil {
		log.Warn("engine memory and process limits are not enforced: no control group hierarchy this gateway may use", "err", cgErr)
	} else if cgm != nil {
		log.Info("engine resource limits enforced by control groups", "cgroup_version", cgm.Version(),
			"memory_max", int64(cfg.Engine.MemoryMax), "pids_max", cfg.Engine.PidsMax, "workdir_max_bytes", int64(cfg.Engine.WorkdirMaxBytes))
	}
	exe, err := executor.New(executorOptions(cfg, getenv, profile, mode, initBinary(self, log), eg, cgm, log))
	if err != nil {
		return engineParts{}, err
	}
	log.Info("engine", "profile", profile.Name(), "command", profile.Command(), "sandbox", string(exe.SandboxMode()),
		"landlock_abi", exe.LandlockABI(), "network_namespace", exe.NetworkNamespace(), "seccomp", true,
		"egress_allow", egressAllow(cfg), "run_as", cfg.Engine.RunAs)
	return engineParts{profile: profile, exe: exe}, nil
}

// buildTasks builds the task manager over the executor, the store and the cluster.
func buildTasks(cfg config.Config, a *app, eng engineParts, cl *cluster.Cluster, node string, mx *metrics.Metrics, log *slog.Logger) (*task.Manager, error) {
	l := cfg.Limits
	var shared task.SharedSpend // a tenant's day total across replicas: only in a cluster
	if cl != nil {
		shared = cl
	}
	return task.NewManager(task.Options{
		Runner: eng.exe, Keys: a.keys, Store: a.db, Audit: a.recorder, Logger: log, Node: node, Metrics: mx.Tasks(),
		Pool: l.ExecutorPool, Queue: l.ExecutorQueue, UserConcurrent: l.UserConcurrentTasks,
		TenantConcurrent: l.TenantConcurrentTasks, OnDisconnectCancel: cfg.Tasks.OnDisconnect == "cancel",
		DetachGrace: cfg.Tasks.DetachGrace, Retention: cfg.Tasks.Retention, MaxRetained: cfg.Tasks.MaxRetainedTasks,
		MaxResultBytes: cfg.Tasks.MaxResultBytes, MaxLogBytes: cfg.Tasks.MaxTaskLogBytes, MaxLogEvents: cfg.Tasks.MaxTaskLogEvents,
		SendQueueMessages: l.SendQueueMessages, SendQueueBytes: l.SendQueueBytes, WriteTimeout: l.WriteTimeout,
		ListLimit: cfg.Tasks.ListLimit, Cluster: taskCluster(cl), HoldInterval: cfg.Cluster.HeartbeatInterval,
		RequireResult: eng.profile.PromisesResult(), DeriveProgress: cfg.Engine.ProgressEvents,
		RetainedMemoryMax: int64(cfg.Tasks.RetainedMemoryMax), Events: a.db, Spend: a.db,
		SharedSpend: shared,
	})
}

// startPoller starts the poller idle connections park in (no goroutine each); nil when the
// platform has none. stop ends it and waits; it must run after the hub has shut down.
func startPoller(ctx context.Context, log *slog.Logger) (poller *netpoll.Poller, stop func()) {
	poller, err := netpoll.New()
	if err != nil {
		log.Info("idle connections keep a reader goroutine each", "reason", err.Error())
		return nil, func() {}
	}
	pollCtx, stopPoll := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		if err := poller.Run(pollCtx); err != nil {
			log.Error("connection poller stopped; parked connections resumed on goroutines", "err", err)
		}
	}()
	return poller, func() {
		stopPoll()
		<-poller.Done()
	}
}

// frontEnd is what serves clients: the limiters, the session hub and what a change does to
// them (local).
type frontEnd struct {
	limiter     *ratelimit.Limiter
	conns       *ratelimit.Counter // this process's connection counter (caps at accept)
	connCaps    server.ConnCounter // the handshake's: cluster-wide per user with Redis
	swarmLimits validation.Limits
	validator   *validation.Validator
	hub         *session.Hub
	ips         *clientip.Resolver
	tickets     *auth.Tickets // this process's; Redis holds them in a cluster
	draining    *atomic.Bool
	local       *localChanges
}

func buildFrontEnd(cfg config.Config, a *app, eng engineParts, tasks *task.Manager, cl *cluster.Cluster, revocations *auth.Revocations,
	poller *netpoll.Poller, mx *metrics.Metrics, log *slog.Logger) (frontEnd, error) {
	l := cfg.Limits
	ips, err := clientip.New(clientip.Options{TrustedProxies: cfg.Server.TrustedProxies})
	if err != nil {
		return frontEnd{}, fmt.Errorf("server.trusted_proxies: %w", err)
	}
	f := frontEnd{
		limiter:   ratelimit.New(ratelimit.Options{MaxEntries: l.LimiterMaxEntries}),
		conns:     ratelimit.NewCounter(ratelimit.CounterOptions{}),
		validator: validation.New(),
		ips:       ips,
		tickets:   auth.NewTickets(cfg.Auth.TicketTTL, cfg.Auth.TicketsPerPrincipal, nil),
		draining:  new(atomic.Bool),
	}
	var swarms session.SwarmLimiter = f.limiter
	f.connCaps = f.conns
	if cl != nil {
		swarms, f.connCaps = cl.Swarms(f.limiter), cl.Connections(f.conns)
	}
	f.swarmLimits = swarmLimits(l, eng.profile)
	if err := f.swarmLimits.Check(); err != nil {
		return frontEnd{}, err
	}
	f.hub = session.NewHub(session.Options{
		Logger: log, Tasks: tasks, Poller: poller, Validator: f.validator, Verifier: a.verifier, Revocations: revocations, Metrics: mx.Sessions(),
		Tenants: a.tenants, Audit: a.recorder, Swarms: swarms,
		Version: version, SwarmLimits: f.swarmLimits,
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
	f.local = &localChanges{a: a, hub: f.hub, tasks: tasks, revocations: revocations, cancelSuspended: cfg.Tenants.SuspendCancelsTasks, log: log}
	return f, nil
}

// buildDeps gathers what the HTTP handlers need, the admin service included.
func buildDeps(cfg config.Config, a *app, f frontEnd, tasks *task.Manager, cl *cluster.Cluster, revocations *auth.Revocations,
	notify admin.Notifier, mx *metrics.Metrics, log *slog.Logger) (*server.Deps, error) {
	auditLog, err := audit.NewReader(audit.ReaderOptions{Storage: a.db, PublicKeys: a.auditPub, Logger: log, Tenants: tenantIDs(a.db)})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var tickets server.TicketStore = f.tickets
	if cl != nil {
		tickets = cl.Tickets(cfg.Auth.TicketTTL, cfg.Auth.TicketsPerPrincipal)
	}
	// A tenant's live sessions: this process's, or (in a cluster) every replica's.
	var sessions interface {
		server.SessionLister
		admin.SessionEnder
	} = localSessions{f.hub}
	if cl != nil {
		sessions = cl
	}
	svc, err := a.adminService(notify, sessions, log)
	if err != nil {
		return nil, err
	}
	deps := &server.Deps{
		Logger: log, Limits: cfg.Limits, QueryTokens: cfg.QueryTokensAllowed(), Origins: cfg.Server.AllowedOrigins,
		Verifier: a.verifier, Signer: a.signer, Tickets: tickets, Revocations: revocations,
		Tenants: a.tenants, Audit: a.recorder, Hub: f.hub, Tasks: tasks, Limiter: f.limiter, Conns: f.connCaps, IPs: f.ips,
		MaxBodySize: cfg.Server.MaxBodyBytes, Pprof: cfg.Ops.Pprof, Metrics: mx.HTTP(), MetricsHandler: mx.Handler(), RequestMetrics: mx.HTTP(),
		Store: a.db, Keys: a.keys, AuditLog: auditLog, Validator: f.validator, TenantDefaults: f.swarmLimits,
		Admin: svc, Sessions: sessions, RevokeCancelsTasks: cfg.Auth.RevokeCancelsTasks, AuthFailureBurst: cfg.Audit.AuthFailureBurst,
		// Ready: the database answers, and Redis too in a cluster.
		Ready: func(ctx context.Context) error {
			if err := a.db.Ping(ctx); err != nil {
				return err
			}
			if cl != nil {
				return cl.Ping(ctx)
			}
			return nil
		},
		Draining: f.draining.Load,
	}
	if cfg.UI.Enabled {
		deps.UI = web.Handler()
	}
	return deps, nil
}

// observe registers the gauges the metrics registry reads at scrape time.
func observe(mx *metrics.Metrics, a *app, f frontEnd, tasks *task.Manager, exe *executor.Executor, poller *netpoll.Poller, deps *server.Deps) error {
	l := deps.Limits
	if err := mx.Observe(metrics.Sources{
		EngineStarts: exe.Starts,
		TaskCounts:   tasks.Counts, ExecutorPool: l.ExecutorPool, ExecutorQueue: l.ExecutorQueue,
		SecretCache: func() metrics.SecretCacheStats {
			st := a.keys.Stats()
			return metrics.SecretCacheStats{Hits: st.Hits, Misses: st.Misses, StaleServed: st.StaleServed, Evictions: st.Evictions, Entries: st.Entries}
		},
		Limiter: func() metrics.LimiterStats {
			st := f.limiter.Stats()
			return metrics.LimiterStats{Entries: st.Entries, Evictions: st.Evictions}
		},
		AuditQueued: func() int { return a.recorder.Stats().Queued },
		Parked: func() int {
			if poller == nil {
				return 0
			}
			return poller.Parked()
		},
		Ready: deps.Ready, Draining: deps.Draining,
	}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// serve listens, runs the background loops, waits for the end and drains (DESIGN §11):
// refuse new work, give tasks the grace, then close everything and record the stop.
func serve(ctx context.Context, cfg config.Config, a *app, deps *server.Deps, f frontEnd, tasks *task.Manager, cl *cluster.Cluster,
	eng engineParts, node string, revocations *auth.Revocations, mx *metrics.Metrics, stdout io.Writer, log *slog.Logger) error {
	rawLn, err := net.Listen("tcp", cfg.Server.Addr)
	if err != nil {
		return fmt.Errorf("server.addr: %w", err)
	}
	ln := server.NewBatchListener(rawLn, &server.ConnCaps{
		Counter: f.conns, Global: cfg.Limits.GlobalConnections, PerIP: cfg.Limits.IPConnections,
		Trusted: f.ips.Trusted, Rejected: mx.HTTP().Rejected,
	})
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
	// External issuers' key sets: fetched now and refreshed in the background until shutdown
	// ends (bgCtx) and Stop has waited for the refreshers.
	if a.jwks != nil {
		a.jwks.Start(bgCtx)
		defer a.jwks.Stop()
	}
	if cl != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.Run(bgCtx)
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		f.hub.Run(bgCtx)
	}()
	go func() {
		defer wg.Done()
		janitor(bgCtx, a, revocations, f.tickets, tasks, cfg.Tenants.SuspendCancelsTasks, deps.FlushAuthFailures)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		pruneEvents(bgCtx, a, cfg.Tasks.EventRetention)
	}()

	if err := a.recorder.Record(ctx, audit.Record{Action: audit.ActionServerStart, Outcome: audit.OutcomeSuccess,
		Actor: audit.Actor{Sub: "system"}, Details: map[string]any{"version": version, "node": node, "profile": eng.profile.Name(), "sandbox": string(eng.exe.SandboxMode())}}); err != nil {
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
	f.draining.Store(true)
	graceCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Shutdown.Grace)
	tasks.Drain(graceCtx)
	cancel()
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	tasks.Close(closeCtx) // the events still waiting, task_complete included, into the log
	f.hub.Shutdown(closeCtx)
	_ = public.Shutdown(closeCtx)
	if ops != nil {
		_ = ops.Shutdown(closeCtx)
	}
	cancel()
	stopBG()
	wg.Wait()
	// Windows still open are summarised now: their counts would otherwise go unrecorded.
	if err := deps.FlushAllAuthFailures(context.WithoutCancel(ctx)); err != nil {
		log.Warn("auth.failure.summary records not written at shutdown", "err", err)
	}
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

// janitor runs the periodic housekeeping of a server: revocations and tenant changes (a
// suspension, a key set or deleted) made by other processes, expired tickets and tasks, until
// ctx ends.
func janitor(ctx context.Context, a *app, rev *auth.Revocations, tickets *auth.Tickets, tasks *task.Manager, cancelSuspended bool, flushAuth func(context.Context) error) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	since := time.Now().Add(-time.Minute)
	watch := newTenantWatch()
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
			var suspended func(string)
			if cancelSuspended {
				suspended = func(id string) { tasks.CancelTenant(id) }
			}
			if err := watch.poll(ctx, a, now, suspended); err != nil {
				a.log.Warn("tenant changes refresh failed", "err", err)
			}
			// Not cancelled by shutdown mid-write: a summary cut off there would be lost
			// (the shutdown flush writes what is still due).
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			if err := flushAuth(fctx); err != nil {
				a.log.Warn("auth.failure.summary records not written", "err", err)
			}
			cancel()
			rev.Prune()
			tickets.Prune()
			tasks.Sweep()
		}
	}
}

// pruneEvents deletes the event log of tasks that ended more than retention ago, at start
// and then every few minutes, in short transactions, until ctx ends.
func pruneEvents(ctx context.Context, a *app, retention time.Duration) {
	every := min(max(retention/100, time.Minute), 10*time.Minute)
	for {
		total := 0
		for ctx.Err() == nil {
			n, err := a.db.PruneTaskEvents(ctx, time.Now().Add(-retention), 100)
			if err != nil {
				if ctx.Err() == nil {
					a.log.Warn("task event log not pruned", "err", err)
				}
				break
			}
			if total += n; n == 0 {
				break
			}
		}
		if total > 0 {
			a.log.Info("task events pruned", "events", total, "older_than", retention.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// loadRevocations adds the revocations recorded since (all when zero), page by page, to rev,
// each with its tenant scope, and deletes stored revocations of tokens that expired more than
// the largest leeway ago (a token is still accepted within the leeway after its exp).
func loadRevocations(ctx context.Context, a *app, rev *auth.Revocations, since time.Time) error {
	for {
		list, err := a.db.ListRevoked(ctx, since)
		if err != nil {
			return fmt.Errorf("store: revoked tokens: %w", err)
		}
		for _, r := range list {
			if err := rev.Add(r.Tenant, r.JTI, r.ExpiresAt); err != nil {
				a.log.Error("revocation not applied in memory", "tenant", r.Tenant, "err", err)
			}
		}
		if len(list) < store.MaxRevokedList || !list[len(list)-1].RevokedAt.After(since) {
			break
		}
		since = list[len(list)-1].RevokedAt
	}
	if _, err := a.db.PruneRevoked(ctx, time.Now().Add(-time.Minute)); err != nil {
		return fmt.Errorf("store: prune revoked tokens: %w", err)
	}
	return nil
}

// initBinary picks the sandbox init: the small flowgate-init next to this binary when it is
// there (it starts several times faster, which every task pays), otherwise this binary
// itself through its sandbox-init subcommand.
func initBinary(self string, log *slog.Logger) string {
	candidate := filepath.Join(filepath.Dir(self), "flowgate-init")
	if st, err := os.Stat(candidate); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return candidate
	}
	log.Info("sandbox init: flowgate-init not found next to the binary; using the flowgate binary itself (slower task start)", "looked_for", candidate)
	return self
}
