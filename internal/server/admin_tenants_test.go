package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/apitest"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/secrets/local"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
	"github.com/flowgate/flowgate/internal/tenant"
	"github.com/flowgate/flowgate/internal/validation"
)

// adminFixture is the admin API over a real SQLite store, a real audit recorder and the local
// secrets provider, served by Public on an httptest server.
type adminFixture struct {
	t        *testing.T
	db       *store.DB
	srv      *httptest.Server
	signer   *auth.Signer
	recorder *audit.Recorder
	keys     *secrets.Cache
	audit    *switchAuditor
	provider *switchKeys

	mu          sync.Mutex
	tenantCalls []store.Tenant
	keyCalls    []string
}

// switchAuditor fails every record while failing is set (audit storage down).
type switchAuditor struct {
	next    Auditor
	failing atomic.Bool
}

func (s *switchAuditor) Record(ctx context.Context, r audit.Record) error {
	if s.failing.Load() {
		return errors.New("audit storage unavailable")
	}
	return s.next.Record(ctx, r)
}

// switchKeys fails every key operation with ErrUnavailable while failing is set (the
// secrets provider is down).
type switchKeys struct {
	next    KeyAdmin
	failing atomic.Bool
}

func (s *switchKeys) Set(ctx context.Context, tenant, keyRef, value string) (secrets.Metadata, error) {
	if s.failing.Load() {
		return secrets.Metadata{}, fmt.Errorf("put: %w", secrets.ErrUnavailable)
	}
	return s.next.Set(ctx, tenant, keyRef, value)
}

func (s *switchKeys) Delete(ctx context.Context, tenant, keyRef string) error {
	if s.failing.Load() {
		return fmt.Errorf("delete: %w", secrets.ErrUnavailable)
	}
	return s.next.Delete(ctx, tenant, keyRef)
}

func (s *switchKeys) Describe(ctx context.Context, tenant, keyRef string) (secrets.Metadata, error) {
	if s.failing.Load() {
		return secrets.Metadata{}, fmt.Errorf("describe: %w", secrets.ErrUnavailable)
	}
	return s.next.Describe(ctx, tenant, keyRef)
}

const fixtureMaxBody = 8 << 10

