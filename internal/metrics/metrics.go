package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every flowgate series.
const Namespace = "flowgate"

// Handler bounds: a scrape is cheap, but the ops listener must not be a way to pile up work.
const (
	maxScrapesInFlight = 4
	scrapeTimeout      = 10 * time.Second
	readyTimeout       = time.Second
)

// ErrObserved is returned when the same source is observed twice (its series already exist).
var ErrObserved = errors.New("metrics: already observed")

// Options configures New.
type Options struct {
	Version string // build version (main.version)
	Commit  string // build commit (main.commit)
	Logger  *slog.Logger
}

// Metrics owns a Prometheus registry and every flowgate collector on it. Nothing is registered
// on prometheus.DefaultRegisterer. The adapters it hands out (Tasks, Sessions, HTTP, Egress,
// Store, Redis, SecretFetch, AuditHooks) are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	connections       prometheus.Gauge
	connectionsOpened prometheus.Counter
	connectionsClosed *prometheus.CounterVec
	messages          *prometheus.CounterVec
	rejections        *prometheus.CounterVec

	tasksStarted      prometheus.Counter
	tasks             *prometheus.CounterVec
	taskDuration      *prometheus.HistogramVec
	queueWait         prometheus.Histogram
	events            prometheus.Counter
	outputBytes       prometheus.Counter
	slowConsumers     prometheus.Counter
	permissionDenials prometheus.Counter
	eventsPersisted   prometheus.Counter
	engineTokens      *prometheus.CounterVec
	engineCost        prometheus.Counter
	eventPersistFails prometheus.Counter
	egressDenied      *prometheus.CounterVec
	egressBytes       *prometheus.CounterVec

	rateLimited  *prometheus.CounterVec
	authFailures *prometheus.CounterVec

	secretFetches       *prometheus.CounterVec
	secretFetchDuration *prometheus.HistogramVec

	auditWritten       prometheus.Counter
	auditFailures      *prometheus.CounterVec
	auditBatchSize     prometheus.Histogram
	auditBatchDuration prometheus.Histogram
	auditBatchFailures prometheus.Counter
	auditCheckpoints   *prometheus.CounterVec

	httpRequests  *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	storeDuration *prometheus.HistogramVec
	storeErrors   *prometheus.CounterVec
	redisDuration *prometheus.HistogramVec
	redisErrors   *prometheus.CounterVec
	wsFramesSent  prometheus.Counter
	wsBytesSent   prometheus.Counter

	// The fixed label values each input is clamped to.
	statuses, types, codes, scopes, reasons, fetchOutcomes, actions labelSet
	methods, storeOps, redisCmds                                    labelSet
	// routes are the public listener's route patterns: code-defined, so bounded already, but
	// capped anyway so that a handler reporting a raw path could not grow the series.
	routes *cappedSet
}

