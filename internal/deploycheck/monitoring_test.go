package deploycheck

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestPrometheusRules(t *testing.T) {
	doc := yamlDocs(t, "deploy/prometheus/alerts.yml")[0]
	var exprs []string
	names := map[string]bool{}
	for _, g := range getList(doc, "groups") {
		for _, r := range getList(g, "rules") {
			name, expr := getString(r, "alert"), getString(r, "expr")
			if name == "" || expr == "" {
				t.Errorf("rule %v lacks alert or expr", r)
				continue
			}
			if names[name] {
				t.Errorf("alert %s twice", name)
			}
			names[name] = true
			if !slices.Contains([]string{"critical", "warning", "info"}, getString(r, "labels", "severity")) {
				t.Errorf("%s: severity %q", name, getString(r, "labels", "severity"))
			}
			if getString(r, "annotations", "summary") == "" || getString(r, "annotations", "description") == "" {
				t.Errorf("%s: no summary or description", name)
			}
			if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") {
				t.Errorf("%s: unbalanced expression %s", name, expr)
			}
			exprs = append(exprs, expr)
		}
	}
	// The alerts, by the series they watch.
	all := strings.Join(exprs, "\n")
	for _, want := range []string{
		`flowgate_auth_failures_total`, `flowgate_ratelimit_denials_total`, `flowgate_secret_fetches_total{job="flowgate",outcome="error"}`,
		`flowgate_audit_write_failures_total`, `flowgate_tasks_total{job="flowgate",status=~"failed|timeout"}`, `flowgate_ready`, `up{job="flowgate"} == 0`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no alert over %s", want)
		}
	}

	for _, f := range []string{"deploy/prometheus/prometheus.yml", "deploy/prometheus/prometheus-kubernetes.yml"} {
		p := yamlDocs(t, f)[0]
		var job map[string]any
		for _, sc := range getList(p, "scrape_configs") {
			if getString(sc, "job_name") == "flowgate" {
				job = sc.(map[string]any)
			}
		}
		if job == nil {
			t.Errorf("%s: no flowgate job (the alert rules select job=\"flowgate\")", f)
			continue
		}
		if mp := getString(job, "metrics_path"); mp != "/metrics" {
			t.Errorf("%s: metrics_path %q", f, mp)
		}
		if len(getList(p, "rule_files")) == 0 {
			t.Errorf("%s: loads no rule file", f)
		}
	}
	// compose mounts alerts.yml where prometheus.yml looks for it.
	p := yamlDocs(t, "deploy/prometheus/prometheus.yml")[0]
	c := yamlDocs(t, "deploy/compose/compose.yaml")[0]
	mounts := strings.Join(strs(getList(c, "services", "prometheus", "volumes")), "\n")
	for _, rf := range strs(getList(p, "rule_files")) {
		if !strings.Contains(mounts, "../prometheus/alerts.yml:"+rf) {
			t.Errorf("rule file %s is not mounted by compose", rf)
		}
	}
}

func TestAlertmanagerConfig(t *testing.T) {
	doc := yamlDocs(t, "deploy/alertmanager/alertmanager.yml")[0]
	receivers := map[string]bool{}
	for _, r := range getList(doc, "receivers") {
		receivers[getString(r, "name")] = true
		for _, w := range getList(r, "webhook_configs") {
			if getString(w, "url") != "" {
				t.Error("webhook URL written inline; use url_file (a secret)")
			}
		}
	}
	var walk func(route any)
	walk = func(route any) {
		if r := getString(route, "receiver"); r != "" && !receivers[r] {
			t.Errorf("route to unknown receiver %s", r)
		}
		for _, sub := range getList(route, "routes") {
			walk(sub)
		}
	}
	walk(getMap(doc, "route"))
	if getString(doc, "route", "receiver") == "" {
		t.Error("no default receiver")
	}
}

func TestGrafanaDashboard(t *testing.T) {
	var d struct {
		UID    string
		Title  string
		Panels []struct {
			ID         int
			Type       string
			Title      string
			Datasource map[string]string
			Targets    []struct {
				Expr       string
				Datasource map[string]string
			}
		}
		Templating struct{ List []map[string]any }
	}
	if err := json.Unmarshal(readFile(t, "deploy/grafana/flowgate-dashboard.json"), &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard has no uid or title")
	}
	ids := map[int]bool{}
	var queries int
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource["uid"] != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `job="flowgate"`) {
				t.Errorf("panel %q query does not select job=\"flowgate\": %s", p.Title, tg.Expr)
			}
			queries++
		}
	}
	if queries < 20 {
		t.Errorf("only %d queries", queries)
	}
	// compose provisions this file where the dashboard provider reads.
	prov := yamlDocs(t, "deploy/grafana/provisioning/dashboards/flowgate.yml")[0]
	dir := getString(getList(prov, "providers")[0], "options", "path")
	c := yamlDocs(t, "deploy/compose/compose.yaml")[0]
	if !slices.Contains(strs(getList(c, "services", "grafana", "volumes")), "../grafana/flowgate-dashboard.json:"+dir+"/flowgate.json:ro") {
		t.Errorf("compose does not mount the dashboard into %s", dir)
	}
}