func newAdminFixture(t *testing.T) *adminFixture {
	t.Helper()
	db := storetest.OpenWithTenants(t, store.DriverSQLite, "acme", "globex")
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	signer, verifier := testSigner(t)
	rec := testRecorder(t, db, log)
	mk := make([]byte, 32)
	fp := make([]byte, 32)
	_, _ = rand.Read(mk)
	_, _ = rand.Read(fp)
	provider, err := local.New(local.Options{MasterKey: mk, FingerprintKey: fp, Store: db, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := secrets.NewCache(secrets.CacheOptions{Provider: provider, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	f := &adminFixture{t: t, db: db, signer: signer, recorder: rec, keys: keys, audit: &switchAuditor{next: rec},
		provider: &switchKeys{next: keys}}
	dir := tenant.NewDirectory(db, 100, time.Second)
	d := &Deps{
		Logger: log, Verifier: verifier, Revocations: auth.NewRevocations(nil), Tenants: dir, Audit: f.audit,
		MaxBodySize: fixtureMaxBody, Store: db, Keys: f.provider, AuditLog: rec, Validator: validation.New(),
		TenantDefaults: validation.Limits{
			MaxObjectiveChars: 1000, MaxObjectiveBytes: 4000, MaxAgents: 20, MaxTimeoutSeconds: 3600,
			DefaultAgents: 3, DefaultTimeoutSeconds: 600, DefaultStrategy: "auto", DefaultMode: "centralized",
			Strategies: []string{"auto", "parallel", "sequential"}, Modes: []string{"centralized", "distributed"},
		},
	}
	notify := fixtureNotifier{
		tenant: func(t store.Tenant) {
			dir.Invalidate(t.ID)
			f.mu.Lock()
			f.tenantCalls = append(f.tenantCalls, t)
			f.mu.Unlock()
		},
		key: func(tenant string) {
			f.mu.Lock()
			f.keyCalls = append(f.keyCalls, tenant)
			f.mu.Unlock()
		},
	}
	svc, err := admin.New(admin.Options{
		Audit: f.audit, Keys: f.provider, Tenants: db, Revoker: db, AuditLog: rec, Logger: log, Notify: notify,
		Touch: func(ctx context.Context, id string) error { _, err := db.TouchTenant(ctx, id); return err },
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Admin = svc
	f.srv = httptest.NewServer(Public(d))
	t.Cleanup(f.srv.Close)
	return f
}

// token mints a token for tenant with perms.
func (f *adminFixture) token(tenant string, perms ...string) string {
	f.t.Helper()
	iss, err := f.signer.Issue(auth.IssueRequest{Tenant: tenant, Subject: "user-" + tenant, Permissions: perms, TTL: time.Hour})
	if err != nil {
		f.t.Fatal(err)
	}
	return iss.Token
}

type apiResponse struct {
	status int
	header http.Header
	body   string
}

func (r apiResponse) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("answer is not JSON (%v): %s", err, r.body)
	}
}

// problem decodes a problem+json answer.
func (r apiResponse) problem(t *testing.T) problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json: %s", ct, r.body)
	}
	var p problem
	r.json(t, &p)
	return p
}

// do sends a request; body is sent as is with a JSON content type unless it is "".
func (f *adminFixture) do(method, path, token, body string) apiResponse {
	f.t.Helper()
	return doRequest(f.t, f.srv, method, path, token, body)
}

// doRequest sends a request to srv: a JSON body when body is set, the bearer token when token
// is, and hdr as name, value pairs.
func doRequest(t *testing.T, srv *httptest.Server, method, path, token, body string, hdr ...string) apiResponse {
	t.Helper()
	r := apitest.Do(t, srv.Client(), method, srv.URL+path, token, body, hdr...)
	return apiResponse{status: r.Status, header: r.Header, body: r.Body}
}

// expect checks the status (and, for errors, the problem code).
func (f *adminFixture) expect(r apiResponse, status int, code string) {
	f.t.Helper()
	if r.status != status {
		f.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if code != "" {
		if p := r.problem(f.t); p.Code != code {
			f.t.Fatalf("code %q, want %q: %s", p.Code, code, r.body)
		}
	}
}

// records returns the audit records of tenant's chain with action, oldest first.
func (f *adminFixture) records(tenant, action string) []audit.Record {
	f.t.Helper()
	recs, _, err := f.recorder.Query(f.t.Context(), audit.Filter{Tenant: tenant, Action: action, Limit: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
		recs[i], recs[j] = recs[j], recs[i]
	}
	return recs
}

func (f *adminFixture) tenantChanges() []store.Tenant {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]store.Tenant(nil), f.tenantCalls...)
}

func (f *adminFixture) keyChanges() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.keyCalls...)
}

func TestTenantListAndPaging(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	platform := f.token("acme", auth.PermPlatformAdmin)
	f.expect(f.do("GET", "/v1/admin/tenants", f.token("acme", auth.PermTenantAdmin), ""), 403, "forbidden")
	f.expect(f.do("GET", "/v1/admin/tenants", "", ""), 401, "unauthorized")

	type page struct {
		Tenants []admin.TenantView `json:"tenants"`
		Next    string             `json:"next"`
	}
	var all []string
	next := ""
	for i := 0; ; i++ {
		path := "/v1/admin/tenants?limit=1"
		if next != "" {
			path += "&after=" + next
		}
		r := f.do("GET", path, platform, "")
		f.expect(r, 200, "")
		var p page
		r.json(t, &p)
		for _, tv := range p.Tenants {
			all = append(all, tv.ID)
			if tv.Status != "active" || tv.CreatedAt == "" || !strings.HasSuffix(tv.UpdatedAt, "Z") {
				t.Fatalf("tenant view %+v", tv)
			}
		}
		if p.Next == "" {
			break
		}
		next = p.Next
		if i > 5 {
			t.Fatal("paging does not end")
		}
	}
	if strings.Join(all, ",") != "acme,globex" {
		t.Fatalf("paged list = %v", all)
	}

	for _, q := range []struct{ query, field string }{
		{"limit=0", "limit"}, {"limit=201", "limit"}, {"limit=x", "limit"}, {"after=Bad!", "after"},
		{"limit=1&limit=2", "limit"}, {"sort=id", "sort"},
	} {
		r := f.do("GET", "/v1/admin/tenants?"+q.query, platform, "")
		f.expect(r, 400, "validation_failed")
		if p := r.problem(t); p.Fields[q.field] == "" {
			t.Errorf("%s: fields %v do not name %s", q.query, p.Fields, q.field)
		}
	}
	f.expect(f.do("DELETE", "/v1/admin/tenants", platform, ""), 405, "method_not_allowed")
}