// New builds the registry: flowgate's series (every bounded label value pre-initialised at
// zero), build info, and the Go runtime and process collectors.
func New(opts Options) *Metrics {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg, log: log}
	f := factory{reg}

	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	build := f.gaugeVec("build_info", "Build of the running flowgate: always 1.", "version", "commit", "goversion")
	build.WithLabelValues(orUnknown(opts.Version), orUnknown(opts.Commit), runtime.Version()).Set(1)

	m.connections = f.gauge("connections", "WebSocket sessions open now.")
	m.connectionsOpened = f.counter("connections_opened_total", "WebSocket sessions opened (after authentication).")
	m.connectionsClosed = f.counterVec("connections_closed_total", "WebSocket sessions closed, by close code class.", "class")
	m.messages = f.counterVec("messages_total", "Client messages received, by type (invalid: did not decode).", "type")
	m.rejections = f.counterVec("rejections_total", "Client requests refused inside a session, by error code.", "code")

	m.tasksStarted = f.counter("tasks_started_total", "Tasks whose engine was started.")
	m.tasks = f.counterVec("tasks_total", "Tasks finished, by final status.", "status")
	m.taskDuration = f.histogramVec("task_duration_seconds", "Run time of finished tasks (start to end), by final status.",
		[]float64{1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600}, "status")
	m.queueWait = f.histogram("task_queue_wait_seconds", "Time tasks waited for an executor slot.",
		[]float64{0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300})
	m.events = f.counter("task_events_total", "Engine events appended to task logs.")
	m.outputBytes = f.counter("engine_output_bytes_total", "Bytes of engine output forwarded as events (after redaction and framing).")
	m.slowConsumers = f.counter("slow_consumer_closes_total", "Subscribers dropped because they could not keep up (closed with 1008).")
	m.egressDenied = f.counterVec("egress_denied_total", "Destinations engines asked the egress proxy for and were refused, by reason (not_allowed, unresolvable, special_address).", "reason")
	m.egressBytes = f.counterVec("egress_bytes_total", "Bytes engines sent (out) and received (in) through the egress proxy.", "direction")
	m.permissionDenials = f.counter("engine_permission_denials_total", "Tools engines asked to run and were refused by their permission mode (engine.permission_mode).")
	m.engineTokens = f.counterVec("engine_tokens_total", "Tokens the engines reported using, by kind (input, output, cache_read, cache_creation), counted when a task ends.", "kind")
	m.engineCost = f.counter("engine_cost_usd_total", "US dollars the engines reported spending, counted when a task ends.")
	m.eventsPersisted = f.counter("task_events_persisted_total", "Task events written to the store's event log (DESIGN §17).")
	m.eventPersistFails = f.counter("task_event_persist_failures_total", "Event log batches the store refused; they are retried, and new swarms are refused while the backlog is over its bound.")

	m.rateLimited = f.counterVec("ratelimit_denials_total", "Requests refused by a rate limit, connection cap or task quota, by scope.", "scope")
	m.authFailures = f.counterVec("auth_failures_total", "Refused authentications (WebSocket handshakes and API calls), by reason.", "reason")

	m.secretFetches = f.counterVec("secret_fetches_total", "Tenant key fetches from the secrets provider, by outcome.", "outcome")
	m.secretFetchDuration = f.histogramVec("secret_fetch_duration_seconds", "Latency of tenant key fetches from the secrets provider, by outcome.",
		[]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}, "outcome")

	m.auditWritten = f.counter("audit_records_written_total", "Audit records committed.")
	m.auditFailures = f.counterVec("audit_write_failures_total", "Audit records that could not be made durable, by action.", "action")
	m.auditBatchSize = f.histogram("audit_batch_size", "Records per audit append transaction.",
		[]float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024})
	m.auditBatchDuration = f.histogram("audit_batch_duration_seconds", "Duration of audit append transactions.",
		[]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 10})
	m.auditBatchFailures = f.counter("audit_batch_failures_total", "Audit append transactions that failed.")
	m.auditCheckpoints = f.counterVec("audit_checkpoints_total", "Audit checkpoint runs, by outcome.", "outcome")

	m.httpRequests = f.counterVec("http_requests_total", "Requests of the public listener, by route pattern, method and status class (1xx: WebSocket upgrade).",
		"route", "method", "class")
	m.httpDuration = f.histogramVec("http_request_duration_seconds", "Latency of public listener requests, by route pattern and method (WebSocket upgrades: until the connection is handed to its session).",
		[]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}, "route", "method")
	m.storeDuration = f.histogramVec("store_operation_duration_seconds", "Latency of database operations, by operation.",
		[]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}, "op")
	m.storeErrors = f.counterVec("store_errors_total", "Database operations that failed (not found, conflicts and invalid input are outcomes, not failures), by operation.", "op")
	m.redisDuration = f.histogramVec("redis_command_duration_seconds", "Latency of Redis commands (cluster mode), by command; blocking reads are not timed.",
		[]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}, "cmd")
	m.redisErrors = f.counterVec("redis_errors_total", "Redis commands that failed (an empty answer is not a failure), by command.", "cmd")
	m.wsFramesSent = f.counter("ws_frames_sent_total", "WebSocket data frames written to clients (replies and task events; pings and closes are not counted).")
	m.wsBytesSent = f.counter("ws_bytes_sent_total", "Payload bytes of the WebSocket data frames written to clients (before WebSocket framing).")

	m.statuses, m.types, m.codes = newLabelSet(taskStatuses()), newLabelSet(messageTypes()), newLabelSet(rejectionCodes())
	m.scopes, m.reasons = newLabelSet(rateLimitScopes()), newLabelSet(authReasons())
	m.fetchOutcomes, m.actions = newLabelSet(secretOutcomes()), newLabelSet(auditActions())
	m.methods, m.storeOps, m.redisCmds = newLabelSet(httpMethods()), newLabelSet(storeOps()), newLabelSet(redisCommands())
	m.routes = newCappedSet(maxRoutes)

	// Pre-initialise every bounded series at zero (and "other" where inputs are clamped).
	for _, v := range closeClasses() {
		m.connectionsClosed.WithLabelValues(v)
	}
	for _, v := range messageTypes() {
		m.messages.WithLabelValues(v)
	}
	for _, v := range rejectionCodes() {
		m.rejections.WithLabelValues(v)
	}
	for _, v := range taskStatuses() {
		m.tasks.WithLabelValues(v)
		m.taskDuration.WithLabelValues(v)
	}
	for _, v := range rateLimitScopes() {
		m.rateLimited.WithLabelValues(v)
	}
	for _, v := range authReasons() {
		m.authFailures.WithLabelValues(v)
	}
	for _, v := range secretOutcomes() {
		m.secretFetches.WithLabelValues(v)
		m.secretFetchDuration.WithLabelValues(v)
	}
	for _, v := range auditActions() {
		m.auditFailures.WithLabelValues(v)
	}
	for _, v := range outcomes() {
		m.auditCheckpoints.WithLabelValues(v)
	}
	for _, v := range []string{"not_allowed", "unresolvable", "special_address"} {
		m.egressDenied.WithLabelValues(v)
	}
	for _, v := range []string{"out", "in"} {
		m.egressBytes.WithLabelValues(v)
	}
	for _, v := range tokenKinds {
		m.engineTokens.WithLabelValues(v)
	}
	for _, v := range storeOps() {
		m.storeDuration.WithLabelValues(v)
		m.storeErrors.WithLabelValues(v)
	}
	// Redis series exist on a single node too (at zero): dashboards and alerts need not
	// know whether a replica runs in cluster mode.
	for _, v := range append(redisCommands(), Other) {
		m.redisDuration.WithLabelValues(v)
		m.redisErrors.WithLabelValues(v)
	}
	return m
}

