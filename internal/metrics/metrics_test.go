package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value returns the value of the series name{labels} (counter, gauge, or a histogram's count),
// and whether it exists.
func value(t *testing.T, m *Metrics, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range s.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if len(got) != len(labels) {
				continue
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return s.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return s.GetGauge().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(s.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func mustValue(t *testing.T, m *Metrics, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := value(t, m, name, labels)
	if !ok {
		t.Fatalf("%s%v does not exist", name, labels)
	}
	if got != want {
		t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func seriesCount(t *testing.T, m *Metrics, name string) int {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

func TestOwnRegistryNotGlobal(t *testing.T) {
	a := New(Options{Version: "1.2.3", Commit: "abc"})
	b := New(Options{}) // a second server in the same process must not collide
	a.HTTP().AuthFailure("bad_signature")
	mustValue(t, a, "flowgate_auth_failures_total", map[string]string{"reason": "bad_signature"}, 1)
	mustValue(t, b, "flowgate_auth_failures_total", map[string]string{"reason": "bad_signature"}, 0)

	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), Namespace+"_") {
			t.Fatalf("%s is on the global registry", mf.GetName())
		}
	}
	mfs, err = a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var goRuntime, process bool
	for _, mf := range mfs {
		goRuntime = goRuntime || mf.GetName() == "go_goroutines"
		process = process || mf.GetName() == "process_start_time_seconds"
	}
	if !goRuntime || !process {
		t.Fatalf("go collector %v, process collector %v", goRuntime, process)
	}
}

func TestBuildInfo(t *testing.T) {
	m := New(Options{Version: "1.2.3", Commit: "abc123"})
	mfs, _ := m.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() != "flowgate_build_info" {
			continue
		}
		labels := map[string]string{}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["version"] != "1.2.3" || labels["commit"] != "abc123" || !strings.HasPrefix(labels["goversion"], "go") {
			t.Fatalf("build_info labels %v", labels)
		}
		return
	}
	t.Fatal("no flowgate_build_info")
}

// Every bounded series exists at zero from the start, so alert expressions over rate() see it.
func TestSeriesPreinitialised(t *testing.T) {
	m := New(Options{})
	for _, tc := range []struct {
		name   string
		label  string
		values []string
	}{
		{"flowgate_tasks_total", "status", taskStatuses()},
		{"flowgate_task_duration_seconds", "status", taskStatuses()},
		{"flowgate_messages_total", "type", messageTypes()},
		{"flowgate_rejections_total", "code", rejectionCodes()},
		{"flowgate_connections_closed_total", "class", closeClasses()},
		{"flowgate_ratelimit_denials_total", "scope", rateLimitScopes()},
		{"flowgate_auth_failures_total", "reason", authReasons()},
		{"flowgate_secret_fetches_total", "outcome", secretOutcomes()},
		{"flowgate_secret_fetch_duration_seconds", "outcome", secretOutcomes()},
		{"flowgate_audit_write_failures_total", "action", auditActions()},
		{"flowgate_audit_checkpoints_total", "outcome", outcomes()},
		{"flowgate_store_operation_duration_seconds", "op", storeOps()},
		{"flowgate_store_errors_total", "op", storeOps()},
		{"flowgate_redis_command_duration_seconds", "cmd", append(redisCommands(), Other)},
		{"flowgate_redis_errors_total", "cmd", append(redisCommands(), Other)},
	} {
		for _, v := range tc.values {
			mustValue(t, m, tc.name, map[string]string{tc.label: v}, 0)
		}
	}
	for _, name := range []string{"flowgate_connections", "flowgate_connections_opened_total", "flowgate_tasks_started_total",
		"flowgate_task_queue_wait_seconds", "flowgate_task_events_total", "flowgate_engine_output_bytes_total",
		"flowgate_slow_consumer_closes_total", "flowgate_audit_records_written_total", "flowgate_audit_batch_size",
		"flowgate_audit_batch_duration_seconds", "flowgate_audit_batch_failures_total",
		"flowgate_ws_frames_sent_total", "flowgate_ws_bytes_sent_total"} {
		mustValue(t, m, name, nil, 0)
	}
}

// No input, however hostile, adds a label value outside the fixed sets.
func TestLabelsAreBounded(t *testing.T) {
	m := New(Options{})
	before := map[string]int{}
	names := []string{"flowgate_auth_failures_total", "flowgate_messages_total", "flowgate_rejections_total",
		"flowgate_tasks_total", "flowgate_ratelimit_denials_total", "flowgate_secret_fetches_total",
		"flowgate_audit_write_failures_total", "flowgate_connections_closed_total",
		"flowgate_store_operation_duration_seconds", "flowgate_store_errors_total"}
	for _, n := range names {
		before[n] = seriesCount(t, m, n)
	}
	for i := range 1000 {
		v := fmt.Sprintf("tenant-%d/user-%d/eyJhbGciOi%d", i, i, i)
		m.HTTP().AuthFailure(v)
		m.HTTP().Rejected(v)
		m.Sessions().Message(v)
		m.Sessions().Rejected(v, v)
		m.Sessions().Rejected("rate_limited", v)
		m.Sessions().Rejected("quota_exceeded", v)
		m.Tasks().TaskFinished(v, time.Second)
		m.SecretFetch(v, time.Millisecond)
		m.AuditHooks().Failure(v, errors.New("x"))
		m.Sessions().SessionOpened()
		m.Sessions().SessionClosed(4000 + i)
		m.Store().Observe(v, time.Millisecond, errors.New("x"))
		m.Redis().Observe(v, time.Millisecond, errors.New("x"))
	}
	for _, n := range names {
		// Each may have grown by exactly one series: "other".
		if got := seriesCount(t, m, n); got != before[n]+1 {
			t.Errorf("%s: %d series, want %d", n, got, before[n]+1)
		}
	}
	mustValue(t, m, "flowgate_auth_failures_total", map[string]string{"reason": Other}, 1000)
	mustValue(t, m, "flowgate_ratelimit_denials_total", map[string]string{"scope": Other}, 3000)
	mustValue(t, m, "flowgate_connections", nil, 0)
	// Redis has an "other" series from the start (the client's own commands land there).
	for _, n := range []string{"flowgate_redis_command_duration_seconds", "flowgate_redis_errors_total"} {
		if got, want := seriesCount(t, m, n), len(redisCommands())+1; got != want {
			t.Errorf("%s: %d series, want %d", n, got, want)
		}
	}
	mustValue(t, m, "flowgate_redis_errors_total", map[string]string{"cmd": Other}, 1000)
	mustValue(t, m, "flowgate_store_errors_total", map[string]string{"op": Other}, 1000)
}

// Routes are patterns from code, but a handler reporting raw paths still cannot grow the
// series past maxRoutes (+ other); methods and classes come from fixed sets.
func TestHTTPLabelsAreBounded(t *testing.T) {
	m := New(Options{})
	h := m.HTTP()
	for i := range 1000 {
		h.Request(fmt.Sprintf("/v1/admin/tenants/tenant-%d", i), fmt.Sprintf("M%d", i), 200+i, time.Millisecond)
	}
	routes := map[string]bool{}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "flowgate_http_requests_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				switch l.GetName() {
				case "route":
					routes[l.GetValue()] = true
				case "method":
					if l.GetValue() != Other {
						t.Errorf("method %q", l.GetValue())
					}
				case "class":
					if !slices.Contains([]string{"2xx", "3xx", "4xx", "5xx", Other}, l.GetValue()) {
						t.Errorf("class %q", l.GetValue())
					}
				}
			}
		}
	}
	if len(routes) != maxRoutes+1 || !routes[Other] {
		t.Fatalf("%d route values, want %d and %q", len(routes), maxRoutes+1, Other)
	}
}