func TestTenantCreate(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	platform := f.token("acme", auth.PermPlatformAdmin)

	r := f.do("POST", "/v1/admin/tenants", platform, `{"id":"initech","name":"Initech","limits":{"maxAgents":4,"allowedStrategies":["auto"]}}`)
	f.expect(r, 201, "")
	var tv admin.TenantView
	r.json(t, &tv)
	if tv.ID != "initech" || tv.Name != "Initech" || tv.Status != "active" || tv.Limits.MaxAgents == nil || *tv.Limits.MaxAgents != 4 ||
		r.header.Get("Location") != "/v1/admin/tenants/initech" {
		t.Fatalf("created %s (Location %q)", r.body, r.header.Get("Location"))
	}
	if got, err := f.db.GetTenant(t.Context(), "initech"); err != nil || got.Name != "Initech" {
		t.Fatalf("stored %+v, %v", got, err)
	}
	if recs := f.records("initech", audit.ActionTenantCreate); len(recs) != 1 || recs[0].Outcome != audit.OutcomeSuccess ||
		recs[0].Actor.Sub != "user-acme" || recs[0].Target.ID != "initech" {
		t.Fatalf("tenant.create records = %+v", recs)
	}
	if ch := f.tenantChanges(); len(ch) != 1 || ch[0].ID != "initech" {
		t.Fatalf("TenantChanged calls = %+v", ch)
	}
	// The name defaults to the id.
	r = f.do("POST", "/v1/admin/tenants", platform, `{"id":"hooli"}`)
	f.expect(r, 201, "")
	r.json(t, &tv)
	if tv.Name != "hooli" {
		t.Fatalf("default name: %s", r.body)
	}

	// A duplicate is a conflict and leaves no second "created" record.
	f.expect(f.do("POST", "/v1/admin/tenants", platform, `{"id":"initech"}`), 409, "conflict")
	if recs := f.records("initech", audit.ActionTenantCreate); len(recs) != 1 {
		t.Fatalf("tenant.create records after a duplicate = %d", len(recs))
	}

	tenantAdmin := f.token("acme", auth.PermTenantAdmin)
	f.expect(f.do("POST", "/v1/admin/tenants", tenantAdmin, `{"id":"sneaky"}`), 403, "forbidden")

	for _, tc := range []struct {
		name, body string
		status     int
		code       string
		field      string
	}{
		{"not json", `{"id":`, 400, "invalid_message", ""},
		{"unknown field", `{"id":"x1","owner":"me"}`, 400, "invalid_message", ""},
		{"duplicate key", `{"id":"x1","id":"x2"}`, 400, "invalid_message", ""},
		{"wrong type", `{"id":5}`, 400, "invalid_message", ""},
		{"trailing data", `{"id":"x1"} {}`, 400, "invalid_message", ""},
		{"array", `[]`, 400, "invalid_message", ""},
		{"oversized", `{"id":"x1","name":"` + strings.Repeat("a", fixtureMaxBody) + `"}`, 413, "invalid_message", ""},
		{"missing id", `{}`, 400, "validation_failed", "id"},
		{"bad id", `{"id":"Not_An_Id"}`, 400, "validation_failed", "id"},
		{"blank name", `{"id":"x1","name":"   "}`, 400, "validation_failed", "name"},
		{"too many agents", `{"id":"x1","limits":{"maxAgents":50}}`, 400, "validation_failed", "limits.maxAgents"},
		{"zero concurrency", `{"id":"x1","limits":{"concurrentTasks":0}}`, 400, "validation_failed", "limits.concurrentTasks"},
		{"unknown limit", `{"id":"x1","limits":{"gpus":1}}`, 400, "invalid_message", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do("POST", "/v1/admin/tenants", platform, tc.body)
			f.expect(r, tc.status, tc.code)
			if tc.field != "" {
				if p := r.problem(t); p.Fields[tc.field] == "" {
					t.Fatalf("fields %v do not name %s", p.Fields, tc.field)
				}
			}
		})
	}
	// Strategy outside the engine's enum: the field is named (with its index).
	r = f.do("POST", "/v1/admin/tenants", platform, `{"id":"x1","limits":{"allowedStrategies":["auto","warp"]}}`)
	f.expect(r, 400, "validation_failed")
	named := false
	for k := range r.problem(t).Fields {
		named = named || strings.HasPrefix(k, "limits.allowedStrategies")
	}
	if !named {
		t.Fatalf("strategy error does not name limits.allowedStrategies: %s", r.body)
	}
	// A body with another content type.
	req, _ := http.NewRequest("POST", f.srv.URL+"/v1/admin/tenants", strings.NewReader(`{"id":"x1"}`))
	req.Header.Set("Authorization", "Bearer "+platform)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 415 {
		t.Fatalf("text/plain body: status %d", resp.StatusCode)
	}
	if _, err := f.db.GetTenant(t.Context(), "x1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused create left a tenant behind: %v", err)
	}
}