// Registry is the registry every series lives on (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format. Mount it on the ops listener
// only: it describes the server's load and failures to whoever can read it.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapesInFlight,
		Timeout:             scrapeTimeout,
	})
}

// Sources are the live values read at scrape time. Every field is optional.
type Sources struct {
	// TaskCounts returns the tasks waiting for an executor slot and running now
	// (task.Manager.Counts).
	TaskCounts func() (waiting, running int)
	// ExecutorPool and ExecutorQueue are limits.executor_pool and limits.executor_queue.
	ExecutorPool, ExecutorQueue int
	// EngineStarts returns the engines starting now and the tasks waiting to start one
	// (executor.Executor.Starts).
	EngineStarts func() (starting, waiting int)
	// SecretCache returns the secrets cache counters (secrets.Cache.Stats).
	SecretCache func() SecretCacheStats
	// Limiter returns the rate limiter's size (ratelimit.Limiter.Stats).
	Limiter func() LimiterStats
	// AuditQueued returns the audit records waiting to be written (audit.Recorder.Stats).
	AuditQueued func() int
	// Parked returns the connections parked in the poller (netpoll.Poller.Parked).
	Parked func() int
	// Ready is the /readyz check (nil: ready); Draining reports a shutdown in progress.
	Ready    func(ctx context.Context) error
	Draining func() bool
}

// SecretCacheStats is what the secrets cache counts (see secrets.CacheStats).
type SecretCacheStats struct {
	Hits, Misses, StaleServed, Evictions uint64
	Entries                              int
}

