package task

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/task/record"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/egress"
	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/executor"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/secrets"
)

// Runner runs one engine process to completion (the executor).
type Runner interface {
	Run(ctx context.Context, spec executor.Spec, out executor.Output) (executor.Result, error)
}

// KeySource returns the API key of a tenant, and only of that tenant.
type KeySource interface {
	Key(ctx context.Context, tenant, keyRef string) (secrets.Key, error)
}

// Store persists tasks.
type Store interface {
	CreateTask(ctx context.Context, t record.Task) (record.Task, error)
	UpdateTask(ctx context.Context, tenant, id string, u record.Update) (record.Task, error)
	GetTask(ctx context.Context, tenant, id string) (record.Task, error)
	ListTasks(ctx context.Context, f record.Filter) ([]record.Task, error)
}

// Auditor records security-relevant actions; an error means the record was not written.
type Auditor interface {
	Record(ctx context.Context, r audit.Record) error
}

// Metrics receives task counters; nil methods are fine (see noMetrics).
type Metrics interface {
	TaskStarted()
	TaskFinished(status string, d time.Duration)
	QueueWait(d time.Duration)
	Event(bytes int)
	SlowConsumer()
	PermissionDenied()
	EventsPersisted(n int)
	EventPersistFailed()
	EngineUsage(input, output, cacheRead, cacheCreation int64, costUSD float64)
}

// Options configures a Manager.
type Options struct {
	Runner  Runner
	Keys    KeySource
	Store   Store
	Audit   Auditor
	Metrics Metrics
	Logger  *slog.Logger
	Node    string

	Pool               int // engine processes at once
	Queue              int // tasks waiting for a slot
	UserConcurrent     int
	TenantConcurrent   int // default; Request.TenantConcurrent overrides
	OnDisconnectCancel bool
	DetachGrace        time.Duration
	Retention          time.Duration
	MaxRetained        int
	MaxResultBytes     int
	MaxLogBytes        int64
	MaxLogEvents       int
	SendQueueMessages  int
	SendQueueBytes     int
	WriteTimeout       time.Duration
	ListLimit          int
	Now                func() time.Time
	KeyFetchTimeout    time.Duration
	PersistTimeout     time.Duration
	// Cluster, when set, shares limits, events and control with other replicas.
	Cluster Cluster
	// HoldInterval is how often a mirror tells the running node its owner still watches.
	HoldInterval time.Duration
	// RequireResult: the engine promises a stream-json result line (engine.Profile.
	// PromisesResult); exiting 0 without one fails the task.
	RequireResult bool
	// DeriveProgress adds seed-style progress events derived from assistant messages
	// (engine.progress_events).
	DeriveProgress bool
	// RetainedMemoryMax bounds the event bytes all finished tasks keep in memory together
	// (tasks.retained_memory_max); past it the oldest are dropped from memory (their status
	// is then served from the store). 0: no bound besides MaxRetained and Retention.
	RetainedMemoryMax int64
	// Events, when set, is the durable event log: every event of a local task is written
	// behind to it, and tasks no longer in memory are replayed from it (DESIGN §17).
	Events EventLog
	// Spend, when set, is where tenant budgets read what ended tasks spent today (the store's
	// usage ledger); without it budgets are not enforced.
	Spend SpendStore
	// SharedSpend, in a cluster, is the tenants' spend today that every replica adds to at
	// once (with Spend: the ledger it starts from); nil on a single node.
	SharedSpend SharedSpend
	// EventBacklogMax bounds the event bytes waiting for the event log; past it new swarms
	// are refused (ErrEventLogBehind) until the store catches up. 0: four times MaxLogBytes.
	EventBacklogMax int64
}

// wireEgress converts the executor's egress counters (nil stays nil).
func wireEgress(s *egress.Stats) *protocol.Egress {
	if s == nil {
		return nil
	}
	return &protocol.Egress{BytesOut: s.BytesOut, BytesIn: s.BytesIn, Denied: s.Denied}
}

// maxErrorBytes bounds task_complete.error when it carries the engine's own words.
const maxErrorBytes = 1024

// storeUsage converts a task's usage for the store (nil stays nil).
func storeUsage(u *protocol.Usage) *record.Usage {
	if u == nil {
		return nil
	}
	return &record.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CacheReadInputTokens: u.CacheReadInputTokens, CacheCreationInputTokens: u.CacheCreationInputTokens,
		CostUSD: u.CostUSD, NumTurns: u.NumTurns}
}

// Errors Create returns; the session maps them to wire codes.
var (
	ErrNotFound       = errors.New("task not found")
	ErrDraining       = errors.New("server is draining")
	ErrKeyUnavailable = errors.New("tenant key unavailable")
	ErrAudit          = errors.New("audit record could not be written")
	ErrForbidden      = errors.New("forbidden")
)

// QuotaError is a refused swarm: which bound fired.
type QuotaError struct {
	Scope string // user | tenant | executor
	Limit int
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("%s concurrent task limit (%d) reached", e.Scope, e.Limit)
}

