package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/client"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

// Audit log end to end (issue 5): the real binary, its store (SQLite file or a fresh
// PostgreSQL schema), its admin API and its CLI.

// auditGW is a gateway and the way to its store, for the CLI and for a reviewer (or an
// attacker) with direct database access.
type auditGW struct {
	*gateway
	driver   string
	storeEnv map[string]string // what the CLI needs to find the same store
	storeCfg store.Config
}

func startAuditGateway(t *testing.T, driver string, env map[string]string) *auditGW {
	t.Helper()
	a := &auditGW{driver: driver, storeEnv: map[string]string{}}
	dir := t.TempDir()
	switch driver {
	case store.DriverSQLite:
		a.storeCfg = store.Config{Driver: driver, Path: filepath.Join(dir, "flowgate.db"), SkipMigrations: true}
	case store.DriverPostgres:
		dsn := storetest.PostgresDSN(t) // dropped at cleanup, after the gateway stopped
		a.storeEnv = map[string]string{"FLOWGATE_STORE_DRIVER": "postgres", "FLOWGATE_STORE_DSN": dsn}
		a.storeCfg = store.Config{Driver: driver, DSN: dsn, SkipMigrations: true}
	}
	all := map[string]string{}
	for k, v := range env {
		all[k] = v
	}
	for k, v := range a.storeEnv {
		all[k] = v
	}
	a.gateway = startGateway(t, gwOptions{env: all, dataDir: dir})
	return a
}

// flowgate runs a CLI command on the gateway's data dir and store and returns stdout, stderr
// and the exit code.
func (a *auditGW) flowgate(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return audCLI(t, a.dataDir, a.storeEnv, stdin, args...)
}