func TestStatusClass(t *testing.T) {
	for code, want := range map[int]string{101: "1xx", 200: "2xx", 204: "2xx", 302: "3xx", 404: "4xx", 429: "4xx", 500: "5xx", 503: "5xx", 0: Other, 99: Other, 600: Other} {
		if got := statusClass(code); got != want {
			t.Errorf("statusClass(%d) = %s, want %s", code, got, want)
		}
	}
}

func TestAdapters(t *testing.T) {
	m := New(Options{})
	tk, ss, h := m.Tasks(), m.Sessions(), m.HTTP()

	tk.TaskStarted()
	tk.QueueWait(20 * time.Millisecond)
	tk.Event(100)
	tk.Event(50)
	tk.TaskFinished("success", 2*time.Second)
	tk.TaskFinished("cancelled", 0) // cancelled while queued: counted, not timed
	tk.SlowConsumer()
	mustValue(t, m, "flowgate_tasks_started_total", nil, 1)
	mustValue(t, m, "flowgate_task_queue_wait_seconds", nil, 1)
	mustValue(t, m, "flowgate_task_events_total", nil, 2)
	mustValue(t, m, "flowgate_engine_output_bytes_total", nil, 150)
	mustValue(t, m, "flowgate_tasks_total", map[string]string{"status": "success"}, 1)
	mustValue(t, m, "flowgate_tasks_total", map[string]string{"status": "cancelled"}, 1)
	mustValue(t, m, "flowgate_task_duration_seconds", map[string]string{"status": "success"}, 1)
	mustValue(t, m, "flowgate_task_duration_seconds", map[string]string{"status": "cancelled"}, 0)
	mustValue(t, m, "flowgate_slow_consumer_closes_total", nil, 1)

	ss.SessionOpened()
	ss.SessionOpened()
	ss.SessionClosed(1008)
	ss.Message("swarm")
	ss.Message("invalid")
	ss.Rejected("rate_limited", "user")
	ss.Rejected("rate_limited", "connection")
	ss.Rejected("quota_exceeded", "tenant")
	ss.Rejected("validation_failed", "swarm")
	mustValue(t, m, "flowgate_connections", nil, 1)
	mustValue(t, m, "flowgate_connections_opened_total", nil, 2)
	mustValue(t, m, "flowgate_connections_closed_total", map[string]string{"class": "policy"}, 1)
	mustValue(t, m, "flowgate_messages_total", map[string]string{"type": "swarm"}, 1)
	mustValue(t, m, "flowgate_messages_total", map[string]string{"type": "invalid"}, 1)
	mustValue(t, m, "flowgate_rejections_total", map[string]string{"code": "rate_limited"}, 2)
	mustValue(t, m, "flowgate_rejections_total", map[string]string{"code": "validation_failed"}, 1)
	mustValue(t, m, "flowgate_ratelimit_denials_total", map[string]string{"scope": "swarms_user"}, 1)
	mustValue(t, m, "flowgate_ratelimit_denials_total", map[string]string{"scope": "messages_connection"}, 1)
	mustValue(t, m, "flowgate_ratelimit_denials_total", map[string]string{"scope": "tasks_tenant"}, 1)

	h.AuthFailure("token_expired")
	h.Rejected("handshake_ip")
	mustValue(t, m, "flowgate_auth_failures_total", map[string]string{"reason": "token_expired"}, 1)
	mustValue(t, m, "flowgate_ratelimit_denials_total", map[string]string{"scope": "handshake_ip"}, 1)

	m.SecretFetch("ok", 30*time.Millisecond)
	m.SecretFetch("error", time.Second)
	mustValue(t, m, "flowgate_secret_fetches_total", map[string]string{"outcome": "ok"}, 1)
	mustValue(t, m, "flowgate_secret_fetches_total", map[string]string{"outcome": "error"}, 1)
	mustValue(t, m, "flowgate_secret_fetch_duration_seconds", map[string]string{"outcome": "error"}, 1)

	hooks := m.AuditHooks()
	hooks.Batch(10, time.Millisecond, nil)
	hooks.Batch(3, time.Millisecond, errors.New("disk full"))
	hooks.Failure("task.create", errors.New("disk full"))
	hooks.Checkpoint(2, nil)
	hooks.Checkpoint(0, errors.New("no key"))
	mustValue(t, m, "flowgate_audit_records_written_total", nil, 10)
	mustValue(t, m, "flowgate_audit_batch_size", nil, 1)
	mustValue(t, m, "flowgate_audit_batch_duration_seconds", nil, 2)
	mustValue(t, m, "flowgate_audit_batch_failures_total", nil, 1)
	mustValue(t, m, "flowgate_audit_write_failures_total", map[string]string{"action": "task.create"}, 1)
	mustValue(t, m, "flowgate_audit_checkpoints_total", map[string]string{"outcome": "success"}, 1)
	mustValue(t, m, "flowgate_audit_checkpoints_total", map[string]string{"outcome": "failure"}, 1)

	h.Request("/ws", "GET", 101, 5*time.Millisecond)
	h.Request("/v1/admin/tenants/{id}", "PATCH", 200, time.Millisecond)
	h.Request("/v1/admin/tenants/{id}", "PATCH", 503, time.Millisecond)
	h.Request("other", "GET", 404, time.Millisecond)
	mustValue(t, m, "flowgate_http_requests_total", map[string]string{"route": "/ws", "method": "GET", "class": "1xx"}, 1)
	mustValue(t, m, "flowgate_http_requests_total", map[string]string{"route": "/v1/admin/tenants/{id}", "method": "PATCH", "class": "2xx"}, 1)
	mustValue(t, m, "flowgate_http_requests_total", map[string]string{"route": "/v1/admin/tenants/{id}", "method": "PATCH", "class": "5xx"}, 1)
	mustValue(t, m, "flowgate_http_requests_total", map[string]string{"route": "other", "method": "GET", "class": "4xx"}, 1)
	mustValue(t, m, "flowgate_http_request_duration_seconds", map[string]string{"route": "/v1/admin/tenants/{id}", "method": "PATCH"}, 2)

	st := m.Store()
	st.Observe("query", 2*time.Millisecond, nil)
	st.Observe("append_audit", 3*time.Millisecond, errors.New("disk full"))
	mustValue(t, m, "flowgate_store_operation_duration_seconds", map[string]string{"op": "query"}, 1)
	mustValue(t, m, "flowgate_store_operation_duration_seconds", map[string]string{"op": "append_audit"}, 1)
	mustValue(t, m, "flowgate_store_errors_total", map[string]string{"op": "query"}, 0)
	mustValue(t, m, "flowgate_store_errors_total", map[string]string{"op": "append_audit"}, 1)

	rd := m.Redis()
	rd.Observe("script", time.Millisecond, nil)
	rd.Observe("xread", 0, nil) // blocking read: counted by the caller, not timed
	rd.Observe("dial", time.Second, errors.New("connection refused"))
	mustValue(t, m, "flowgate_redis_command_duration_seconds", map[string]string{"cmd": "script"}, 1)
	mustValue(t, m, "flowgate_redis_command_duration_seconds", map[string]string{"cmd": "xread"}, 0)
	mustValue(t, m, "flowgate_redis_command_duration_seconds", map[string]string{"cmd": "dial"}, 1)
	mustValue(t, m, "flowgate_redis_errors_total", map[string]string{"cmd": "dial"}, 1)
	mustValue(t, m, "flowgate_redis_errors_total", map[string]string{"cmd": "script"}, 0)

	ss.FramesSent(3, 300)
	ss.FramesSent(1, 20)
	ss.FramesSent(0, 0)
	mustValue(t, m, "flowgate_ws_frames_sent_total", nil, 4)
	mustValue(t, m, "flowgate_ws_bytes_sent_total", nil, 320)
}