// Manager owns every task of this process.
type Manager struct {
	opts    Options
	clock   clock
	log     *slog.Logger
	metrics metricsAdapter
	slots   chan struct{}

	mu       sync.Mutex // guards the maps and counters below; never held on the event path
	tasks    map[string]*Task
	byUser   map[userKey][]*Task
	userLive map[userKey]int
	tenLive  map[string]int
	waiting  int
	running  int
	finished []*Task // oldest first, for retention
	// followers stops the feeder of every mirror, shared or private (Drain).
	followers map[*Task]context.CancelFunc
	// retainedBytes is the frame bytes the finished tasks keep in memory, bounded by
	// Options.RetainedMemoryMax.
	retainedBytes int64

	events *persister // the event log writer; nil without Options.Events
	book   *spendBook // tenants' spend against their budgets; nil without Options.Spend

	draining atomic.Bool
	wg       sync.WaitGroup
}

type userKey struct{ tenant, sub string }

// NewManager checks the options and returns an idle manager.
func NewManager(opts Options) (*Manager, error) {
	if opts.Runner == nil || opts.Keys == nil || opts.Store == nil || opts.Audit == nil {
		return nil, errors.New("task: Runner, Keys, Store and Audit are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// Every bound below is a configuration key (DESIGN §6, tasks.*): config.Default is the one
	// source of their values, so a zero here is a wiring mistake, refused rather than filled.
	for _, f := range []struct {
		key string
		v   int64
	}{
		{"limits.executor_pool", int64(opts.Pool)},
		{"limits.user_concurrent_tasks", int64(opts.UserConcurrent)},
		{"limits.tenant_concurrent_tasks", int64(opts.TenantConcurrent)},
		{"limits.send_queue_messages", int64(opts.SendQueueMessages)},
		{"limits.send_queue_bytes", int64(opts.SendQueueBytes)},
		{"limits.write_timeout", int64(opts.WriteTimeout)},
		{"tasks.retention", int64(opts.Retention)},
		{"tasks.max_retained_tasks", int64(opts.MaxRetained)},
		{"tasks.max_result_bytes", int64(opts.MaxResultBytes)},
		{"tasks.max_task_log_bytes", opts.MaxLogBytes},
		{"tasks.max_task_log_events", int64(opts.MaxLogEvents)},
		{"tasks.list_limit", int64(opts.ListLimit)},
		{"cluster.heartbeat_interval", int64(opts.HoldInterval)},
	} {
		if f.v <= 0 {
			return nil, fmt.Errorf("task: %s must be positive (got %d)", f.key, f.v)
		}
	}
	if opts.Queue < 0 {
		opts.Queue = 0
	}
	// Not configuration: how long one store or key-provider call may take.
	if opts.KeyFetchTimeout <= 0 {
		opts.KeyFetchTimeout = 10 * time.Second
	}
	if opts.PersistTimeout <= 0 {
		opts.PersistTimeout = 5 * time.Second
	}
	m := &Manager{
		opts:     opts,
		log:      opts.Logger,
		metrics:  metricsAdapter{opts.Metrics},
		slots:    make(chan struct{}, opts.Pool),
		tasks:    map[string]*Task{},
		byUser:   map[userKey][]*Task{},
		userLive: map[userKey]int{},
		tenLive:  map[string]int{},

		followers: map[*Task]context.CancelFunc{},
	}
	if opts.Spend != nil {
		m.book = newSpendBook(opts.Spend, opts.SharedSpend, opts.Now, opts.Logger, m.stopOverBudget)
	}
	if opts.Events != nil {
		// Four tasks' worth of the largest log: a store that falls further behind than that
		// is failing, not slow, and new work waits for it.
		if opts.EventBacklogMax <= 0 {
			opts.EventBacklogMax = 4 * opts.MaxLogBytes
		}
		m.opts.EventBacklogMax = opts.EventBacklogMax
		m.events = newPersister(m, opts.Events, opts.EventBacklogMax)
	}
	return m, nil
}

// Close sends the spend still waiting for the cluster's total and writes the events still
// waiting for the event log (for at most until ctx ends), and stops both. Call it after Drain.
func (m *Manager) Close(ctx context.Context) {
	if m.book != nil {
		m.book.close(ctx)
	}
	if m.events != nil {
		m.events.close(ctx)
	}
}

func (m *Manager) now() time.Time { return m.opts.Now() }

// Request is a validated swarm request with the tenant-specific bounds that apply to it.
type Request struct {
	Objective        string
	Engine           engine.Request
	KeyRef           string // the tenant's Secrets Manager id override, "" = default
	TenantConcurrent int    // 0 = the default
	Budget           Budget // the tenant's daily cap; zero: none
}

// Meta is request context for audit records.
type Meta struct {
	SessionID string
	RequestID string
	Source    audit.Source
}

// Create admits a swarm: quotas, the tenant's key, the audit record, the stored row, then
// the task is queued for the executor. Nothing is started or left behind when it fails.
func (m *Manager) Create(ctx context.Context, p *auth.Principal, req Request, meta Meta) (*Task, error) {
	if m.draining.Load() {
		return nil, ErrDraining
	}
	if m.events != nil && m.events.behind() {
		return nil, ErrEventLogBehind
	}
	if req.Budget.set() && m.book != nil {
		spent, err := m.book.current(ctx, p.Tenant, req.Budget)
		if err != nil {
			return nil, err
		}
		if req.Budget.over(spent) {
			return nil, &BudgetError{Budget: req.Budget, SpentUSD: spent.usd, SpentTokens: spent.tokens}
		}
	}
	uk := userKey{p.Tenant, p.Subject}
	tenantLimit := req.TenantConcurrent
	if tenantLimit <= 0 {
		tenantLimit = m.opts.TenantConcurrent
	}
	if err := m.reserve(uk, tenantLimit); err != nil {
		return nil, err
	}
	release := true
	var clusterRelease func()
	defer func() {
		if release {
			m.unreserve(uk)
			if clusterRelease != nil {
				clusterRelease()
			}
		}
	}()
	id := newID()
	if m.opts.Cluster != nil {
		rel, err := m.opts.Cluster.ReserveTask(ctx, p.Tenant, p.Subject, id, m.opts.UserConcurrent, tenantLimit)
		var qe *QuotaError
		switch {
		case errors.As(err, &qe):
			return nil, err
		case err != nil:
			return nil, fmt.Errorf("%w: %w", ErrClusterUnavailable, err)
		}
		clusterRelease = rel
	}

	keyCtx, cancel := context.WithTimeout(ctx, m.opts.KeyFetchTimeout)
	tk, err := m.opts.Keys.Key(keyCtx, p.Tenant, req.KeyRef)
	key := tk.Value
	cancel()
	if err != nil {
		m.log.Warn("tenant key unavailable", "tenant", p.Tenant, "err", err)
		_ = m.opts.Audit.Record(ctx, m.record(p, meta, audit.ActionKeyFetchFailed, audit.OutcomeFailure, "", err.Error(), nil))
		return nil, fmt.Errorf("%w: %w", ErrKeyUnavailable, err)
	}

	now := m.now().UTC()
	t := &Task{
		ID:        id,
		Tenant:    p.Tenant,
		Owner:     p.Subject,
		JTI:       p.JTI,
		Objective: req.Objective,
		Request:   req.Engine,
		CreatedAt: now,
		m:         m,
		done:      make(chan struct{}),
		status:    protocol.StatusPending,
		exitCode:  -1,
		node:      m.opts.Node,
	}
	details := audit.ObjectiveDigest(req.Objective)
	details["agents"] = req.Engine.Agents
	details["strategy"] = req.Engine.Strategy
	details["mode"] = req.Engine.Mode
	details["timeoutSeconds"] = int(req.Engine.Timeout / time.Second)
	// Which key the task runs with: a reviewer can tell tasks before and after a rotation.
	details["keyFingerprint"] = tk.Fingerprint
	details["keyVersion"] = tk.Version
	if err := m.opts.Audit.Record(ctx, m.record(p, meta, audit.ActionTaskCreate, audit.OutcomeSuccess, t.ID, "", details)); err != nil {
		m.log.Error("audit write failed; swarm refused", "err", err)
		return nil, fmt.Errorf("%w: %w", ErrAudit, err)
	}
	tctx, tcancel := context.WithCancelCause(context.Background())
	t.cancel = tcancel
	t.stop = tctx.Done()
	t.clusterRelease = clusterRelease
	m.mu.Lock()
	m.tasks[t.ID] = t
	m.byUser[uk] = append(m.byUser[uk], t)
	m.mu.Unlock()
	release = false
	if req.Budget.set() && m.book != nil {
		t.budget = req.Budget
		m.book.started(t.Tenant, req.Budget)
	}
	if m.opts.Cluster != nil {
		m.opts.Cluster.Publish(t)
	}

	// The task's row is written by run, off the reply path (task_created does not wait for a
	// second commit after the audit record's), and before anything else of the task reaches
	// the store or its engine starts. In a cluster a client may subscribe on another replica
	// before the row is there: that replica sees the task's reservation and waits for the row
	// (lookup).
	row := record.Task{
		ID: t.ID, Tenant: t.Tenant, Owner: t.Owner, Objective: t.Objective,
		Agents: req.Engine.Agents, Strategy: req.Engine.Strategy, Mode: req.Engine.Mode,
		TimeoutSec: int(req.Engine.Timeout / time.Second), Status: protocol.StatusPending,
		Node: m.opts.Node, CreatedAt: now,
	}
	m.wg.Add(1)
	go m.run(tctx, t, row, key)
	return t, nil
}

func (m *Manager) record(p *auth.Principal, meta Meta, action, outcome, taskID, reason string, details map[string]any) audit.Record {
	r := audit.Record{
		Action: action, Outcome: outcome, Reason: reason, Tenant: p.Tenant,
		Actor:     audit.Actor{Sub: p.Subject, TokenFP: p.TokenFP},
		Source:    meta.Source,
		RequestID: meta.RequestID, SessionID: meta.SessionID, Details: details,
	}
	if taskID != "" {
		r.Target = audit.Target{Type: "task", ID: taskID}
	}
	return r
}

func (m *Manager) reserve(uk userKey, tenantLimit int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.userLive[uk] >= m.opts.UserConcurrent:
		return &QuotaError{Scope: "user", Limit: m.opts.UserConcurrent}
	case m.tenLive[uk.tenant] >= tenantLimit:
		return &QuotaError{Scope: "tenant", Limit: tenantLimit}
	case m.waiting+m.running >= m.opts.Pool+m.opts.Queue:
		return &QuotaError{Scope: "executor", Limit: m.opts.Pool + m.opts.Queue}
	}
	m.userLive[uk]++
	m.tenLive[uk.tenant]++
	m.waiting++
	return nil
}

// unreserve undoes reserve for a task that never reached the queue.
func (m *Manager) unreserve(uk userKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.waiting--
	m.dropLive(uk)
}

func (m *Manager) dropLive(uk userKey) {
	if m.userLive[uk]--; m.userLive[uk] <= 0 {
		delete(m.userLive, uk)
	}
	if m.tenLive[uk.tenant]--; m.tenLive[uk.tenant] <= 0 {
		delete(m.tenLive, uk.tenant)
	}
}

// run writes the task's row, waits for an executor slot, runs the engine and finishes the
// task.
func (m *Manager) run(ctx context.Context, t *Task, row record.Task, key string) {
	defer m.wg.Done()
	pctx, pcancel := context.WithTimeout(context.Background(), m.opts.PersistTimeout)
	_, err := m.opts.Store.CreateTask(pctx, row)
	pcancel()
	if err != nil {
		// Nothing of the task is stored, nor will be: no engine, no row to update at the end,
		// no events in the log (the log's pruning finds events through their task's row), so
		// nothing to wait for before it may leave memory.
		t.durable.Store(true)
		m.mu.Lock()
		m.waiting--
		m.mu.Unlock()
		m.finish(ctx, t, executor.Result{ExitCode: -1}, fmt.Errorf("%w: %w", errNotStored, err), false)
		return
	}
	if m.events != nil {
		m.events.track(t) // from its first event: none exists before the engine starts
	}
	queued := m.now() // the executor queue's wait, not the insert's
	select {
	case m.slots <- struct{}{}:
	case <-ctx.Done():
		m.mu.Lock()
		m.waiting--
		m.mu.Unlock()
		m.finish(ctx, t, executor.Result{ExitCode: -1}, nil, false)
		return
	}
	m.mu.Lock()
	m.waiting--
	m.running++
	m.mu.Unlock()
	m.metrics.queueWait(m.now().Sub(queued))

	started := m.now().UTC()
	t.mu.Lock()
	t.status = protocol.StatusRunning
	t.startedAt = started
	t.mu.Unlock()
	m.persist(t.Tenant, t.ID, record.Update{Status: protocol.StatusRunning, StartedAt: &started})
	m.metrics.taskStarted()

	timeout := t.Request.Timeout
	timer := time.AfterFunc(timeout, func() { t.cancel(errTimeout) })
	res, err := m.opts.Runner.Run(ctx, executor.Spec{
		TaskID: t.ID, Tenant: t.Tenant, Request: t.Request, APIKey: key,
	}, output{t})
	timer.Stop()
	// The slot is free as soon as the process is gone, before anyone hears the task ended.
	<-m.slots
	m.mu.Lock()
	m.running--
	m.mu.Unlock()
	m.finish(ctx, t, res, err, true)
}

// output adapts the executor's line callbacks to the task's log.
type output struct{ t *Task }

func (o output) Stdout(line []byte, truncated bool) {
	o.t.appendObserved(func(dst []byte, seq int64, now []byte) ([]byte, string) {
		return engineFrame(dst, line, truncated, o.t.ID, seq, now)
	}, len(line), func(typ string) []derived { return o.t.observe(typ, line) })
}

// observe reads what task_complete reports, and the progress to derive, out of an engine
// event. Called with t.mu held, right after the event was logged.
func (t *Task) observe(typ string, line []byte) []derived {
	es := &t.eng
	switch typ {
	case "assistant":
		turns := es.usage.NumTurns
		es.observeAssistant(line)
		if t.budget.set() {
			t.chargeLive()
		}
		if !t.m.opts.DeriveProgress || es.seedSpeech {
			return nil
		}
		return deriveProgress(line, es.usage.NumTurns > turns, es.usage.NumTurns)
	case "system":
		if isPermissionDenied(line) {
			es.denials++
			t.m.metrics.permissionDenied()
		}
	case typeAgentSpawn, typeTaskProgress, typeInsight:
		// The engine speaks the seed's dialect itself (claude-flow's own events, the sim):
		// deriving more would show every agent twice.
		es.seedSpeech = true
	}
	return nil
}

func (o output) Stderr(line []byte, truncated bool) {
	o.t.appendFrame(func(dst []byte, seq int64, now []byte) ([]byte, string) {
		return outputFrame(dst, protocol.TypeTaskLog, "message", line, truncated, o.t.ID, seq, now), ""
	}, len(line))
}

// finish decides the final status, persists it, releases the task's quota, and only then
// logs task_complete: a client that hears the task ended finds the store agreeing and can
// start its next swarm at once.
func (m *Manager) finish(ctx context.Context, t *Task, res executor.Result, runErr error, ran bool) {
	cause := context.Cause(ctx)
	now := m.now().UTC()

	t.mu.RLock()
	startedAt, hasResult, isError, result := t.startedAt, t.hasResult, t.isError, t.result
	usage, denials := t.eng.snapshot(), t.eng.permissionDenials()
	seq := t.lastSeqLocked() + 1
	counted := t.counted
	t.mu.RUnlock()
	if t.budget.set() {
		var final spend
		if usage != nil {
			final = spendOf(*usage)
		}
		m.book.ended(t.Tenant, counted, final)
	}

	status, errMsg := protocol.StatusFailed, ""
	switch {
	case res.OutputLimitExceeded || errors.Is(cause, errOutputLimit) || errors.Is(cause, errLogLimit):
		errMsg = "output limit exceeded"
	case res.LimitExceeded != "":
		// The executor's resource limits: "memory limit exceeded", "process limit exceeded",
		// "disk limit exceeded" (DESIGN §15).
		errMsg = res.LimitExceeded + " limit exceeded"
	case errors.Is(cause, errBudget):
		errMsg = "budget exceeded"
	case errors.Is(cause, errTimeout):
		status, errMsg = protocol.StatusTimeout, fmt.Sprintf("timed out after %s", t.Request.Timeout)
	case errors.Is(cause, errShutdown):
		status, errMsg = protocol.StatusInterrupted, "server shut down"
	case errors.Is(cause, errSuspended):
		status, errMsg = protocol.StatusCancelled, "tenant_suspended"
	case errors.Is(cause, errRevoked):
		status, errMsg = protocol.StatusCancelled, "token_revoked"
	case errors.Is(cause, errDetached), errors.Is(cause, errOwnerAbandon):
		status, errMsg = protocol.StatusCancelled, cause.Error()
	case errors.Is(cause, errCancelled):
		status, errMsg = protocol.StatusCancelled, "cancelled"
	case errors.Is(runErr, errNotStored):
		errMsg = "internal error"
		m.log.Error("task not stored; not started", "task", t.ID, "tenant", t.Tenant, "err", runErr)
	case runErr != nil:
		errMsg = "engine could not be started"
		m.log.Error("engine run failed", "task", t.ID, "tenant", t.Tenant, "err", runErr)
	case hasResult && isError:
		// The engine's own account of what went wrong ("Invalid API key", "API Error: 529
		// Overloaded"): already redacted like every line, cut to 1 KiB.
		errMsg = truncateUTF8(strings.TrimSpace(result), maxErrorBytes)
		if errMsg == "" {
			errMsg = "engine reported an error"
		}
	case res.ExitCode == 0 && !hasResult && m.opts.RequireResult:
		// claude-flow exits 0 whatever happened (Claude Code missing, refused, crashed): only
		// a result line says the work was done.
		errMsg = "engine produced no result"
	case res.ExitCode == 0:
		status = protocol.StatusSuccess
	default:
		errMsg = fmt.Sprintf("engine exited with code %d", res.ExitCode)
	}
	exit := -1
	if ran && runErr == nil {
		exit = res.ExitCode
	}
	var dur time.Duration
	if !startedAt.IsZero() {
		dur = now.Sub(startedAt)
	}
	var exitPtr *int
	if exit >= 0 {
		exitPtr = &exit
	}
	summary := truncateUTF8(result, 1024)
	if !errors.Is(runErr, errNotStored) {
		m.persist(t.Tenant, t.ID, record.Update{Status: status, EndedAt: &now, ExitCode: exitPtr, ResultSummary: &summary,
			Error: &errMsg, LastSeq: &seq, Usage: storeUsage(usage), PermissionDenials: &denials})
	}

	frame, _ := jsonFrame(protocol.TaskComplete{
		Type: protocol.TypeTaskComplete, TaskID: t.ID, Seq: seq, ServerTime: protocol.Time(now),
		ExitCode: exit, Status: status, DurationMs: dur.Milliseconds(), Result: result, Error: errMsg,
		Usage: usage, PermissionDenials: denials, Egress: wireEgress(res.Egress),
	})
	t.mu.Lock()
	end := t.headBytes.Load() + int64(len(frame))
	t.log = append(t.log, entry{frame: frame, end: end})
	t.status, t.exitCode, t.errMsg, t.endedAt = status, exit, errMsg, now
	t.ended.Store(now.UnixNano())
	t.compactLocked()
	if t.detach != nil {
		t.detach.Stop()
		t.detach = nil
	}
	subs := t.subs
	t.headBytes.Store(end)
	t.headSeq.Store(seq)
	held := t.heldLocked()
	t.mu.Unlock()
	t.cancel(nil) // release the context's resources

	m.mu.Lock()
	m.dropLive(userKey{t.Tenant, t.Owner})
	t.retained = held
	m.finished = append(m.finished, t)
	m.retainedBytes += t.retained
	m.evictLocked(now)
	m.mu.Unlock()
	if t.clusterRelease != nil {
		t.clusterRelease()
	}

	close(t.done)
	for _, s := range subs {
		s.sub.Notify()
	}
	m.metrics.taskFinished(status, dur)
	if usage != nil {
		m.metrics.engineUsage(usage)
	}
	outcome := audit.OutcomeSuccess
	if status != protocol.StatusSuccess {
		outcome = audit.OutcomeFailure
	}
	// The task has already ended; a failed record here is logged, it cannot refuse anything.
	if err := m.opts.Audit.Record(context.Background(), audit.Record{
		Action: audit.ActionTaskComplete, Outcome: outcome, Reason: errMsg, Tenant: t.Tenant,
		Actor:   audit.Actor{Sub: t.Owner},
		Target:  audit.Target{Type: "task", ID: t.ID},
		Details: map[string]any{"status": status, "exitCode": exit, "durationMs": dur.Milliseconds(), "events": seq},
	}); err != nil {
		m.log.Error("audit write failed for task.complete", "task", t.ID, "err", err)
	}
}

func (m *Manager) persist(tenant, id string, u record.Update) {
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.PersistTimeout)
	defer cancel()
	if _, err := m.opts.Store.UpdateTask(ctx, tenant, id, u); err != nil {
		m.log.Error("task state not persisted", "task", id, "status", u.Status, "err", err)
	}
}