// LimiterStats is what the rate limiter counts (see ratelimit.Stats).
type LimiterStats struct {
	Entries   int
	Evictions uint64
}

// Observe registers the scrape-time series of src. Call it once, after the server's parts
// exist; a second call returns ErrObserved.
func (m *Metrics) Observe(src Sources) error {
	cs := []prometheus.Collector{}
	gaugeFunc := func(name, help string, f func() float64) {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, f))
	}
	counterFunc := func(name, help string, f func() float64) {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, f))
	}
	if src.TaskCounts != nil {
		gaugeFunc("tasks_queued", "Tasks waiting for an executor slot.", func() float64 { w, _ := src.TaskCounts(); return float64(w) })
		gaugeFunc("tasks_running", "Tasks whose engine is running.", func() float64 { _, r := src.TaskCounts(); return float64(r) })
	}
	if src.ExecutorPool > 0 {
		pool, queue := float64(src.ExecutorPool), float64(src.ExecutorQueue)
		gaugeFunc("executor_pool_size", "Engine processes allowed at once (limits.executor_pool).", func() float64 { return pool })
		gaugeFunc("executor_queue_size", "Tasks allowed to wait for a slot (limits.executor_queue).", func() float64 { return queue })
	}
	if src.EngineStarts != nil {
		st := src.EngineStarts
		gaugeFunc("engine_starting", "Engines between their task's setup and their first line, exit or 2 s (at most engine.max_starting when set).",
			func() float64 { n, _ := st(); return float64(n) })
		gaugeFunc("engine_starts_queued", "Tasks waiting for an engine start slot (engine.max_starting).",
			func() float64 { _, w := st(); return float64(w) })
	}
	if src.SecretCache != nil {
		c := src.SecretCache
		counterFunc("secret_cache_hits_total", "Tenant key lookups served from the cache.", func() float64 { return float64(c().Hits) })
		counterFunc("secret_cache_misses_total", "Tenant key lookups that needed a provider fetch.", func() float64 { return float64(c().Misses) })
		counterFunc("secret_cache_stale_served_total", "Tenant keys served past their TTL (within secrets.max_stale) because a refresh failed.",
			func() float64 { return float64(c().StaleServed) })
		counterFunc("secret_cache_evictions_total", "Tenant keys dropped by the cache size bound.", func() float64 { return float64(c().Evictions) })
		gaugeFunc("secret_cache_entries", "Tenants with a cached key.", func() float64 { return float64(c().Entries) })
	}
	if src.Limiter != nil {
		l := src.Limiter
		gaugeFunc("ratelimit_entries", "Rate-limit buckets held (bounded by limits.limiter_max_entries).", func() float64 { return float64(l().Entries) })
		counterFunc("ratelimit_evictions_total", "Rate-limit buckets evicted by the size bound.", func() float64 { return float64(l().Evictions) })
	}
	if src.AuditQueued != nil {
		q := src.AuditQueued
		gaugeFunc("audit_queue_length", "Audit records waiting to be written.", func() float64 { return float64(q()) })
	}
	if src.Parked != nil {
		pk := src.Parked
		gaugeFunc("connections_parked", "WebSocket sessions parked while idle (no reader goroutine until the client sends).", func() float64 { return float64(pk()) })
	}
	if src.Ready != nil || src.Draining != nil {
		gaugeFunc("ready", "1 when this replica accepts new work (what /readyz answers), 0 otherwise.", func() float64 {
			if src.Draining != nil && src.Draining() {
				return 0
			}
			if src.Ready != nil {
				ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
				defer cancel()
				if src.Ready(ctx) != nil {
					return 0
				}
			}
			return 1
		})
		gaugeFunc("draining", "1 once shutdown began (SIGTERM): new connections and swarms are refused.", func() float64 {
			if src.Draining != nil && src.Draining() {
				return 1
			}
			return 0
		})
	}
	for i, c := range cs {
		if err := m.reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				m.reg.Unregister(done)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return ErrObserved
			}
			return err
		}
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// factory registers each collector as it is built, under the flowgate namespace.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}