func audCLI(t *testing.T, dataDir string, storeEnv map[string]string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--dev", "--data-dir", dataDir)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dataDir, "FLOWGATE_LOG_LEVEL=error", "USER=reviewer"}
	for k, v := range storeEnv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("flowgate %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

func (a *auditGW) mustFlowgate(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errOut, code := a.flowgate(t, stdin, args...)
	if code != 0 {
		t.Fatalf("flowgate %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// issue mints a token with the CLI (recorded as token.issue on the tenant's chain).
func (a *auditGW) issue(t *testing.T, tenant, sub string, perms ...string) string {
	t.Helper()
	args := []string{"token", "issue", "--tenant", tenant, "--sub", sub, "--ttl", "1h"}
	for _, p := range perms {
		args = append(args, "--perm", p)
	}
	return strings.TrimSpace(a.mustFlowgate(t, "", args...))
}

// db opens the gateway's store directly (closed at cleanup).
func (a *auditGW) db(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), a.storeCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// allRecords reads every record of every chain, oldest first per chain.
func (a *auditGW) allRecords(t *testing.T) []audit.Record {
	t.Helper()
	db := a.db(t)
	r, err := audit.NewReader(audit.ReaderOptions{Storage: db})
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	if err := r.Export(context.Background(), audit.Filter{Tenant: audit.ScopeAll}, &buf); err != nil {
		t.Fatal(err)
	}
	return audNDJSON(t, buf.String())
}

// rawBodies is the whole audit table as stored text, for "never appears" checks.
func (a *auditGW) rawBodies(t *testing.T) string {
	t.Helper()
	rows, err := a.db(t).SQL().QueryContext(context.Background(),
		"SELECT chain || ' ' || actor_sub || ' ' || action || ' ' || body FROM audit_records")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(s)
		b.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func audNDJSON(t *testing.T, s string) []audit.Record {
	t.Helper()
	var out []audit.Record
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		r, err := audit.UnmarshalRecord(sc.Bytes())
		if err != nil {
			t.Fatalf("NDJSON line %q: %v", sc.Text(), err)
		}
		if h, err := audit.ComputeHash(r); err != nil || h != r.Hash {
			t.Fatalf("NDJSON line does not hash to its hash: %s", sc.Text())
		}
		out = append(out, r)
	}
	return out
}

// waitRecord polls the store until a record matches (records of finished tasks and closed
// sessions are written just after the client hears of it).
func (a *auditGW) waitRecord(t *testing.T, what string, match func(audit.Record) bool) audit.Record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs := a.allRecords(t)
		for _, r := range recs {
			if match(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			var actions []string
			for _, r := range recs {
				actions = append(actions, fmt.Sprintf("%s/%s/%s/%s", r.Tenant, r.Action, r.Outcome, r.RequestID))
			}
			t.Fatalf("no audit record: %s\nrecords: %s", what, strings.Join(actions, " "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func audCount(recs []audit.Record, match func(audit.Record) bool) int {
	n := 0
	for _, r := range recs {
		if match(r) {
			n++
		}
	}
	return n
}

func audNonce(t *testing.T) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// request sends one client message and reads until the frame answering its requestId.
func audRequest(t *testing.T, c *client.Conn, msg map[string]any) client.Message {
	t.Helper()
	if err := c.Send(msg); err != nil {
		t.Fatal(err)
	}
	id := msg["requestId"].(string)
	return readUntil(t, c, 30*time.Second, func(m client.Message) bool { return m.RequestID == id })
}

// api calls the admin API and returns the status and body.
func audAPI(t *testing.T, g *gateway, method, path, token, body string) (int, string) {
	t.Helper()
	status, out, _ := g.do(t, method, path, token, body, "User-Agent", "audit-e2e")
	return status, out
}

func audMustAPI(t *testing.T, g *gateway, want int, method, path, token, body string) string {
	t.Helper()
	status, out := audAPI(t, g, method, path, token, body)
	if status != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, out)
	}
	return out
}

func audHeader(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// checkObjective checks that a task.create record describes objective by length and SHA-256
// only.
func audCheckObjective(t *testing.T, r audit.Record, objective string) {
	t.Helper()
	if r.Details["len"] != float64(len(objective)) || r.Details["sha256"] != sha(objective) {
		t.Fatalf("task.create details %v do not describe the objective (len %d, sha256 %s)", r.Details, len(objective), sha(objective))
	}
	for k, v := range r.Details {
		if s, ok := v.(string); ok && strings.Contains(objective, s) && len(s) > 8 {
			t.Fatalf("details.%s holds objective text %q", k, s)
		}
	}
}

// TestAuditScriptedDay runs a day at a gateway on SQLite and on PostgreSQL (a fresh schema):
// connects, refused handshakes (bad token, wrong origin), swarms that succeed, fail, are
// cancelled and time out, a validation rejection, a quota and a rate-limit hit, an
// authorization denial, a tenant with its key set and deleted (API and CLI), a token issued
// and revoked — then checks that each expected record exists with the right fields, that no
// secret or objective text reached the audit table, and that the log verifies (CLI and API,
// while the server runs and after it stopped).
func TestAuditScriptedDay(t *testing.T) {
	for _, driver := range storetest.Drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			audScriptedDay(t, driver)
		})
	}
}

func audScriptedDay(t *testing.T, driver string) {
	const origin = "https://app.example.com"
	g := startAuditGateway(t, driver, map[string]string{
		"FLOWGATE_SERVER_ALLOWED_ORIGINS":       origin,
		"FLOWGATE_LIMITS_USER_CONCURRENT_TASKS": "2",
		"FLOWGATE_ENGINE_KILL_GRACE":            "1s",
	})
	n := audNonce(t)
	ua := "scripted-day/" + driver
	alice := g.issue(t, "demo", "alice", auth.PermSwarmExecute)
	auditor := g.issue(t, "demo", "auditor", auth.PermAuditRead)
	admin := g.AdminToken
	secrets := map[string]string{"alice's token": alice, "auditor's token": auditor, "admin token": admin, "user token": g.UserToken}

	// Refused handshakes (before any session).
	bad := "not-a-token-" + n
	secrets["bad token"] = bad
	if he := g.gateway.refusal(t, client.Options{Token: bad, Header: audHeader("User-Agent", ua)}); he.Status != 401 {
		t.Fatalf("bad token: %+v", he)
	}
	if he := g.gateway.refusal(t, client.Options{Token: alice, Header: audHeader("User-Agent", ua, "Origin", "https://evil.example")}); he.Status != 403 {
		t.Fatalf("wrong origin: %+v", he)
	}

	// Alice's session and swarms.
	c := g.dialWith(t, client.Options{Token: alice, Header: audHeader("User-Agent", ua, "Origin", origin)})
	session := c.Welcome.SessionID
	objectives := map[string]string{
		"day-ok":      "day success " + n + " sim:pace=0 sim:events=2",
		"day-fail":    "day failure " + n + " sim:fail sim:pace=0 sim:events=1",
		"day-cancel":  "day cancel " + n + " sim:hang",
		"day-timeout": "day timeout " + n + " sim:hang",
	}
	tasks := map[string]string{}
	run := func(reqID string, options map[string]any) client.Message {
		t.Helper()
		msg := map[string]any{"type": "swarm", "objective": objectives[reqID], "requestId": reqID}
		if options != nil {
			msg["options"] = options
		}
		m := audRequest(t, c, msg)
		if m.Type != "task_created" {
			t.Fatalf("%s: %s", reqID, m.Raw)
		}
		tasks[reqID] = m.TaskID
		return m
	}
	done := func(reqID string) client.Message {
		t.Helper()
		id := tasks[reqID]
		return readUntil(t, c, 60*time.Second, func(m client.Message) bool { return m.TaskID == id && m.Type == "task_complete" })
	}
	run("day-ok", nil)
	if m := done("day-ok"); m.Status != "success" {
		t.Fatalf("day-ok: %s", m.Raw)
	}
	run("day-fail", nil)
	if m := done("day-fail"); m.Status != "failed" {
		t.Fatalf("day-fail: %s", m.Raw)
	}
	run("day-cancel", nil)
	if m := audRequest(t, c, map[string]any{"type": "cancel", "taskId": tasks["day-cancel"], "requestId": "day-cancel-req"}); m.Type != "task_cancelled" {
		t.Fatalf("cancel: %s", m.Raw)
	}
	if m := done("day-cancel"); m.Status != "cancelled" {
		t.Fatalf("day-cancel: %s", m.Raw)
	}
	run("day-timeout", map[string]any{"timeout": 2})
	if m := done("day-timeout"); m.Status != "timeout" {
		t.Fatalf("day-timeout: %s", m.Raw)
	}
	// A validation rejection.
	if m := audRequest(t, c, map[string]any{"type": "swarm", "objective": "x", "options": map[string]any{"agents": 0}, "requestId": "day-invalid"}); m.Code != "validation_failed" {
		t.Fatalf("invalid: %s", m.Raw)
	}
	// A quota hit: two running tasks is alice's limit.
	objectives["day-q1"], objectives["day-q2"], objectives["day-q3"] = "hold one "+n+" sim:hang", "hold two "+n+" sim:hang", "one too many "+n+" sim:hang"
	run("day-q1", nil)
	run("day-q2", nil)
	if m := audRequest(t, c, map[string]any{"type": "swarm", "objective": objectives["day-q3"], "requestId": "day-q3"}); m.Code != "quota_exceeded" {
		t.Fatalf("quota: %s", m.Raw)
	}
	for _, id := range []string{"day-q1", "day-q2"} {
		audRequest(t, c, map[string]any{"type": "cancel", "taskId": tasks[id], "requestId": id + "-cancel"})
		done(id)
	}
	// An authorization denial: alice is no auditor.
	audMustAPI(t, g.gateway, 403, "GET", "/v1/admin/audit", alice, "")

	// A tenant, its key (API, then rotated by the CLI) and a rate-limited user.
	audMustAPI(t, g.gateway, 201, "POST", "/v1/admin/tenants", admin, `{"id":"acme","limits":{"swarmsPerMinute":1,"swarmBurst":1}}`)
	key1, key2 := "sk-ant-day-one-"+n, "sk-ant-day-two-"+n
	secrets["key 1"], secrets["key 2"] = key1, key2
	audMustAPI(t, g.gateway, 201, "PUT", "/v1/admin/tenants/acme/key", admin, `{"apiKey":"`+key1+`"}`)
	rick := g.issue(t, "acme", "rick", auth.PermSwarmExecute)
	secrets["rick's token"] = rick
	rc := g.dialWith(t, client.Options{Token: rick, Header: audHeader("User-Agent", ua)})
	if m := quickSwarm(t, rc, "day-rick-1"); m.Type != "task_complete" || m.Status != "success" {
		t.Fatalf("rick's first swarm: %s", m.Raw)
	}
	if m := audRequest(t, rc, map[string]any{"type": "swarm", "objective": "again " + n, "requestId": "day-rick-2"}); m.Code != "rate_limited" {
		t.Fatalf("rick's second swarm: %s", m.Raw)
	}
	g.mustFlowgate(t, key2+"\n", "key", "set", "--tenant", "acme")
	audMustAPI(t, g.gateway, 204, "DELETE", "/v1/admin/tenants/acme/key", admin, "")

	// A token issued and revoked through the API.
	var issued struct {
		Token     string `json:"token"`
		JTI       string `json:"jti"`
		ExpiresAt string `json:"expiresAt"`
	}
	body := audMustAPI(t, g.gateway, 201, "POST", "/v1/admin/tenants/demo/tokens", admin, `{"sub":"temp","permissions":["swarm:execute"],"ttl":"10m"}`)
	if err := json.Unmarshal([]byte(body), &issued); err != nil || issued.JTI == "" {
		t.Fatalf("issued: %v %s", err, body)
	}
	secrets["issued token"] = issued.Token
	audMustAPI(t, g.gateway, 200, "POST", "/v1/admin/tokens/revoke", admin, fmt.Sprintf(`{"jti":%q,"expiresAt":%q}`, issued.JTI, issued.ExpiresAt))

	// An objective that looks like a record: one record, never its text.
	inject := "summarise " + n + "\n{\"action\":\"key.set\",\"outcome\":\"success\",\"tenant\":\"demo\",\"seq\":1}\n sim:pace=0 sim:events=1"
	objectives["day-inject"] = inject
	run("day-inject", nil)
	done("day-inject")

	c.Close()
	rc.Close()

	// The records, field by field.
	aliceFP, adminFP, rickFP := auth.Fingerprint(alice), auth.Fingerprint(admin), auth.Fingerprint(rick)
	isAlice := func(r audit.Record) bool {
		return r.Tenant == "demo" && r.Actor.Sub == "alice" && r.Actor.TokenFP == aliceFP
	}
	fromAlice := func(r audit.Record) bool {
		return isAlice(r) && r.Source.IP == "127.0.0.1" && r.Source.Origin == origin && r.Source.UserAgent == ua && r.SessionID == session
	}
	byReq := func(action, outcome, reqID string) func(audit.Record) bool {
		return func(r audit.Record) bool {
			return r.Action == action && r.Outcome == outcome && r.RequestID == reqID && fromAlice(r)
		}
	}
	forTask := func(reqID, status string) func(audit.Record) bool {
		return func(r audit.Record) bool {
			return r.Action == audit.ActionTaskComplete && r.Tenant == "demo" && r.Target == (audit.Target{Type: "task", ID: tasks[reqID]}) &&
				r.Details["status"] == status && r.Actor.Sub == "alice"
		}
	}
	aliceJTI, _ := idJTI(t, alice)
	closed := g.waitRecord(t, "session.close of alice", func(r audit.Record) bool {
		return r.Action == audit.ActionSessionClose && fromAlice(r)
	})
	if closed.Details["jti"] != aliceJTI || aliceJTI == "" {
		t.Errorf("session.close without the token's jti %q: %+v", aliceJTI, closed.Details)
	}
	for reqID, status := range map[string]string{"day-ok": "success", "day-fail": "failed", "day-cancel": "cancelled", "day-timeout": "timeout", "day-inject": "success"} {
		r := g.waitRecord(t, "task.complete of "+reqID, forTask(reqID, status))
		if want := map[bool]string{true: audit.OutcomeSuccess, false: audit.OutcomeFailure}[status == "success"]; r.Outcome != want {
			t.Errorf("task.complete of %s: outcome %s", reqID, r.Outcome)
		}
	}
	recs := g.allRecords(t)
	one := func(what string, match func(audit.Record) bool) audit.Record {
		t.Helper()
		var found []audit.Record
		for _, r := range recs {
			if match(r) {
				found = append(found, r)
			}
		}
		if len(found) != 1 {
			var all []string
			for _, r := range recs {
				all = append(all, fmt.Sprintf("%s:%s/%s/%s/%s", r.Tenant, r.Action, r.Outcome, r.Actor.Sub, r.RequestID))
			}
			t.Fatalf("%d records for %s, want 1\nall: %s", len(found), what, strings.Join(all, " "))
		}
		return found[0]
	}

	r := one("auth.failure for the bad token", func(r audit.Record) bool {
		return r.Action == audit.ActionAuthFailure && r.Outcome == audit.OutcomeDenied && r.Tenant == "" &&
			r.Source.UserAgent == ua && r.Source.IP == "127.0.0.1" && r.Source.Origin == "" && r.Reason != "" && r.Actor == (audit.Actor{})
	})
	if r.RequestID == "" {
		t.Errorf("auth.failure without a request id: %+v", r)
	}
	one("auth.failure for the wrong origin", func(r audit.Record) bool {
		return r.Action == audit.ActionAuthFailure && r.Outcome == audit.OutcomeDenied && strings.Contains(r.Reason, "origin") &&
			r.Source.Origin == "https://evil.example" && r.Source.UserAgent == ua
	})
	// session.open is written before the upgrade, when the session has no id yet (see the
	// handshake's request id); every later record of the session carries the id.
	r = one("session.open of alice", func(r audit.Record) bool {
		return r.Action == audit.ActionSessionOpen && r.Outcome == audit.OutcomeSuccess && isAlice(r) &&
			r.Source == (audit.Source{IP: "127.0.0.1", Origin: origin, UserAgent: ua})
	})
	if r.RequestID == "" {
		t.Errorf("session.open without the handshake's request id: %+v", r)
	}
	if r.Details["jti"] == "" || r.Details["jti"] == nil {
		t.Errorf("session.open without the token's jti: %+v", r.Details)
	}
	for _, reqID := range []string{"day-ok", "day-fail", "day-cancel", "day-timeout", "day-q1", "day-q2", "day-inject"} {
		r := one("task.create "+reqID, byReq(audit.ActionTaskCreate, audit.OutcomeSuccess, reqID))
		if r.Target != (audit.Target{Type: "task", ID: tasks[reqID]}) {
			t.Errorf("task.create %s: target %+v", reqID, r.Target)
		}
		audCheckObjective(t, r, objectives[reqID])
		if fp, _ := r.Details["keyFingerprint"].(string); !strings.HasPrefix(fp, "sha256:") || r.Details["keyVersion"] == "" || r.Details["keyVersion"] == nil {
			t.Errorf("task.create %s without the key's fingerprint and version: %+v", reqID, r.Details)
		}
	}
	r = one("task.cancel", byReq(audit.ActionTaskCancel, audit.OutcomeSuccess, "day-cancel-req"))
	if r.Target.ID != tasks["day-cancel"] {
		t.Errorf("task.cancel target %+v", r.Target)
	}
	r = one("validation.rejected", byReq(audit.ActionValidationRejected, audit.OutcomeDenied, "day-invalid"))
	if fields, _ := r.Details["fields"].([]any); r.Reason == "" || len(fields) != 1 || fields[0] != "options.agents" {
		t.Errorf("validation.rejected %+v", r)
	}
	r = one("quota.denied", byReq(audit.ActionQuotaDenied, audit.OutcomeDenied, "day-q3"))
	if r.Details["scope"] != "user" || r.Reason == "" {
		t.Errorf("quota.denied %+v", r)
	}
	if n := audCount(recs, func(r audit.Record) bool { return r.Action == audit.ActionTaskCreate && r.RequestID == "day-q3" }); n != 0 {
		t.Errorf("a refused swarm has a task.create record")
	}
	r = one("ratelimit.denied of rick", func(r audit.Record) bool {
		return r.Action == audit.ActionRateLimitDenied && r.Tenant == "acme" && r.Actor == (audit.Actor{Sub: "rick", TokenFP: rickFP}) &&
			r.RequestID == "day-rick-2" && r.Source.UserAgent == ua
	})
	if r.Outcome != audit.OutcomeDenied || r.Reason == "" || r.Details["scope"] != "user" {
		t.Errorf("ratelimit.denied %+v", r)
	}
	r = one("authz.denied of alice on the audit route", func(r audit.Record) bool {
		return r.Action == audit.ActionAuthzDenied && isAlice(r) && r.Details["path"] == "/v1/admin/audit"
	})
	if r.Outcome != audit.OutcomeDenied || r.Reason == "" || r.Source.UserAgent != "audit-e2e" || r.RequestID == "" {
		t.Errorf("authz.denied %+v", r)
	}
	isAdmin := func(r audit.Record) bool {
		return r.Actor == (audit.Actor{Sub: "demo-admin", TokenFP: adminFP}) && r.Source.IP == "127.0.0.1" && r.RequestID != ""
	}
	one("tenant.create", func(r audit.Record) bool {
		return r.Action == audit.ActionTenantCreate && r.Tenant == "acme" && r.Target == (audit.Target{Type: "tenant", ID: "acme"}) && isAdmin(r)
	})
	r = one("key.set through the API", func(r audit.Record) bool {
		return r.Action == audit.ActionKeySet && r.Tenant == "acme" && r.Target == (audit.Target{Type: "key", ID: "acme"}) && isAdmin(r)
	})
	// key.set is written after the write and names the key now in force (DESIGN §16); the
	// key.set.requested before it is what kept the change fail-closed.
	if fp, _ := r.Details["fingerprint"].(string); r.Outcome != audit.OutcomeSuccess || r.Details["previousFingerprint"] != nil ||
		!strings.HasPrefix(fp, "sha256:") || r.Details["version"] == nil || r.Details["version"] == "" {
		t.Errorf("first key.set %+v; want success naming the new key's fingerprint and version", r)
	}
	setSeq := r.Seq
	req := one("key.set.requested through the API", func(r audit.Record) bool {
		return r.Action == audit.ActionKeySetRequested && r.Tenant == "acme" && isAdmin(r)
	})
	if req.Seq >= setSeq {
		t.Errorf("key.set.requested (seq %d) is not before key.set (seq %d)", req.Seq, setSeq)
	}
	r = one("key.set through the CLI", func(r audit.Record) bool {
		return r.Action == audit.ActionKeySet && r.Tenant == "acme" && r.Actor.Sub == "cli:reviewer"
	})
	setFP, _ := r.Details["fingerprint"].(string)
	if !strings.HasPrefix(setFP, "sha256:") || r.Details["previousFingerprint"] == nil {
		t.Errorf("rotation key.set %+v", r)
	}
	r = one("key.delete", func(r audit.Record) bool {
		return r.Action == audit.ActionKeyDelete && r.Tenant == "acme" && r.Target == (audit.Target{Type: "key", ID: "acme"}) && isAdmin(r)
	})
	if r.Outcome != audit.OutcomeSuccess {
		t.Errorf("key.delete %+v", r)
	}
	one("token.issue through the API", func(r audit.Record) bool {
		return r.Action == audit.ActionTokenIssue && r.Tenant == "demo" && r.Target == (audit.Target{Type: "token", ID: issued.JTI}) &&
			r.Details["sub"] == "temp" && isAdmin(r)
	})
	one("token.revoke", func(r audit.Record) bool {
		return r.Action == audit.ActionTokenRevoke && r.Target == (audit.Target{Type: "token", ID: issued.JTI}) && isAdmin(r)
	})
	one("token.issue of rick through the CLI", func(r audit.Record) bool {
		return r.Action == audit.ActionTokenIssue && r.Tenant == "acme" && r.Details["sub"] == "rick" && r.Actor.Sub == "cli:reviewer"
	})
	one("server.start", func(r audit.Record) bool { return r.Action == audit.ActionServerStart && r.Tenant == "" })

	// The injected objective made exactly one record (its task.create) and no key.set.
	injected := tasks["day-inject"]
	if n := audCount(recs, func(r audit.Record) bool { return r.RequestID == "day-inject" }); n != 1 {
		t.Errorf("%d records carry the injected swarm's request id, want 1", n)
	}
	if n := audCount(recs, func(r audit.Record) bool {
		return r.Action == audit.ActionKeySet && r.Tenant == "demo" && r.Actor.Sub == "alice"
	}); n != 0 {
		t.Errorf("the objective forged %d key.set records", n)
	}
	if n := audCount(recs, func(r audit.Record) bool { return r.Target.ID == injected }); n != 2 {
		t.Errorf("%d records name the injected task, want task.create and task.complete", n)
	}

	// Nothing secret and no objective text in the table, in any column.
	raw := g.rawBodies(t)
	for what, s := range secrets {
		if strings.Contains(raw, s) {
			t.Errorf("the audit table contains %s", what)
		}
	}
	// Every objective (and everything else the day sent) carries the nonce: none of it is
	// in the table.
	if strings.Contains(raw, n) || strings.Contains(raw, "summarise") {
		t.Errorf("objective text in the audit table")
	}

	// A reviewer reads the same through the API and the CLI while the server runs.
	body = audMustAPI(t, g.gateway, 200, "GET", "/v1/admin/audit?action=task.create&actor=alice", auditor, "")
	var page struct {
		Records    []json.RawMessage `json:"records"`
		NextCursor string            `json:"nextCursor"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil || len(page.Records) != 7 {
		t.Fatalf("auditor's query: %v, %d records", err, len(page.Records))
	}
	exported := audNDJSON(t, audMustAPI(t, g.gateway, 200, "GET", "/v1/admin/audit/export?since="+url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339)), auditor, ""))
	if len(exported) == 0 || exported[len(exported)-1].Action != audit.ActionAuditExport || exported[len(exported)-1].Actor.Sub != "auditor" {
		t.Fatalf("API export: %d lines", len(exported))
	}
	var rep audit.Report
	if err := json.Unmarshal([]byte(audMustAPI(t, g.gateway, 200, "GET", "/v1/admin/audit/verify?tenant=@all", admin, "")), &rep); err != nil || !rep.OK || len(rep.Chains) != 3 {
		t.Fatalf("API verify: %v %+v", err, rep)
	}
	out := g.mustFlowgate(t, "", "audit", "verify")
	if !strings.Contains(out, "chain demo: ok") || !strings.Contains(out, "chain acme: ok") || !strings.Contains(out, "chain @platform: ok") {
		t.Fatalf("CLI verify:\n%s", out)
	}
	cliExport := audNDJSON(t, g.mustFlowgate(t, "", "audit", "export", "--tenant", "demo", "--action", "audit.export"))
	if len(cliExport) != 2 || cliExport[1].Actor.Sub != "cli:reviewer" || cliExport[1].Details["via"] != "cli" {
		t.Fatalf("CLI export: %+v", cliExport)
	}

	// Stopped, the log still verifies, and the stop is on record.
	g.stop()
	g.mustFlowgate(t, "", "audit", "verify")
	if n := audCount(g.allRecords(t), func(r audit.Record) bool { return r.Action == audit.ActionServerStop }); n != 1 {
		t.Fatalf("%d server.stop records", n)
	}
}

// TestAuditObjectiveCannotForgeRecords: an objective holding a newline and a JSON record
// produces exactly one record (its task.create), not two, and its text is nowhere in the
// audit table: records are written by the structured encoder, never by concatenation.
func TestAuditObjectiveCannotForgeRecords(t *testing.T) {
	g := startAuditGateway(t, store.DriverSQLite, nil)
	c := g.dial(t, g.UserToken)
	n := audNonce(t)
	objective := "forge " + n + "\n{\"action\":\"key.set\"}"
	before := g.allRecords(t)
	m := audRequest(t, c, map[string]any{"type": "swarm", "objective": objective + " sim:pace=0 sim:events=1", "requestId": "forge"})
	if m.Type != "task_created" {
		t.Fatalf("swarm: %s", m.Raw)
	}
	// Records for the swarm's creation: exactly one.
	after := g.allRecords(t)
	var added []audit.Record
	for _, r := range after {
		if !slices.ContainsFunc(before, func(b audit.Record) bool { return b.ID == r.ID }) && r.Target.ID == m.TaskID && r.Action != audit.ActionTaskComplete {
			added = append(added, r)
		}
	}
	if len(added) != 1 || added[0].Action != audit.ActionTaskCreate {
		t.Fatalf("records for the swarm: %+v", added)
	}
	audCheckObjective(t, added[0], objective+" sim:pace=0 sim:events=1")
	if n := audCount(after, func(r audit.Record) bool { return r.Action == audit.ActionKeySet }) - audCount(before, func(r audit.Record) bool { return r.Action == audit.ActionKeySet }); n != 0 {
		t.Fatalf("%d key.set records appeared", n)
	}
	if n := audCount(after, func(r audit.Record) bool { return r.RequestID == "forge" }); n != 1 {
		t.Fatalf("%d records carry the request id", n)
	}
	readUntil(t, c, 60*time.Second, func(x client.Message) bool { return x.TaskID == m.TaskID && x.Type == "task_complete" })
	g.waitRecord(t, "task.complete", func(r audit.Record) bool { return r.Action == audit.ActionTaskComplete && r.Target.ID == m.TaskID })
	if raw := g.rawBodies(t); strings.Contains(raw, n) || strings.Contains(raw, `{\"action\":\"key.set\"}`) {
		t.Fatal("the objective's text is in the audit table")
	}
	if _, errOut, code := g.flowgate(t, "", "audit", "verify"); code != 0 {
		t.Fatalf("verify: %d %s", code, errOut)
	}
}

// TestAuditTenantIsolation: a tenant's audit:read token never sees another tenant's records,
// by any route or filter: ?tenant=other, @platform, @all, actor= of the other tenant's user, a
// cursor taken from another scope, the export, the verification. Another tenant's scope is
// answered exactly like a tenant that does not exist.
func TestAuditTenantIsolation(t *testing.T) {
	g := startAuditGateway(t, store.DriverSQLite, nil)
	// acme and its activity, on acme's chain.
	g.mustFlowgate(t, "", "tenant", "create", "--id", "acme")
	g.mustFlowgate(t, "sk-ant-isolation-"+audNonce(t)+"\n", "key", "set", "--tenant", "acme")
	acmeUser := g.issue(t, "acme", "acme-user", auth.PermSwarmExecute)
	ac := g.dial(t, acmeUser)
	quickSwarm(t, ac, "acme-1")
	acmeReader := g.issue(t, "acme", "acme-auditor", auth.PermAuditRead)
	// demo's reviewer.
	reader := g.issue(t, "demo", "demo-auditor", auth.PermAuditRead)
	admin := g.AdminToken

	recs := g.allRecords(t)
	var foreign []string // ids and hashes of every record the demo reader must never see
	for _, r := range recs {
		if r.Tenant != "demo" {
			foreign = append(foreign, r.ID, r.Hash)
		}
	}
	if audCount(recs, func(r audit.Record) bool { return r.Tenant == "acme" }) < 5 {
		t.Fatal("acme has too little activity to test with")
	}
	var answers []string
	call := func(want int, path, token string) string {
		t.Helper()
		status, body := audAPI(t, g.gateway, "GET", path, token, "")
		if status != want {
			t.Fatalf("GET %s: %d, want %d: %s", path, status, want, body)
		}
		if token == reader {
			answers = append(answers, body)
		}
		return body
	}
	type page struct {
		Records    []map[string]any `json:"records"`
		NextCursor string           `json:"nextCursor"`
	}
	query := func(path, token string) page {
		t.Helper()
		var p page
		if err := json.Unmarshal([]byte(call(200, path, token)), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// The own chain, whole and filtered: demo records only.
	for _, q := range []string{"", "?tenant=demo", "?actor=acme-user", "?actor=acme-auditor", "?action=task.create", "?outcome=success", "?limit=1000",
		"?since=2000-01-01T00:00:00Z"} {
		for _, r := range query("/v1/admin/audit"+q, reader).Records {
			if r["tenant"] != "demo" {
				t.Fatalf("%s: a %v record", q, r["tenant"])
			}
		}
	}
	if p := query("/v1/admin/audit?actor=acme-user", reader); len(p.Records) != 0 {
		t.Fatalf("actor of another tenant: %d records", len(p.Records))
	}
	// Other scopes: 404, identical to a tenant that does not exist.
	notFound := func(path string) string {
		t.Helper()
		var pr struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
			Detail string `json:"detail"`
		}
		if err := json.Unmarshal([]byte(call(404, path, reader)), &pr); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(pr)
	}
	for _, route := range []string{"/v1/admin/audit", "/v1/admin/audit/export", "/v1/admin/audit/verify"} {
		want := notFound(route + "?tenant=no-such-tenant")
		for _, q := range []string{"?tenant=acme", "?tenant=@platform", "?tenant=@all", "?tenant=%2A"} {
			if got := notFound(route + q); got != want {
				t.Fatalf("%s%s answers %s; a missing tenant %s", route, q, got, want)
			}
		}
	}
	// A cursor of the platform admin's view of acme (or of everything) does not open it.
	for _, scope := range []string{"tenant=acme", "tenant=@all"} {
		p := query("/v1/admin/audit?limit=1&"+scope, admin)
		if p.NextCursor == "" {
			t.Fatalf("%s: no cursor", scope)
		}
		call(400, "/v1/admin/audit?limit=1&cursor="+url.QueryEscape(p.NextCursor), reader)
		call(404, "/v1/admin/audit?limit=1&"+scope+"&cursor="+url.QueryEscape(p.NextCursor), reader)
	}
	// acme's own cursor, used by the demo reader, neither.
	p := query("/v1/admin/audit?limit=1", acmeReader)
	call(400, "/v1/admin/audit?limit=1&cursor="+url.QueryEscape(p.NextCursor), reader)

	// Export and verify: the own chain only.
	for _, q := range []string{"", "?actor=acme-user", "?action=task.create"} {
		for _, r := range audNDJSON(t, call(200, "/v1/admin/audit/export"+q, reader)) {
			if r.Tenant != "demo" {
				t.Fatalf("export%s: a %q record", q, r.Tenant)
			}
		}
	}
	var rep audit.Report
	if err := json.Unmarshal([]byte(call(200, "/v1/admin/audit/verify", reader)), &rep); err != nil || !rep.OK || len(rep.Chains) != 1 || rep.Chains[0].Tenant != "demo" {
		t.Fatalf("verify: %v %+v", err, rep)
	}

	for _, a := range answers {
		for _, s := range foreign {
			if strings.Contains(a, s) {
				t.Fatalf("an answer to demo's reader holds a record of another chain: %s", s)
			}
		}
		// (Its own attempts on acme are on its own chain, naming acme: that is its record.)
	}
	// acme's reader sees acme's chain; the platform admin sees both.
	if p := query("/v1/admin/audit?limit=1000", acmeReader); len(p.Records) == 0 || p.Records[0]["tenant"] != "acme" {
		t.Fatalf("acme reader: %+v", p.Records)
	}
}

// TestAuditFailClosed: with the audit table made unwritable while the server runs (a
// trigger added through the database, as a full disk or a revoked grant would), a swarm
// request is refused with `internal` and no engine is started, a handshake is refused with
// 503, and the log and the metrics say why. Once writable again, everything works and the
// log verifies.
func TestAuditFailClosed(t *testing.T) {
	for _, driver := range storetest.Drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			audFailClosed(t, driver)
		})
	}
}

func audFailClosed(t *testing.T, driver string) {
	g := startAuditGateway(t, driver, nil)
	c := g.dial(t, g.UserToken)
	if m := quickSwarm(t, c, "fc-before"); m.Type != "task_complete" {
		t.Fatalf("swarm before: %s", m.Raw)
	}
	db := g.db(t)
	ctx := context.Background()
	var block, unblock []string
	switch driver {
	case store.DriverSQLite:
		block = []string{`CREATE TRIGGER audit_read_only BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'read only'); END`}
		unblock = []string{`DROP TRIGGER audit_read_only`}
	case store.DriverPostgres:
		// A trigger rather than REVOKE: the tests connect as a superuser.
		block = []string{
			`CREATE FUNCTION audit_read_only() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RAISE EXCEPTION ''read only''; END'`,
			`CREATE TRIGGER audit_read_only BEFORE INSERT ON audit_records FOR EACH ROW EXECUTE FUNCTION audit_read_only()`,
		}
		unblock = []string{`DROP TRIGGER audit_read_only ON audit_records`, `DROP FUNCTION audit_read_only()`}
	}
	for _, q := range block {
		if _, err := db.SQL().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	recordsBefore := len(g.allRecords(t))
	enginesBefore := enginesStarted(g.gateway)
	marker := "failclosed" + audNonce(t)
	m := audRequest(t, c, map[string]any{"type": "swarm", "objective": "must not run sim:hang sim:marker=" + marker, "requestId": "fc-blocked"})
	if m.Type != "error" || m.Code != "internal" {
		t.Fatalf("swarm with an unwritable audit log: %s", m.Raw)
	}
	he := g.gateway.refusal(t, client.Options{Token: g.UserToken})
	if he.Status != http.StatusServiceUnavailable {
		t.Fatalf("handshake with an unwritable audit log: %+v", he)
	}
	// The log says why.
	for _, want := range []string{`"msg":"audit write failed; swarm refused"`, `"msg":"audit write failed; connection refused"`, `"msg":"audit append failed"`, "read only"} {
		g.waitLog(t, "the log says why", want)
	}
	// And so do the metrics.
	metrics := audScrape(t, g.Ops+"/metrics")
	for _, action := range []string{audit.ActionTaskCreate, audit.ActionSessionOpen} {
		if v := audMetric(metrics, `flowgate_audit_write_failures_total{action="`+action+`"}`); v < 1 {
			t.Errorf("flowgate_audit_write_failures_total for %s = %v", action, v)
		}
	}
	if n := len(g.allRecords(t)); n != recordsBefore {
		t.Fatalf("%d records written through the block", n-recordsBefore)
	}
	// Writable again: served again, and nothing of the outage broke the chains.
	for _, q := range unblock {
		if _, err := db.SQL().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	c2 := g.dial(t, g.UserToken)
	if m := quickSwarm(t, c2, "fc-after"); m.Type != "task_complete" || m.Status != "success" {
		t.Fatalf("swarm after: %s", m.Raw)
	}
	// Nothing started for the refused swarm: the server has since run this one from request to
	// end. The user's tasks are the one before the outage and this one (a task is listed from
	// its creation, before the reply: none was created for the refused swarm, so none can
	// start later); the log shows this one's engine alone started, and no process carries the
	// refused objective (it would hang: sim:hang).
	if ids := taskIDs(t, c2); len(ids) != 2 {
		t.Fatalf("the user's tasks after one swarm before the outage and one after: %v", ids)
	}
	if n := enginesStartedSince(t, g.gateway, enginesBefore); n != 1 {
		t.Fatalf("%d engines started for the refused swarm", n-1)
	}
	if pids := processesWith(marker); len(pids) != 0 {
		t.Fatalf("processes with the refused objective: %v", pids)
	}
	if _, errOut, code := g.flowgate(t, "", "audit", "verify"); code != 0 {
		t.Fatalf("verify after the outage: %d %s", code, errOut)
	}
}

func audScrape(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return string(b)
}

// metricValue reads one sample ("name{labels}") of a Prometheus text exposition; -1 if absent.
func audMetric(exposition, sample string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// TestAuditVerifyCLITamper: after a real gateway's day, the database file is changed behind
// its back — a record's field edited, a record deleted, two swapped, the whole chain rewritten
// with recomputed hashes — and `flowgate audit verify` exits 1 naming the right record each
// time (the consistent rewrite through the signed checkpoint it contradicts).
func TestAuditVerifyCLITamper(t *testing.T) {
	g := startAuditGateway(t, store.DriverSQLite, nil)
	c := g.dial(t, g.UserToken)
	for i := range 3 {
		quickSwarm(t, c, fmt.Sprintf("tamper-%d", i))
	}
	c.Close()
	g.waitRecord(t, "session.close", func(r audit.Record) bool { return r.Action == audit.ActionSessionClose })
	g.stop() // its final checkpoint signs every chain head
	if _, errOut, code := g.flowgate(t, "", "audit", "verify"); code != 0 {
		t.Fatalf("pristine: %d %s", code, errOut)
	}
	var demo []audit.Record
	for _, r := range g.allRecords(t) {
		if r.Tenant == "demo" {
			demo = append(demo, r)
		}
	}
	if len(demo) < 12 {
		t.Fatalf("only %d demo records", len(demo))
	}
	// The first task.create: a record in the middle of the chain.
	k := demo[slices.IndexFunc(demo, func(r audit.Record) bool { return r.Action == audit.ActionTaskCreate })].Seq

	type tamperCase struct {
		name   string
		tamper func(t *testing.T, db *store.DB)
		seq    func(t *testing.T, db *store.DB) int64
		kind   audit.ProblemKind
	}
	at := func(seq int64) func(*testing.T, *store.DB) int64 {
		return func(*testing.T, *store.DB) int64 { return seq }
	}
	cases := []tamperCase{
		{"edit a field", func(t *testing.T, db *store.DB) {
			// demo-user becomes mallory, in the hashed body and the column alike.
			audExec(t, db, `UPDATE audit_records SET body = replace(body, '"sub":"demo-user"', '"sub":"mallory"'), actor_sub = 'mallory'
				WHERE chain = 'demo' AND seq = ?`, k)
		}, at(k), audit.ProblemEdited},
		{"delete one", func(t *testing.T, db *store.DB) {
			audExec(t, db, `DELETE FROM audit_records WHERE chain = 'demo' AND seq = ?`, k)
		}, at(k), audit.ProblemDeleted},
		{"swap two", func(t *testing.T, db *store.DB) {
			audExec(t, db, `UPDATE audit_records SET seq = 1000000 WHERE chain = 'demo' AND seq = ?`, k)
			audExec(t, db, `UPDATE audit_records SET seq = ? WHERE chain = 'demo' AND seq = ?`, k, k+1)
			audExec(t, db, `UPDATE audit_records SET seq = ? WHERE chain = 'demo' AND seq = 1000000`, k+1)
		}, at(k), audit.ProblemReordered},
		{"rewrite the chain", func(t *testing.T, db *store.DB) {
			audRewriteChain(t, db, "demo", k)
		}, func(t *testing.T, db *store.DB) int64 {
			// The first signed checkpoint at or after the edit is what contradicts it.
			var seq int64
			if err := db.SQL().QueryRowContext(context.Background(),
				`SELECT MIN(seq) FROM audit_checkpoints WHERE chain = 'demo' AND kind = 'checkpoint' AND seq >= ?`, k).Scan(&seq); err != nil {
				t.Fatal(err)
			}
			return seq
		}, audit.ProblemCheckpointMismatch},
		{"delete the whole chain", func(t *testing.T, db *store.DB) {
			// Records, checkpoints and head: the chains alone no longer show it ever existed;
			// the tenant does.
			audExec(t, db, `DELETE FROM audit_records WHERE chain = 'demo'`)
			audExec(t, db, `DELETE FROM audit_checkpoints WHERE chain = 'demo'`)
			audExec(t, db, `DELETE FROM audit_heads WHERE chain = 'demo'`)
		}, at(0), audit.ProblemChainMissing},
		{"delete the tenant and its whole chain", func(t *testing.T, db *store.DB) {
			// Nothing in the tables names demo any more; the signed manifest still lists it.
			audExec(t, db, `DELETE FROM audit_records WHERE chain = 'demo'`)
			audExec(t, db, `DELETE FROM audit_checkpoints WHERE chain = 'demo'`)
			audExec(t, db, `DELETE FROM audit_heads WHERE chain = 'demo'`)
			audExec(t, db, `DELETE FROM tasks WHERE tenant = 'demo'`)
			if _, err := db.SQL().ExecContext(context.Background(), `DELETE FROM local_secrets WHERE tenant = 'demo'`); err != nil {
				t.Fatal(err)
			}
			audExec(t, db, `DELETE FROM tenants WHERE id = 'demo'`)
		}, at(0), audit.ProblemChainMissing},
		{"cut the tail with its checkpoints", func(t *testing.T, db *store.DB) {
			// Records after k, every checkpoint past k and the head moved back: the chain that
			// is left is consistent and its remaining checkpoints match.
			var hash string
			if err := db.SQL().QueryRowContext(context.Background(),
				`SELECT hash FROM audit_records WHERE chain = 'demo' AND seq = ?`, k).Scan(&hash); err != nil {
				t.Fatal(err)
			}
			audExec(t, db, `DELETE FROM audit_records WHERE chain = 'demo' AND seq > ?`, k)
			audExec(t, db, `DELETE FROM audit_checkpoints WHERE chain = 'demo' AND seq > ?`, k)
			audExec(t, db, `UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = 'demo'`, k, hash)
		}, at(k + 1), audit.ProblemDeleted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := audCopyDataDir(t, g.dataDir)
			db, err := store.Open(context.Background(), store.Config{Driver: store.DriverSQLite, Path: filepath.Join(dir, "flowgate.db"), SkipMigrations: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			tc.tamper(t, db)
			want := fmt.Sprintf("tenant=demo seq=%d kind=%s", tc.seq(t, db), tc.kind)
			out, errOut, code := audCLI(t, dir, nil, "", "audit", "verify")
			if code != 1 || !strings.Contains(errOut, want) || strings.Count(errOut, "\n") != 1 {
				t.Fatalf("exit %d; want 1 and %q on one stderr line\nstdout:\n%s\nstderr:\n%s", code, want, out, errOut)
			}
			// Scoped to the platform chain, which nobody touched, it passes.
			if _, errOut, code := audCLI(t, dir, nil, "", "audit", "verify", "--tenant", "@platform"); code != 0 {
				t.Fatalf("platform chain: %d %s", code, errOut)
			}
			t.Log(strings.TrimSpace(errOut))
		})
	}
}

func audExec(t *testing.T, db *store.DB, q string, args ...any) {
	t.Helper()
	res, err := db.SQL().ExecContext(context.Background(), db.Rebind(q), args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatalf("%s changed nothing", q)
	}
}

// rewriteChain is a database-only attacker who knows the format: record seq's reason is
// changed and every hash from there on recomputed, columns and head included, so that the
// chain is consistent again. Only the signed checkpoints (key outside the database) differ.
func audRewriteChain(t *testing.T, db *store.DB, chain string, seq int64) {
	t.Helper()
	ctx := context.Background()
	rows, err := db.AuditRecords(ctx, chain, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	prev := audit.GenesisHash
	for _, row := range rows {
		if row.Seq < seq {
			prev = row.Hash
			continue
		}
		rec, err := audit.UnmarshalRecord(row.Body)
		if err != nil {
			t.Fatal(err)
		}
		if row.Seq == seq {
			rec.Reason = "nothing happened"
		}
		rec.PrevHash = prev
		h, err := audit.ComputeHash(rec)
		if err != nil {
			t.Fatal(err)
		}
		rec.Hash = h
		full, err := audit.MarshalCanonical(rec)
		if err != nil {
			t.Fatal(err)
		}
		// The stored body is the canonical form without "hash".
		body := strings.Replace(string(full), `,"hash":"`+h+`"`, "", 1)
		audExec(t, db, `UPDATE audit_records SET body = ?, prev_hash = ?, hash = ? WHERE chain = ? AND seq = ?`, body, prev, h, chain, row.Seq)
		prev = h
	}
	audExec(t, db, `UPDATE audit_heads SET hash = ? WHERE chain = ?`, prev, chain)
}

// copyDataDir copies the top-level files of a stopped gateway's data dir (database, keys).
func audCopyDataDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