// evictLocked drops finished tasks past their retention or beyond the retained bound, oldest
// first. With an event log, a task leaves memory only once its last event is written (it is
// then replayed from the log); until then it is kept whatever the bounds say. Subscribers
// still holding one keep its log alive until they let go.
func (m *Manager) evictLocked(now time.Time) {
	kept := m.finished[:0]
	n := 0
	for i, t := range m.finished {
		overBudget := m.opts.RetainedMemoryMax > 0 && m.retainedBytes > m.opts.RetainedMemoryMax
		if now.Sub(time.Unix(0, t.ended.Load())) < m.opts.Retention && len(m.finished)-n <= m.opts.MaxRetained && !overBudget {
			kept = append(kept, m.finished[i:]...)
			break
		}
		if m.events != nil && !t.durable.Load() {
			kept = append(kept, t)
			continue
		}
		n++
		m.retainedBytes -= t.retained
		t.retained = 0 // no longer counted: a late trim must not change the total
		delete(m.tasks, t.ID)
		uk := userKey{t.Tenant, t.Owner}
		list := m.byUser[uk]
		if i := slices.Index(list, t); i >= 0 {
			list = slices.Delete(list, i, i+1)
		}
		if len(list) == 0 {
			delete(m.byUser, uk)
		} else {
			m.byUser[uk] = list
		}
	}
	clear(m.finished[len(kept):])
	m.finished = kept
}

