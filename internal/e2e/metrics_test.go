package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flowgate/flowgate/internal/client"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// exposition is a parsed /metrics page.
type exposition struct {
	types   map[string]string // family → counter, gauge, histogram, ...
	samples []sample
}

var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)`)
var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func parseExposition(t *testing.T, body string) exposition {
	t.Helper()
	e := exposition{types: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			if len(f) == 2 {
				e.types[f[0]] = f[1]
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unparseable /metrics line %q", line)
		}
		v, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, l := range labelRE.FindAllStringSubmatch(m[3], -1) {
			s.labels[l[1]] = l[2]
		}
		e.samples = append(e.samples, s)
	}
	return e
}

// has reports whether name is a family or a series name (a histogram's _bucket, _sum, _count).
func (e exposition) has(name string) bool {
	if _, ok := e.types[name]; ok {
		return true
	}
	for _, s := range e.samples {
		if s.name == name {
			return true
		}
	}
	return false
}

// sum adds the values of name's series whose labels include match.
func (e exposition) sum(name string, match map[string]string) float64 {
	var total float64
	for _, s := range e.samples {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range match {
			ok = ok && s.labels[k] == v
		}
		if ok {
			total += s.value
		}
	}
	return total
}

func scrape(t *testing.T, url string) exposition {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return parseExposition(t, b.String())
}

// eventually scrapes until cond holds (the server updates some series after replying).
func eventually(t *testing.T, url, what string, cond func(exposition) bool) exposition {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		e := scrape(t, url)
		if cond(e) {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetricsOnOpsListenerOnly drives a swarm, an auth failure and a rate-limit denial through a
// real gateway, then checks the ops listener's /metrics (DESIGN §11) and that the public listener
// serves neither /metrics nor pprof.
func TestMetricsOnOpsListenerOnly(t *testing.T) {
	g := startGateway(t, gwOptions{})
	metricsURL := g.Ops + "/metrics"

	c := g.dial(t, g.UserToken)
	r := runSwarm(t, c, "count the gateways", map[string]any{"agents": 2})
	if r.complete.Status != "success" {
		t.Fatalf("task_complete = %s", r.complete.Raw)
	}
	taskID := r.created.TaskID
	if err := c.Send(map[string]any{"type": "ping"}); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, 10*time.Second, func(m client.Message) bool { return m.Type == "pong" })
	c.Close()

	// An auth failure: a token that is not a JWT.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := client.Dial(ctx, g.URL, client.Options{Token: "not-a-jwt"})
	cancel()
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("bad token: %v", err)
	}

	// A rate-limit denial: more messages at once than the per-connection burst.
	flood := g.dial(t, g.UserToken)
	for i := 0; i < 100; i++ {
		if err := flood.Send(map[string]any{"type": "ping"}); err != nil {
			break // the server may close a flooding connection
		}
	}
	readUntil(t, flood, 10*time.Second, func(m client.Message) bool { return m.Type == "error" && m.Code == "rate_limited" })
	flood.Close()

	e := eventually(t, metricsURL, "the traffic above", func(e exposition) bool {
		return e.sum("flowgate_tasks_total", map[string]string{"status": "success"}) >= 1 &&
			e.sum("flowgate_connections_closed_total", nil) >= 2 &&
			e.sum("flowgate_ratelimit_denials_total", map[string]string{"scope": "messages_connection"}) >= 1
	})

	// Every series of DESIGN §11 and issue 7, with the traffic it should have counted.
	for _, c := range []struct {
		name  string
		match map[string]string
		min   float64
	}{
		{"flowgate_build_info", nil, 1},
		{"flowgate_connections", nil, 0},
		{"flowgate_connections_opened_total", nil, 2},
		{"flowgate_connections_closed_total", nil, 2},
		{"flowgate_messages_total", map[string]string{"type": "swarm"}, 1},
		{"flowgate_messages_total", map[string]string{"type": "ping"}, 1},
		{"flowgate_tasks_started_total", nil, 1},
		{"flowgate_tasks_total", map[string]string{"status": "success"}, 1},
		{"flowgate_tasks_running", nil, 0},
		{"flowgate_tasks_queued", nil, 0},
		{"flowgate_task_duration_seconds_count", map[string]string{"status": "success"}, 1},
		{"flowgate_task_queue_wait_seconds_count", nil, 1},
		{"flowgate_task_events_total", nil, 1},
		{"flowgate_engine_output_bytes_total", nil, 1},
		{"flowgate_slow_consumer_closes_total", nil, 0},
		{"flowgate_ratelimit_denials_total", map[string]string{"scope": "messages_connection"}, 1},
		{"flowgate_rejections_total", map[string]string{"code": "rate_limited"}, 1},
		{"flowgate_auth_failures_total", map[string]string{"reason": "malformed_token"}, 1},
		{"flowgate_secret_fetches_total", map[string]string{"outcome": "ok"}, 1},
		{"flowgate_secret_fetch_duration_seconds_count", map[string]string{"outcome": "ok"}, 1},
		{"flowgate_secret_cache_misses_total", nil, 1},
		{"flowgate_secret_cache_hits_total", nil, 0},
		{"flowgate_audit_records_written_total", nil, 1},
		{"flowgate_audit_write_failures_total", nil, 0},
		{"flowgate_audit_batch_size_count", nil, 1},
		{"flowgate_ready", nil, 1},
		{"flowgate_draining", nil, 0},
		{"go_goroutines", nil, 1},
		{"process_resident_memory_bytes", nil, 1},
	} {
		if !e.has(c.name) {
			t.Errorf("/metrics has no %s", c.name)
			continue
		}
		if got := e.sum(c.name, c.match); got < c.min {
			t.Errorf("%s%v = %v, want >= %v", c.name, c.match, got, c.min)
		}
	}
	if e.sum("flowgate_tasks_running", nil) != 0 || e.sum("flowgate_draining", nil) != 0 {
		t.Error("running tasks or draining after the swarm ended")
	}

	// Bounded labels: no tenant, user, task, token or session ever becomes a label value.
	forbidden := []string{"demo", taskID, g.UserToken[:20], "not-a-jwt"}
	for _, s := range e.samples {
		if !strings.HasPrefix(s.name, "flowgate_") {
			continue
		}
		for k, v := range s.labels {
			for _, f := range forbidden {
				if f != "" && strings.Contains(v, f) {
					t.Errorf("%s{%s=%q}: a request value became a label", s.name, k, v)
				}
			}
		}
	}

	// The public listener serves neither metrics nor pprof.
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/cmdline"} {
		resp, body := g.get(t, g.HTTP+path, "")
		if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "flowgate_") || strings.Contains(body, "go_goroutines") {
			t.Errorf("public %s: %d %.200s", path, resp.StatusCode, body)
		}
	}
	resp, _ := g.get(t, g.Ops+"/healthz", "")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("ops /healthz: %d", resp.StatusCode)
	}
	// ...while the ops listener does serve pprof (ops.pprof defaults to true).
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
		resp, body := g.get(t, g.Ops+path, "")
		if resp.StatusCode != http.StatusOK || body == "" {
			t.Errorf("ops %s: %d %.200s", path, resp.StatusCode, body)
		}
	}

	checkDeployMetricNames(t, e)
}

var metricNameRE = regexp.MustCompile(`\b((?:flowgate|go|process)_[a-zA-Z0-9_]+)`)

// checkDeployMetricNames: every metric the alert rules, the Grafana dashboard and the operations
// guide name exists on a running server, and the guide documents every flowgate_ family.
func checkDeployMetricNames(t *testing.T, e exposition) {
	t.Helper()
	root := filepath.Join("..", "..")
	sources := map[string][]string{}

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	data, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			sources["deploy/prometheus/alerts.yml "+r.Alert] = append(sources["deploy/prometheus/alerts.yml "+r.Alert], r.Expr)
		}
	}

	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name       string
				Definition string
			}
		}
	}
	data, err = os.ReadFile(filepath.Join(root, "deploy", "grafana", "flowgate-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			sources["deploy/grafana/flowgate-dashboard.json "+p.Title] = append(sources["deploy/grafana/flowgate-dashboard.json "+p.Title], tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		sources["deploy/grafana/flowgate-dashboard.json $"+v.Name] = append(sources["deploy/grafana/flowgate-dashboard.json $"+v.Name], v.Definition)
	}

	guide, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	sources["docs/operations.md"] = []string{string(guide)}

	used := map[string]bool{}
	for where, texts := range sources {
		for _, text := range texts {
			for _, m := range metricNameRE.FindAllStringSubmatch(text, -1) {
				used[m[1]] = true
				if !e.has(m[1]) {
					t.Errorf("%s uses %s, which a running server does not export", where, m[1])
				}
			}
		}
	}
	if len(used) < 30 {
		t.Errorf("only %d metric names found in deploy/ and docs: is the extraction broken?", len(used))
	}
	var undocumented []string
	for fam := range e.types {
		if strings.HasPrefix(fam, "flowgate_") && !strings.Contains(string(guide), "`"+fam+"`") {
			undocumented = append(undocumented, fam)
		}
	}
	sort.Strings(undocumented)
	if len(undocumented) > 0 {
		t.Errorf("docs/operations.md does not document %v", undocumented)
	}
}