func TestCloseClasses(t *testing.T) {
	for code, want := range map[int]string{
		1000: "normal", 1001: "going_away", 1002: "protocol_error", 1003: "protocol_error", 1005: "abnormal",
		1006: "abnormal", 1007: "protocol_error", 1008: "policy", 1009: "too_big", 1011: "internal", 4001: Other, 0: Other,
	} {
		if got := closeClass(code); got != want {
			t.Errorf("closeClass(%d) = %s, want %s", code, got, want)
		}
	}
}

func TestObserve(t *testing.T) {
	m := New(Options{})
	var (
		mu       sync.Mutex
		draining bool
		readyErr error
	)
	src := Sources{
		TaskCounts:    func() (int, int) { return 3, 7 },
		ExecutorPool:  64,
		ExecutorQueue: 256,
		EngineStarts:  func() (int, int) { return 2, 5 },
		SecretCache: func() SecretCacheStats {
			return SecretCacheStats{Hits: 5, Misses: 2, StaleServed: 1, Evictions: 4, Entries: 9}
		},
		Limiter:     func() LimiterStats { return LimiterStats{Entries: 11, Evictions: 12} },
		AuditQueued: func() int { return 13 },
		Parked:      func() int { return 7 },
		Ready: func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			return readyErr
		},
		Draining: func() bool {
			mu.Lock()
			defer mu.Unlock()
			return draining
		},
	}
	if err := m.Observe(src); err != nil {
		t.Fatal(err)
	}
	if err := m.Observe(src); !errors.Is(err, ErrObserved) {
		t.Fatalf("second Observe: %v, want ErrObserved", err)
	}
	for name, want := range map[string]float64{
		"flowgate_tasks_queued": 3, "flowgate_tasks_running": 7, "flowgate_executor_pool_size": 64,
		"flowgate_executor_queue_size": 256, "flowgate_secret_cache_hits_total": 5, "flowgate_secret_cache_misses_total": 2,
		"flowgate_secret_cache_stale_served_total": 1, "flowgate_secret_cache_evictions_total": 4,
		"flowgate_secret_cache_entries": 9, "flowgate_ratelimit_entries": 11, "flowgate_ratelimit_evictions_total": 12,
		"flowgate_audit_queue_length": 13, "flowgate_connections_parked": 7, "flowgate_ready": 1, "flowgate_draining": 0,
		"flowgate_engine_starting": 2, "flowgate_engine_starts_queued": 5,
	} {
		mustValue(t, m, name, nil, want)
	}
	mu.Lock()
	readyErr = errors.New("db down")
	mu.Unlock()
	mustValue(t, m, "flowgate_ready", nil, 0)
	mu.Lock()
	readyErr, draining = nil, true
	mu.Unlock()
	mustValue(t, m, "flowgate_ready", nil, 0)
	mustValue(t, m, "flowgate_draining", nil, 1)
}

func TestHandler(t *testing.T) {
	m := New(Options{Version: "9.9.9"})
	m.HTTP().AuthFailure("bad_signature")
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`flowgate_auth_failures_total{reason="bad_signature"} 1`,
		`flowgate_build_info{commit="unknown",goversion="`,
		"# TYPE flowgate_task_duration_seconds histogram",
		"go_goroutines ",
		"process_start_time_seconds ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// The adapters are called from many goroutines at once (sessions, tasks, the audit writer).
func TestConcurrentUse(t *testing.T) {
	m := New(Options{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				m.Tasks().Event(10)
				m.Sessions().Message("ping")
				m.HTTP().AuthFailure("missing_token")
				m.AuditHooks().Batch(1, time.Microsecond, nil)
			}
		})
	}
	wg.Wait()
	mustValue(t, m, "flowgate_task_events_total", nil, 4000)
	mustValue(t, m, "flowgate_messages_total", map[string]string{"type": "ping"}, 4000)
	mustValue(t, m, "flowgate_audit_records_written_total", nil, 4000)
}