// Sweep evicts expired tasks; the server calls it periodically.
func (m *Manager) Sweep() {
	m.mu.Lock()
	m.evictLocked(m.now())
	m.mu.Unlock()
}

// visible reports whether p may see t: its owner, a task admin of its tenant, or a
// platform admin. Anything else is answered exactly like a task that does not exist.
func visible(p *auth.Principal, tenant, owner string) bool {
	if p.Has(auth.PermPlatformAdmin) {
		return true
	}
	return p.Tenant == tenant && (p.Subject == owner || p.Has(auth.PermTaskAdmin))
}

// Get returns a live or retained task p may see.
func (m *Manager) Get(p *auth.Principal, id string) (*Task, bool) {
	m.mu.Lock()
	t, ok := m.tasks[id]
	m.mu.Unlock()
	if !ok || !visible(p, t.Tenant, t.Owner) {
		return nil, false
	}
	return t, true
}

// Status returns the state of a task p may see: from memory, or from the store (and, for
// a task running on another node, the cluster's newest seq).
func (m *Manager) Status(ctx context.Context, p *auth.Principal, id string) (Snapshot, error) {
	t, rec, err := m.lookup(ctx, p, id)
	if err != nil {
		return Snapshot{}, err
	}
	if t != nil && !t.remote {
		return t.Snapshot(), nil
	}
	if t != nil {
		// A mirror may still be replaying: the store and the stream know the task's state.
		r, err := m.opts.Store.GetTask(ctx, t.Tenant, id)
		if err != nil {
			return t.Snapshot(), nil
		}
		rec = &r
	}
	snap := fromRecord(*rec)
	if !protocol.Terminal(rec.Status) {
		if tail := m.tail(ctx, *rec); tail > snap.LastSeq {
			snap.LastSeq = tail
		}
	}
	return snap, nil
}