func TestTenantGetAndPatch(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	platform := f.token("globex", auth.PermPlatformAdmin)
	acmeAdmin := f.token("acme", auth.PermTenantAdmin)
	acmeUser := f.token("acme", auth.PermSwarmExecute, auth.PermTaskAdmin, auth.PermAuditRead)

	f.expect(f.do("GET", "/v1/admin/tenants/acme", acmeAdmin, ""), 200, "")
	f.expect(f.do("GET", "/v1/admin/tenants/globex", acmeAdmin, ""), 404, "not_found")
	f.expect(f.do("GET", "/v1/admin/tenants/nosuch", acmeAdmin, ""), 404, "not_found")
	f.expect(f.do("GET", "/v1/admin/tenants/acme", acmeUser, ""), 403, "forbidden")
	f.expect(f.do("GET", "/v1/admin/tenants/acme", platform, ""), 200, "")
	f.expect(f.do("GET", "/v1/admin/tenants/nosuch", platform, ""), 404, "not_found")
	f.expect(f.do("GET", "/v1/admin/tenants/..%2Fetc", platform, ""), 404, "")
	f.expect(f.do("PUT", "/v1/admin/tenants/acme", platform, `{}`), 405, "method_not_allowed")

	// A tenant admin renames its own tenant, and nothing more.
	r := f.do("PATCH", "/v1/admin/tenants/acme", acmeAdmin, `{"name":"Acme Corp"}`)
	f.expect(r, 200, "")
	var tv admin.TenantView
	r.json(t, &tv)
	if tv.Name != "Acme Corp" || tv.Status != "active" {
		t.Fatalf("patched %s", r.body)
	}
	recs := f.records("acme", audit.ActionTenantUpdate)
	if len(recs) != 1 || recs[0].Details["name"] != "Acme Corp" {
		t.Fatalf("tenant.update records = %+v", recs)
	}
	f.expect(f.do("PATCH", "/v1/admin/tenants/acme", acmeAdmin, `{"status":"suspended"}`), 403, "forbidden")
	f.expect(f.do("PATCH", "/v1/admin/tenants/acme", acmeAdmin, `{"limits":{"concurrentTasks":100}}`), 403, "forbidden")
	f.expect(f.do("PATCH", "/v1/admin/tenants/globex", acmeAdmin, `{"name":"mine"}`), 404, "not_found")
	f.expect(f.do("PATCH", "/v1/admin/tenants/acme", acmeUser, `{"name":"x"}`), 403, "forbidden")
	if got, _ := f.db.GetTenant(t.Context(), "acme"); got.Status != "active" || got.Limits.ConcurrentTasks != nil {
		t.Fatalf("refused patches changed the tenant: %+v", got)
	}

	for _, tc := range []struct{ body, field string }{
		{`{}`, "body"},
		{`{"status":"deleted"}`, "status"},
		{`{"name":""}`, "name"},
		{`{"limits":{"maxAgents":21}}`, "limits.maxAgents"},
		{`{"limits":{"swarmsPerMinute":-1}}`, "limits.swarmsPerMinute"},
	} {
		r := f.do("PATCH", "/v1/admin/tenants/acme", platform, tc.body)
		f.expect(r, 400, "validation_failed")
		if p := r.problem(t); p.Fields[tc.field] == "" {
			t.Errorf("%s: fields %v do not name %s", tc.body, p.Fields, tc.field)
		}
	}

	// The platform suspends: recorded as details.status, hook told.
	r = f.do("PATCH", "/v1/admin/tenants/acme", platform, `{"status":"suspended","limits":{"concurrentTasks":3}}`)
	f.expect(r, 200, "")
	r.json(t, &tv)
	if tv.Status != "suspended" || tv.Limits.ConcurrentTasks == nil || *tv.Limits.ConcurrentTasks != 3 {
		t.Fatalf("suspended %s", r.body)
	}
	recs = f.records("acme", audit.ActionTenantUpdate)
	last := recs[len(recs)-1]
	if last.Details["status"] != "suspended" || last.Outcome != audit.OutcomeSuccess || last.Actor.Sub != "user-globex" {
		t.Fatalf("suspension record = %+v", last)
	}
	ch := f.tenantChanges()
	if len(ch) == 0 || ch[len(ch)-1].ID != "acme" || ch[len(ch)-1].Status != "suspended" {
		t.Fatalf("TenantChanged calls = %+v", ch)
	}
	// A suspended tenant's own admin is refused at authentication.
	f.expect(f.do("GET", "/v1/admin/tenants/acme", acmeAdmin, ""), 403, "tenant_suspended")
	// limits is replaced as a whole: {} goes back to the defaults.
	r = f.do("PATCH", "/v1/admin/tenants/acme", platform, `{"status":"active","limits":{}}`)
	f.expect(r, 200, "")
	tv = admin.TenantView{}
	r.json(t, &tv)
	if tv.Status != "active" || tv.Limits.ConcurrentTasks != nil {
		t.Fatalf("resumed %s", r.body)
	}
}

