package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/client"
	"github.com/flowgate/flowgate/internal/secrets/awssm"
	"github.com/flowgate/flowgate/internal/secrets/awssm/smtest"
)

// liberal lets one user run many swarms quickly.
var liberal = map[string]string{
	"FLOWGATE_LIMITS_SWARMS_PER_MINUTE":     "6000",
	"FLOWGATE_LIMITS_SWARM_BURST":           "200",
	"FLOWGATE_LIMITS_USER_CONCURRENT_TASKS": "50",
}

// TestTenantKeys: two tenants created with the CLI against the running server, each with its
// own canary key (one set with `flowgate key set`, one with the API). A child of each tenant's
// swarm sees its own key and never the other's; a tenant without a key gets
// tenant_key_unavailable and no process starts; rotation through the API is used by the next
// swarm, through the CLI within the documented delay; and no canary ever comes back out: not
// in a log line, an API answer, a WebSocket frame, CLI output, an audit record or a metric.
func TestTenantKeys(t *testing.T) {
	g := startGateway(t, gwOptions{env: liberal})
	tr := &transcript{}
	var canaries []string
	newCanary := func(name string) string {
		c := canary(t, name)
		canaries = append(canaries, c)
		return c
	}
	for _, id := range []string{"alpha", "beta", "gamma"} {
		g.mustRun(t, tr, "", "tenant", "create", "--id", id)
	}
	alphaKey, betaKey := newCanary("alpha"), newCanary("beta")
	out := g.mustRun(t, tr, alphaKey+"\n", "key", "set", "--tenant", "alpha")
	if !strings.Contains(out, "sha256:") {
		t.Fatalf("key set output: %s", out)
	}
	g.mustAPI(t, tr, 201, "PUT", "/v1/admin/tenants/beta/key", g.AdminToken, `{"apiKey":"`+betaKey+`"}`)
	alpha := g.dialAs(t, tr, g.token(t, "alpha", "alice", "1h", "swarm:execute"))
	beta := g.dialAs(t, tr, g.token(t, "beta", "bob", "1h", "swarm:execute"))
	gammaTok := g.token(t, "gamma", "gus", "1h", "swarm:execute", "task:admin")
	gamma := g.dialAs(t, tr, gammaTok)

	expectKey := func(t *testing.T, c *client.Conn, want, notWant string) {
		t.Helper()
		out := keySwarm(t, tr, c, "")
		if out.errCode != "" || !out.sawHash || !out.hasKey {
			t.Fatalf("swarm: %+v %s", out, out.complete.Raw)
		}
		if out.keyHash == sha(notWant) {
			t.Fatal("the child received the other tenant's key")
		}
		if out.keyHash != sha(want) {
			t.Fatalf("the child received an unexpected key (sha256 %s)", out.keyHash)
		}
	}

	t.Run("isolation", func(t *testing.T) {
		expectKey(t, alpha, alphaKey, betaKey)
		expectKey(t, beta, betaKey, alphaKey)
	})

	t.Run("no key, no process", func(t *testing.T) {
		marker := fmt.Sprintf("nokey%d", time.Now().UnixNano())
		started := strings.Count(g.Logs(), `"msg":"engine started"`)
		out := keySwarm(t, tr, gamma, "sim:hang sim:marker="+marker)
		if out.errCode != "tenant_key_unavailable" || out.taskID != "" {
			t.Fatalf("swarm of a tenant without a key: %+v", out)
		}
		if pids := processesWith(marker); len(pids) > 0 {
			t.Fatalf("processes started for a tenant without a key: %v", pids)
		}
		if n := strings.Count(g.Logs(), `"msg":"engine started"`); n != started {
			t.Fatalf("%d engine started lines after the refusal, %d before", n, started)
		}
		body := g.mustAPI(t, tr, 200, "GET", "/v1/admin/tasks", gammaTok, "")
		if !strings.Contains(body, `"tasks":[]`) {
			t.Fatalf("a task was recorded: %s", body)
		}
		// Key metadata of a tenant without a key is a 404 too.
		g.mustAPI(t, tr, 404, "GET", "/v1/admin/tenants/gamma/key", g.AdminToken, "")
		// The failed fetch is on the tenant's record, as a failure with a reason.
		fetchFailed := 0
		for _, r := range auditRecords(t, g, "gamma") {
			if r.Action == audit.ActionKeyFetchFailed {
				fetchFailed++
				if r.Outcome != audit.OutcomeFailure || r.Reason == "" || r.Actor.Sub == "" {
					t.Errorf("key.fetch_failed record %+v", r)
				}
			}
		}
		if fetchFailed != 1 {
			t.Errorf("%d key.fetch_failed records for gamma; want 1", fetchFailed)
		}
	})

	t.Run("rotate via API", func(t *testing.T) {
		old := betaKey
		betaKey = newCanary("beta2")
		body := g.mustAPI(t, tr, 200, "PUT", "/v1/admin/tenants/beta/key", g.AdminToken, `{"apiKey":"`+betaKey+`"}`)
		var meta struct{ Fingerprint string }
		if err := json.Unmarshal([]byte(body), &meta); err != nil || !strings.HasPrefix(meta.Fingerprint, "sha256:") {
			t.Fatalf("PUT answer: %s", body)
		}
		expectKey(t, beta, betaKey, old)
		expectKey(t, alpha, alphaKey, betaKey)
	})

	t.Run("rotate via CLI", func(t *testing.T) {
		old := alphaKey
		expectKey(t, alpha, old, betaKey) // cached now
		alphaKey = newCanary("alpha2")
		g.mustRun(t, tr, alphaKey+"\n", "key", "set", "--tenant", "alpha")
		set := time.Now()
		for {
			out := keySwarm(t, tr, alpha, "")
			if out.keyHash == sha(alphaKey) {
				break
			}
			if out.keyHash != sha(old) {
				t.Fatalf("unexpected key during rotation: %+v", out)
			}
			if time.Since(set) > 20*time.Second {
				t.Fatal("the key set with the CLI is not used 20s later")
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("a key set with the CLI was used by the running server after %v", time.Since(set).Round(time.Millisecond))
	})

	t.Run("canary grep", func(t *testing.T) {
		// Everything that might echo a key: the engine printing it and its environment, key
		// metadata, rejected uploads, a key deleted and missing.
		for _, c := range []*client.Conn{alpha, beta} {
			keySwarm(t, tr, c, "sim:print-key sim:print-env sim:stderr")
		}
		g.mustAPI(t, tr, 200, "GET", "/v1/admin/tenants/alpha/key", g.AdminToken, "")
		g.mustAPI(t, tr, 200, "GET", "/v1/admin/tenants/beta", g.AdminToken, "")
		g.mustAPI(t, tr, 200, "GET", "/v1/admin/tenants", g.AdminToken, "")
		g.mustAPI(t, tr, 200, "GET", "/v1/admin/tasks?tenant=alpha", g.AdminToken, "")
		bad := newCanary("bad")
		for _, body := range []string{
			`{"apiKey":"` + bad + `","apiKey":"` + bad + `"}`, // duplicate key
			`{"apiKey":"` + bad + `","extra":1}`,              // unknown field
			`{"apiKey":"` + bad + ` x"}`,                      // whitespace
			`{"apiKey":"` + bad + `"`,                         // truncated JSON
			`{"apiKey":"` + strings.Repeat(bad, 400) + `"}`,   // too long
		} {
			if status, _ := g.api(t, tr, "PUT", "/v1/admin/tenants/alpha/key", g.AdminToken, body); status < 400 {
				t.Fatalf("bad PUT accepted: %d", status)
			}
		}
		g.api(t, tr, "PUT", "/v1/admin/tenants/nosuch/key", g.AdminToken, `{"apiKey":"`+bad+`"}`)
		g.run(t, tr, bad+" "+bad+"\n", "key", "set", "--tenant", "alpha")
		g.run(t, tr, bad+"\n", "key", "set", "--tenant", "nosuch")
		g.mustRun(t, tr, "", "key", "delete", "--tenant", "beta")
		if out := keySwarm(t, tr, beta, ""); out.errCode != "tenant_key_unavailable" {
			// The CLI's delete reaches the server within the poll interval; wait for it.
			deadline := time.Now().Add(20 * time.Second)
			for out.errCode != "tenant_key_unavailable" {
				if time.Now().After(deadline) {
					t.Fatalf("swarm after the key was deleted: %+v", out)
				}
				time.Sleep(200 * time.Millisecond)
				out = keySwarm(t, tr, beta, "")
			}
		}
		g.api(t, tr, "GET", "/v1/admin/tenants/beta/key", g.AdminToken, "")
		g.api(t, tr, "DELETE", "/v1/admin/tenants/beta/key", g.AdminToken, "")
		g.api(t, tr, "GET", "/v1/admin/audit/export", g.AdminToken, "")
		g.api(t, tr, "GET", "/v1/admin/audit?limit=1000", g.AdminToken, "")
		_, metrics := g.get(t, g.Ops+"/metrics", "")
		g.run(t, tr, "", "audit", "export")

		everything := map[string]string{
			"gateway log":        g.Logs(),
			"answers and frames": tr.String(),
			"metrics":            metrics,
			"audit log":          auditExport(t, g.dataDir),
		}
		if !strings.Contains(everything["answers and frames"], "[REDACTED]") {
			t.Fatal("no [REDACTED] marker: the engine did not print the key, so the grep proves nothing")
		}
		if !strings.Contains(everything["audit log"], `"key.set"`) || !strings.Contains(everything["audit log"], `"key.delete"`) {
			t.Fatal("the audit export lacks the key records")
		}
		for _, c := range canaries {
			for where, text := range everything {
				if n := strings.Count(text, c); n > 0 {
					t.Errorf("canary %s… found %d times in the %s", c[:20], n, where)
				}
			}
		}
	})
}

// auditExport exports every audit record of the gateway's store.
func auditExport(t *testing.T, dataDir string) string {
	t.Helper()
	r, done := auditReader(t, dataDir)
	defer done()
	var buf bytes.Buffer
	if err := r.Export(t.Context(), audit.Filter{Tenant: audit.ScopeAll}, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestAWSProviderThroughGateway runs the real binary with secrets.provider aws against a local
// Secrets Manager (smtest, which checks SigV4): a key PUT through the API creates the secret
// tagged with its tenant, swarms fetch it, and 20 concurrent swarms of one tenant cost one
// GetSecretValue.
func TestAWSProviderThroughGateway(t *testing.T) {
	sm := smtest.New(t, smtest.Options{})
	env := map[string]string{
		"FLOWGATE_SECRETS_PROVIDER":     "aws",
		"FLOWGATE_SECRETS_AWS_ENDPOINT": sm.URL,
		"FLOWGATE_SECRETS_AWS_REGION":   sm.Region(),
		"AWS_ACCESS_KEY_ID":             smtest.DefaultAccessKeyID,
		"AWS_SECRET_ACCESS_KEY":         smtest.DefaultSecretAccessKey,
		"AWS_REGION":                    sm.Region(),
		"AWS_EC2_METADATA_DISABLED":     "true",
	}
	for k, v := range liberal {
		env[k] = v
	}
	env["FLOWGATE_LIMITS_USER_CONNECTIONS"] = "50" // one connection per concurrent swarm
	g := startGateway(t, gwOptions{env: env})
	tr := &transcript{}
	const tenant = "acme-aws"
	g.mustAPI(t, tr, 201, "POST", "/v1/admin/tenants", g.AdminToken, `{"id":"`+tenant+`","name":"Acme on AWS"}`)
	key := canary(t, "aws")
	body := g.mustAPI(t, tr, 201, "PUT", "/v1/admin/tenants/"+tenant+"/key", g.AdminToken, `{"apiKey":"`+key+`"}`)
	var meta struct{ Provider, SecretID, Fingerprint string }
	if err := json.Unmarshal([]byte(body), &meta); err != nil || meta.Provider != "aws" {
		t.Fatalf("PUT answer: %s", body)
	}
	name := strings.ReplaceAll(awssm.DefaultSecretIDTemplate, "{tenant}", tenant)
	sec, ok := sm.Secret(name)
	stored := sec.Current
	var asJSON struct{ APIKey string }
	if json.Unmarshal([]byte(stored), &asJSON) == nil {
		stored = asJSON.APIKey // the provider may store {"apiKey":"…"}
	}
	if !ok || stored != key || sec.Tags[awssm.TagTenant] != tenant {
		t.Fatalf("secret %s: found %v, tags %v, holds the key: %v", name, ok, sec.Tags, stored == key)
	}
	for _, r := range sm.Requests() {
		if !r.Signed || r.AccessKeyID != smtest.DefaultAccessKeyID {
			t.Fatalf("unsigned request: %+v", r)
		}
		if r.SecretID != "" && !strings.Contains(r.SecretID, "/"+tenant+"/") && !strings.Contains(r.SecretID, "/demo/") {
			t.Fatalf("request for another secret: %+v", r)
		}
	}

	// The server's tenant poll invalidates the key cache once more after the change; wait for
	// it so that it cannot land between the fetches counted below.
	tv := g.mustAPI(t, tr, 200, "GET", "/v1/admin/tenants/"+tenant, g.AdminToken, "")
	var tenantView struct{ UpdatedAt string }
	if err := json.Unmarshal([]byte(tv), &tenantView); err != nil {
		t.Fatal(err)
	}
	g.waitLog(t, "the server picks up the tenant change", `"tenant":"`+tenant+`","status":"active","updated_at":"`+tenantView.UpdatedAt+`"`)

	// The swarms arrive at once, one per connection: the server handles a connection's frames
	// one after the other, so swarms sent on one connection would each wait for the one before
	// and find the key cached.
	const n = 20
	tok := g.token(t, tenant, "alice", "1h", "swarm:execute")
	conns := make([]*client.Conn, n)
	for i := range conns {
		conns[i] = g.dialAs(t, tr, tok)
	}
	misses := metricValue(t, g, "flowgate_secret_cache_misses_total")
	before := sm.Count(smtest.OpGetSecretValue)
	release := sm.Pause(smtest.OpGetSecretValue)
	defer release()
	for i, c := range conns {
		if err := c.Send(map[string]any{"type": "swarm", "objective": "concurrent sim:print-key-hash sim:pace=0 sim:events=2",
			"options": map[string]any{"agents": 1}, "requestId": fmt.Sprintf("aws-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, func() bool { return sm.Count(smtest.OpGetSecretValue) > before })
	// Every swarm is waiting for the key before the fetch in flight completes: the cache counts
	// a miss for each lookup that needs a fetch, shared or not.
	waitMetric(t, g, "flowgate_secret_cache_misses_total", func(v float64) bool { return v >= misses+n }, "the swarms waiting for the key")
	release()

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	hashes := 0
	for i, c := range conns {
		task := ""
		for done := false; !done; {
			m, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read: %v (swarm %d of %d)", err, i+1, n)
			}
			tr.add(string(m.Raw))
			switch m.Type {
			case "error":
				t.Fatalf("swarm refused: %s", m.Raw)
			case "task_created":
				task = m.TaskID
			case "sim_key":
				var k struct{ SHA256 string }
				_ = json.Unmarshal(m.Raw, &k)
				if m.TaskID == task && k.SHA256 == sha(key) {
					hashes++
				}
			case "task_complete":
				if m.TaskID == task {
					if m.Status != "success" {
						t.Fatalf("task failed: %s", m.Raw)
					}
					done = true
				}
			}
		}
	}
	if hashes != n {
		t.Fatalf("%d of %d children received the tenant's key", hashes, n)
	}
	if got := sm.Count(smtest.OpGetSecretValue) - before; got != 1 {
		t.Fatalf("%d concurrent swarms cost %d GetSecretValue calls, want 1", n, got)
	}
	for _, where := range []string{g.Logs(), tr.String()} {
		if strings.Contains(where, key) {
			t.Fatal("the key came back out of the gateway")
		}
	}
}