func fromRecord(r record.Task) Snapshot {
	s := Snapshot{ID: r.ID, Tenant: r.Tenant, Owner: r.Owner, Objective: r.Objective, Status: r.Status,
		CreatedAt: r.CreatedAt, LastSeq: r.LastSeq, ExitCode: -1, Error: r.Error}
	if r.StartedAt != nil {
		s.StartedAt = *r.StartedAt
	}
	if r.EndedAt != nil {
		s.EndedAt = *r.EndedAt
	}
	if r.ExitCode != nil {
		s.ExitCode = *r.ExitCode
	}
	if u := r.Usage; u != nil {
		s.Usage = &protocol.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
			CacheReadInputTokens: u.CacheReadInputTokens, CacheCreationInputTokens: u.CacheCreationInputTokens,
			CostUSD: u.CostUSD, NumTurns: u.NumTurns}
	}
	return s
}

// Cancel cancels a task p may cancel (its owner, a task admin of its tenant, a platform
// admin), wherever it runs. Cancelling a task that already ended is a no-op that succeeds.
func (m *Manager) Cancel(ctx context.Context, p *auth.Principal, id string, meta Meta) error {
	t, rec, err := m.lookup(ctx, p, id)
	if err != nil {
		return err
	}
	switch {
	case t != nil && t.remote:
		if t.isDone() {
			return nil
		}
		return m.cancelRemote(ctx, p, id, t.node, meta)
	case t == nil:
		if protocol.Terminal(rec.Status) {
			return nil
		}
		return m.cancelRemote(ctx, p, id, rec.Node, meta)
	}
	if err := m.opts.Audit.Record(ctx, m.record(p, meta, audit.ActionTaskCancel, audit.OutcomeSuccess, t.ID, "", nil)); err != nil {
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	t.cancel(errCancelled)
	return nil
}

// CancelTenant cancels every task of tenant that runs here (a suspended tenant's engines must
// not go on spending with its key); each ends cancelled with error "tenant_suspended". It
// returns how many it cancelled.
func (m *Manager) CancelTenant(tenant string) int {
	n := m.cancelWhere(errSuspended, func(t *Task) bool { return t.Tenant == tenant })
	if n > 0 {
		m.log.Info("tenant suspended: its running tasks were cancelled", "tenant", tenant, "tasks", n)
	}
	return n
}

// CancelToken cancels the running tasks on this node started with token jti in tenant
// (auth.AnyTenant: in every tenant); they end cancelled with error "token_revoked". It returns
// how many.
func (m *Manager) CancelToken(tenant, jti string) int {
	if jti == "" {
		return 0
	}
	n := m.cancelWhere(errRevoked, func(t *Task) bool {
		return t.JTI == jti && (tenant == auth.AnyTenant || t.Tenant == tenant)
	})
	if n > 0 {
		m.log.Info("token revoked: the tasks it started were cancelled", "tenant", tenant, "tasks", n)
	}
	return n
}

// cancelWhere cancels, with cause, the live tasks running here that match.
func (m *Manager) cancelWhere(cause error, match func(*Task) bool) int {
	m.mu.Lock()
	var victims []*Task
	for _, t := range m.tasks {
		if !t.remote && !t.isDone() && match(t) {
			victims = append(victims, t)
		}
	}
	m.mu.Unlock()
	for _, t := range victims {
		t.cancel(cause)
	}
	return len(victims)
}

// List returns p's own recent tasks, newest first: live and retained ones from memory,
// completed with older ones from the store.
func (m *Manager) List(ctx context.Context, p *auth.Principal) ([]Snapshot, error) {
	limit := m.opts.ListLimit
	m.mu.Lock()
	mem := slices.Clone(m.byUser[userKey{p.Tenant, p.Subject}])
	m.mu.Unlock()
	seen := map[string]bool{}
	var out []Snapshot
	for i := len(mem) - 1; i >= 0 && len(out) < limit; i-- {
		s := mem[i].Snapshot()
		seen[s.ID] = true
		out = append(out, s)
	}
	if len(out) < limit {
		recs, err := m.opts.Store.ListTasks(ctx, record.Filter{Tenant: p.Tenant, Owner: p.Subject, Limit: limit})
		if err != nil {
			return out, err
		}
		for _, r := range recs {
			if !seen[r.ID] && len(out) < limit {
				out = append(out, fromRecord(r))
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// Subscribe attaches sub to a task p may see, wherever it runs, replaying every event
// after afterSeq and then following it live.
func (m *Manager) Subscribe(ctx context.Context, p *auth.Principal, id string, afterSeq int64, sub Subscriber) (*Subscription, error) {
	t, rec, err := m.lookup(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if t == nil {
		// A resume point beyond the task's newest event is its current tail.
		if tail := m.tail(ctx, *rec); tail >= 0 {
			afterSeq = min(afterSeq, tail)
		}
		t = m.mirror(*rec, afterSeq)
	}
	return m.attach(t, p, afterSeq, sub), nil
}

// Attach subscribes the creator of t (from Create) from the first event.
func (m *Manager) Attach(t *Task, p *auth.Principal, sub Subscriber) *Subscription {
	return m.attach(t, p, 0, sub)
}

func (m *Manager) attach(t *Task, p *auth.Principal, afterSeq int64, sub Subscriber) *Subscription {
	s := &Subscription{
		task: t, sub: sub, owner: p.Tenant == t.Tenant && p.Subject == t.Owner,
		progress: make(chan struct{}, 1), gone: make(chan struct{}),
		maxMsgs: int64(m.opts.SendQueueMessages), maxBytes: int64(m.opts.SendQueueBytes),
	}
	t.mu.Lock()
	if t.remote {
		// A mirror holds nothing before its base. Its resume point beyond its newest event
		// was clamped by Subscribe against the log and the stream, which it may not hold yet.
		afterSeq = max(afterSeq, t.base)
	} else {
		// A local task's events before its base are in the event log (Stored); a resume
		// point beyond its newest event is its current tail.
		afterSeq = max(min(afterSeq, t.lastSeqLocked()), 0)
	}
	s.cursor.Store(afterSeq)
	// The cumulative bytes through the cursor. Before the base they are not known; they
	// only bound a live subscriber, and the subscriber reaches baseEnd at the base.
	switch i := afterSeq - t.base - 1; {
	case i == -1:
		s.cursorBytes.Store(t.baseEnd)
	case i >= 0 && i < int64(len(t.log)):
		s.cursorBytes.Store(t.log[i].end)
	case i >= 0:
		s.cursorBytes.Store(t.headBytes.Load())
	}
	t.subs = append(slices.Clip(t.subs), s)
	if s.owner {
		t.ownerSubs++
		if t.detach != nil && !t.remote {
			t.detach.Stop()
			t.detach = nil
		}
	}
	t.mu.Unlock()
	sub.Notify()
	return s
}

// unsubscribe removes s; when the last owner session of a live task goes, the task is
// detached (cancelled after the grace) or cancelled at once, per tasks.on_disconnect.
func (m *Manager) unsubscribe(s *Subscription) {
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	close(s.gone)
	t := s.task
	t.mu.Lock()
	if i := slices.Index(t.subs, s); i >= 0 {
		subs := make([]*Subscription, 0, len(t.subs)-1)
		subs = append(subs, t.subs[:i]...)
		t.subs = append(subs, t.subs[i+1:]...)
	}
	abandon := false
	if s.owner && !t.remote {
		t.ownerSubs--
		if t.ownerSubs == 0 && !protocol.Terminal(t.status) {
			t.lastOwner = m.now()
			if m.opts.OnDisconnectCancel || m.opts.DetachGrace <= 0 {
				abandon = true
			} else if !m.draining.Load() {
				t.detach = time.AfterFunc(m.opts.DetachGrace, func() { t.cancel(errDetached) })
			}
		}
	}
	idle := t.remote && len(t.subs) == 0
	t.mu.Unlock()
	if idle {
		m.dropMirror(t)
		return
	}
	if abandon {
		t.cancel(errOwnerAbandon)
	}
}

// Drain refuses new tasks, gives running ones until ctx ends to finish, then cancels the
// rest as interrupted and waits for every task goroutine.
func (m *Manager) Drain(ctx context.Context) {
	m.draining.Store(true)
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	m.mu.Lock()
	for _, t := range m.tasks {
		t.cancel(errShutdown)
	}
	for _, stop := range m.followers {
		stop()
	}
	m.mu.Unlock()
	<-done
}

// Draining reports whether Drain has begun.
func (m *Manager) Draining() bool { return m.draining.Load() }

// Counts reports live tasks for metrics and readiness.
func (m *Manager) Counts() (waiting, running int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waiting, m.running
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hx = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hx[c>>4], hx[c&0xf])
	}
	return string(out)
}

type metricsAdapter struct{ m Metrics }

func (a metricsAdapter) taskStarted() {
	if a.m != nil {
		a.m.TaskStarted()
	}
}
func (a metricsAdapter) taskFinished(s string, d time.Duration) {
	if a.m != nil {
		a.m.TaskFinished(s, d)
	}
}
func (a metricsAdapter) queueWait(d time.Duration) {
	if a.m != nil {
		a.m.QueueWait(d)
	}
}
func (a metricsAdapter) event(n int) {
	if a.m != nil {
		a.m.Event(n)
	}
}
func (a metricsAdapter) slowConsumer() {
	if a.m != nil {
		a.m.SlowConsumer()
	}
}
func (a metricsAdapter) permissionDenied() {
	if a.m != nil {
		a.m.PermissionDenied()
	}
}
func (a metricsAdapter) eventsPersisted(n int) {
	if a.m != nil {
		a.m.EventsPersisted(n)
	}
}
func (a metricsAdapter) eventPersistFailed() {
	if a.m != nil {
		a.m.EventPersistFailed()
	}
}
func (a metricsAdapter) engineUsage(u *protocol.Usage) {
	if a.m != nil {
		a.m.EngineUsage(u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens, u.CostUSD)
	}
}