func TestAdminChangesFailClosed(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	platform := f.token("acme", auth.PermPlatformAdmin)
	f.audit.failing.Store(true)
	f.expect(f.do("POST", "/v1/admin/tenants", platform, `{"id":"initech"}`), 503, "internal")
	f.expect(f.do("PATCH", "/v1/admin/tenants/globex", platform, `{"status":"suspended"}`), 503, "internal")
	f.expect(f.do("PUT", "/v1/admin/tenants/globex/key", platform, `{"apiKey":"sk-ant-failclosed-0001"}`), 503, "internal")
	f.audit.failing.Store(false)

	if _, err := f.db.GetTenant(t.Context(), "initech"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("tenant created without its record: %v", err)
	}
	if g, _ := f.db.GetTenant(t.Context(), "globex"); g.Status != "active" {
		t.Fatal("tenant suspended without its record")
	}
	f.expect(f.do("GET", "/v1/admin/tenants/globex/key", platform, ""), 404, "not_found")
	if len(f.tenantChanges()) != 0 || len(f.keyChanges()) != 0 {
		t.Fatal("hooks ran for refused changes")
	}
}

// fixtureNotifier is the admin service's Notifier made of the fixture's recording functions.
type fixtureNotifier struct {
	tenant  func(store.Tenant)
	revoked func(tenant, jti string, keepUntil time.Time)
	key     func(tenant string)
}

func (n fixtureNotifier) TenantChanged(_ context.Context, t store.Tenant) {
	if n.tenant != nil {
		n.tenant(t)
	}
}

func (n fixtureNotifier) TokenRevoked(_ context.Context, tenant, jti string, keepUntil time.Time, _ bool) {
	if n.revoked != nil {
		n.revoked(tenant, jti, keepUntil)
	}
}

func (n fixtureNotifier) KeyChanged(_ context.Context, tenant string) {
	if n.key != nil {
		n.key(tenant)
	}
}
