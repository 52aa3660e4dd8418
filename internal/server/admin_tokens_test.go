package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/logbuf"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
	"github.com/flowgate/flowgate/internal/tenant"
	"github.com/flowgate/flowgate/internal/validation"
)

// tokFixture is the token API over a real SQLite store and audit recorder, served by Public.
type tokFixture struct {
	t        *testing.T
	db       *store.DB
	srv      *httptest.Server
	signer   *auth.Signer
	verifier *auth.Verifier
	rev      *auth.Revocations
	recorder *audit.Recorder
	failing  atomic.Bool // audit storage down
	logs     *logbuf.Buffer

	mu      sync.Mutex
	revoked []string // "tenant/jti" passed to TokenRevoked
}

type tokAuditor struct{ f *tokFixture }

func (a tokAuditor) Record(ctx context.Context, r audit.Record) error {
	if a.f.failing.Load() {
		return errors.New("audit storage unavailable")
	}
	return a.f.recorder.Record(ctx, r)
}

func newTokFixture(t *testing.T, origins ...string) *tokFixture {
	t.Helper()
	db := storetest.Open(t, store.DriverSQLite)
	for _, id := range []string{"acme", "beta"} {
		storetest.CreateTenant(t, db, id)
	}
	frozen := storetest.CreateTenant(t, db, "frozen")
	if _, err := db.UpdateTenant(t.Context(), frozen.ID, func(ten *store.Tenant) error {
		ten.Status = store.TenantSuspended
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	signer, verifier := testSigner(t)
	rec := testRecorder(t, db, log)
	f := &tokFixture{t: t, db: db, signer: signer, verifier: verifier, rev: auth.NewRevocations(nil), recorder: rec, logs: logs}
	d := &Deps{
		Logger: log, Verifier: verifier, Signer: signer, Tickets: auth.NewTickets(0, 0, nil), Revocations: f.rev,
		Tenants: tenant.NewDirectory(db, 100, time.Second), Audit: tokAuditor{f}, MaxBodySize: 8 << 10,
		Store: db, Validator: validation.New(), Origins: origins,
	}
	notify := fixtureNotifier{revoked: func(tenant, jti string, exp time.Time) {
		if err := f.rev.Add(tenant, jti, exp); err != nil {
			t.Error(err)
		}
		f.mu.Lock()
		f.revoked = append(f.revoked, tenant+"/"+jti)
		f.mu.Unlock()
	}}
	svc, err := admin.New(admin.Options{Audit: d.Audit, Tenants: db, Revoker: db, Signer: signer, Notify: notify, Logger: log,
		AuditLog: rec, TokenHorizon: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	d.Admin = svc
	f.srv = httptest.NewServer(Public(d))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *tokFixture) mint(tenant, sub string, perms ...string) auth.Issued {
	f.t.Helper()
	iss, err := f.signer.Issue(auth.IssueRequest{Tenant: tenant, Subject: sub, Permissions: perms, TTL: time.Hour})
	if err != nil {
		f.t.Fatal(err)
	}
	return iss
}

type tokResp = apiResponse

func (r tokResp) code(t *testing.T) string {
	t.Helper()
	var p problem
	_ = json.Unmarshal([]byte(r.body), &p)
	return p.Code
}

func (f *tokFixture) do(method, path, token, body string, hdr ...string) tokResp {
	f.t.Helper()
	return doRequest(f.t, f.srv, method, path, token, body, hdr...)
}

func (f *tokFixture) records(tenant, action string) []audit.Record {
	f.t.Helper()
	if tenant == "" {
		tenant = audit.ScopePlatform
	}
	recs, _, err := f.recorder.Query(f.t.Context(), audit.Filter{Tenant: tenant, Action: action, Limit: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	return recs
}

// TestTokenIssueAuthorization: a tenant admin mints tokens for its own tenant only, with
// permissions it holds, never platform:admin; a platform admin mints for any active tenant,
// still never platform:admin; TTL is bounded.
func TestTokenIssueAuthorization(t *testing.T) {
	f := newTokFixture(t)
	acmeAdmin := f.mint("acme", "ann", auth.PermTenantAdmin, auth.PermSwarmExecute).Token
	acmeFull := f.mint("acme", "ada", auth.PermTenantAdmin, auth.PermSwarmExecute, auth.PermTaskAdmin, auth.PermAuditRead).Token
	betaAdmin := f.mint("beta", "bob", auth.PermTenantAdmin, auth.PermSwarmExecute).Token
	platform := f.mint("beta", "root", auth.AllPermissions()...).Token
	user := f.mint("acme", "al", auth.PermSwarmExecute).Token
	body := func(sub, ttl string, perms ...string) string {
		b, _ := json.Marshal(map[string]any{"sub": sub, "permissions": perms, "ttl": ttl})
		return string(b)
	}
	tests := []struct {
		name, token, tenant, body string
		status                    int
		code                      string
	}{
		{"tenant admin, own tenant, held permission", acmeAdmin, "acme", body("carol", "1h", "swarm:execute"), 201, ""},
		{"tenant admin grants tenant:admin it holds", acmeAdmin, "acme", body("dave", "30m", "swarm:execute", "tenant:admin"), 201, ""},
		{"tenant admin with several permissions", acmeFull, "acme", body("erin", "2h", "task:admin", "audit:read"), 201, ""},
		{"tenant admin, other tenant", acmeAdmin, "beta", body("carol", "1h", "swarm:execute"), 404, "not_found"},
		{"tenant admin, other tenant (reverse)", betaAdmin, "acme", body("carol", "1h", "swarm:execute"), 404, "not_found"},
		{"tenant admin, permission it lacks", acmeAdmin, "acme", body("carol", "1h", "task:admin"), 403, "forbidden"},
		{"tenant admin, platform:admin", acmeAdmin, "acme", body("carol", "1h", "platform:admin"), 403, "forbidden"},
		{"tenant admin, platform:admin among others", acmeFull, "acme", body("carol", "1h", "swarm:execute", "platform:admin"), 403, "forbidden"},
		{"platform admin, any tenant", platform, "acme", body("carol", "1h", "task:admin", "tenant:admin"), 201, ""},
		{"platform admin, platform:admin (CLI only)", platform, "acme", body("carol", "1h", "platform:admin"), 403, "forbidden"},
		{"platform admin, suspended tenant", platform, "frozen", body("carol", "1h", "swarm:execute"), 409, "tenant_suspended"},
		{"platform admin, missing tenant", platform, "ghost", body("carol", "1h", "swarm:execute"), 404, "not_found"},
		{"platform admin, bad tenant id", platform, "..", body("carol", "1h", "swarm:execute"), 404, ""},
		{"plain user", user, "acme", body("carol", "1h", "swarm:execute"), 403, "forbidden"},
		{"ttl over max_ttl", acmeAdmin, "acme", body("carol", "25h", "swarm:execute"), 400, "validation_failed"},
		{"ttl negative", acmeAdmin, "acme", body("carol", "-1h", "swarm:execute"), 400, "validation_failed"},
		{"ttl not a duration", acmeAdmin, "acme", body("carol", "forever", "swarm:execute"), 400, "validation_failed"},
		{"unknown permission", acmeAdmin, "acme", body("carol", "1h", "root"), 400, "validation_failed"},
		{"no permissions", acmeAdmin, "acme", body("carol", "1h"), 400, "validation_failed"},
		{"blank subject", acmeAdmin, "acme", body(" ", "1h", "swarm:execute"), 400, "validation_failed"},
		{"unknown field", acmeAdmin, "acme", `{"sub":"c","permissions":["swarm:execute"],"ttl":"1h","tenant":"beta"}`, 400, "invalid_message"},
		{"no token", "", "acme", body("carol", "1h", "swarm:execute"), 401, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.do("POST", "/v1/admin/tenants/"+tt.tenant+"/tokens", tt.token, tt.body)
			if r.status != tt.status || (tt.code != "" && r.code(t) != tt.code) {
				t.Fatalf("%d %s; want %d %s", r.status, r.body, tt.status, tt.code)
			}
			if r.status != 201 {
				if strings.Contains(r.body, `"token"`) {
					t.Fatalf("a refused request returned a token: %s", r.body)
				}
				return
			}
			var out struct{ Token, JTI, ExpiresAt string }
			if err := json.Unmarshal([]byte(r.body), &out); err != nil || r.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("answer %s (%v), Cache-Control %q", r.body, err, r.header.Get("Cache-Control"))
			}
			var in struct {
				Sub         string
				Permissions []string
				TTL         string
			}
			_ = json.Unmarshal([]byte(tt.body), &in)
			p, err := f.verifier.Verify(context.Background(), out.Token)
			if err != nil {
				t.Fatalf("issued token does not verify: %v", err)
			}
			ttl, _ := time.ParseDuration(in.TTL)
			slices.Sort(in.Permissions)
			if p.Tenant != tt.tenant || p.Subject != in.Sub || !slices.Equal(p.Permissions, in.Permissions) || p.JTI != out.JTI ||
				apiTime(p.ExpiresAt) != out.ExpiresAt || time.Until(p.ExpiresAt) > ttl || time.Until(p.ExpiresAt) < ttl-time.Minute {
				t.Fatalf("principal %+v vs answer %+v (ttl %v)", p, out, ttl)
			}
			// On record, on the tenant's chain, with the jti as target and no token in it.
			var found *audit.Record
			for _, rec := range f.records(tt.tenant, audit.ActionTokenIssue) {
				if rec.Target.ID == out.JTI {
					found = &rec
				}
			}
			if found == nil || found.Outcome != audit.OutcomeSuccess || found.Details["sub"] != in.Sub || found.Details["expiresAt"] != out.ExpiresAt {
				t.Fatalf("token.issue record = %+v", found)
			}
			if raw, _ := json.Marshal(found); strings.Contains(string(raw), out.Token) {
				t.Fatal("the token reached the audit log")
			}
		})
	}
	// Denials are on record too.
	if len(f.records("acme", audit.ActionAuthzDenied)) == 0 {
		t.Fatal("no authz.denied record for refused grants")
	}
	if r := f.do("DELETE", "/v1/admin/tenants/acme/tokens", acmeAdmin, ""); r.status != 405 {
		t.Fatalf("DELETE tokens = %d", r.status)
	}
	// Fail closed: with the audit log down, no token leaves.
	f.failing.Store(true)
	r := f.do("POST", "/v1/admin/tenants/acme/tokens", acmeAdmin, body("carol", "1h", "swarm:execute"))
	f.failing.Store(false)
	if r.status != 503 || strings.Contains(r.body, "token\"") {
		t.Fatalf("audit down: %d %s", r.status, r.body)
	}
	if strings.Contains(f.logs.String(), acmeAdmin) {
		t.Fatal("a token reached the log")
	}
}

// TestTokenRevokeScoping: a tenant admin's revocation applies to its own tenant's tokens
// only; a platform admin's to every tenant. Revoked tokens are refused at once.
func TestTokenRevokeScoping(t *testing.T) {
	f := newTokFixture(t)
	acmeAdmin := f.mint("acme", "ann", auth.PermTenantAdmin).Token
	platform := f.mint("acme", "root", auth.AllPermissions()...).Token
	user := f.mint("acme", "al", auth.PermSwarmExecute)
	betaUser := f.mint("beta", "bo", auth.PermSwarmExecute)
	revoke := func(token, jti string, exp time.Time) tokResp {
		b, _ := json.Marshal(map[string]any{"jti": jti, "expiresAt": exp.UTC().Format(time.RFC3339)})
		return f.do("POST", "/v1/admin/tokens/revoke", token, string(b))
	}
	ticket := func(token string) int { return f.do("POST", "/v1/ws-ticket", token, "").status }
	if ticket(user.Token) != 201 || ticket(betaUser.Token) != 201 {
		t.Fatal("control tokens refused")
	}

	// acme's admin "revokes" beta's token: stored for acme only, beta's token keeps working.
	r := revoke(acmeAdmin, betaUser.JTI, betaUser.ExpiresAt)
	if r.status != 200 || !strings.Contains(r.body, `"scope":"tenant"`) || !strings.Contains(r.body, `"tenant":"acme"`) {
		t.Fatalf("cross-tenant revoke: %d %s", r.status, r.body)
	}
	if ticket(betaUser.Token) != 201 || f.rev.Revoked("beta", betaUser.JTI) {
		t.Fatal("a tenant admin revoked another tenant's token")
	}
	if ok, _ := f.db.IsRevoked(t.Context(), "beta", betaUser.JTI); ok {
		t.Fatal("stored revocation applies to another tenant")
	}

	// acme's admin revokes acme's token: refused at once, hook called with acme's scope,
	// kept at least as long as any issued token lives even with an understated expiresAt.
	r = revoke(acmeAdmin, user.JTI, time.Now().Add(2*time.Minute))
	if r.status != 200 || ticket(user.Token) != 401 {
		t.Fatalf("revoke own tenant's token: %d %s", r.status, r.body)
	}
	var out struct{ KeptUntil string }
	_ = json.Unmarshal([]byte(r.body), &out)
	kept, err := time.Parse(time.RFC3339, out.KeptUntil)
	if err != nil || time.Until(kept) < 23*time.Hour {
		t.Fatalf("keptUntil %q: the revocation would lapse before tokens it covers expire", out.KeptUntil)
	}
	f.mu.Lock()
	got := slices.Clone(f.revoked)
	f.mu.Unlock()
	if !slices.Equal(got, []string{"acme/" + betaUser.JTI, "acme/" + user.JTI}) {
		t.Fatalf("TokenRevoked calls = %v", got)
	}
	recs := f.records("acme", audit.ActionTokenRevoke)
	if len(recs) != 2 || recs[0].Target.ID != user.JTI || recs[0].Details["scope"] != "tenant" { // newest first
		t.Fatalf("token.revoke records = %+v", recs)
	}

	// The platform admin's revocation reaches beta's token.
	r = revoke(platform, betaUser.JTI, betaUser.ExpiresAt)
	if r.status != 200 || !strings.Contains(r.body, `"scope":"platform"`) || ticket(betaUser.Token) != 401 {
		t.Fatalf("platform revoke: %d %s", r.status, r.body)
	}
	if ok, _ := f.db.IsRevoked(t.Context(), "beta", betaUser.JTI); !ok {
		t.Fatal("platform revocation not stored for every tenant")
	}
	if len(f.records("", audit.ActionTokenRevoke)) != 1 {
		t.Fatal("platform revocation not on the platform chain")
	}

	// Refusals.
	for _, tc := range []struct {
		name, token string
		body        string
		status      int
	}{
		{"plain user", f.mint("acme", "x", auth.PermSwarmExecute).Token, `{"jti":"j","expiresAt":"2099-01-01T00:00:00Z"}`, 403},
		{"no token", "", `{"jti":"j","expiresAt":"2099-01-01T00:00:00Z"}`, 401},
		{"expired expiresAt", acmeAdmin, `{"jti":"j","expiresAt":"2001-01-01T00:00:00Z"}`, 400},
		{"no jti", acmeAdmin, `{"expiresAt":"2099-01-01T00:00:00Z"}`, 400},
		{"tenant in body is not a thing", acmeAdmin, `{"jti":"j","expiresAt":"2099-01-01T00:00:00Z","tenant":"beta"}`, 400},
	} {
		if r := f.do("POST", "/v1/admin/tokens/revoke", tc.token, tc.body); r.status != tc.status {
			t.Errorf("%s: %d %s; want %d", tc.name, r.status, r.body, tc.status)
		}
	}
	// Fail closed: nothing is revoked without its record.
	victim := f.mint("acme", "vic", auth.PermSwarmExecute)
	f.failing.Store(true)
	r = revoke(acmeAdmin, victim.JTI, victim.ExpiresAt)
	f.failing.Store(false)
	if r.status != 503 || f.rev.Revoked("acme", victim.JTI) {
		t.Fatalf("audit down: %d, revoked=%v", r.status, f.rev.Revoked("acme", victim.JTI))
	}
	if ok, _ := f.db.IsRevoked(t.Context(), "acme", victim.JTI); ok {
		t.Fatal("stored without a record")
	}
	// An admin whose own token is revoked can do nothing more.
	if r := revoke(platform, f.mustPrincipal(acmeAdmin).JTI, time.Now().Add(time.Hour)); r.status != 200 {
		t.Fatal(r.body)
	}
	if r := revoke(acmeAdmin, "anything", time.Now().Add(time.Hour)); r.status != 401 {
		t.Fatalf("revoked admin token: %d", r.status)
	}
}

// TestTokenListAndRevokeWithoutExpiry: a tenant admin lists the tokens issued for its tenant
// (from the audit: the CLI's too), newest first, never another tenant's, and revokes one by
// jti alone; the list then shows it revoked and the token is refused.
func TestTokenListAndRevokeWithoutExpiry(t *testing.T) {
	f := newTokFixture(t)
	acmeAdmin := f.mint("acme", "ann", auth.PermTenantAdmin, auth.PermSwarmExecute).Token
	betaAdmin := f.mint("beta", "bea", auth.PermTenantAdmin, auth.PermSwarmExecute).Token
	issue := func(token, tenant, sub string) string {
		t.Helper()
		r := f.do("POST", "/v1/admin/tenants/"+tenant+"/tokens", token, `{"sub":"`+sub+`","permissions":["swarm:execute"],"ttl":"1h"}`)
		if r.status != 201 {
			t.Fatalf("issue: %d %s", r.status, r.body)
		}
		var out struct{ Token, JTI string }
		if err := json.Unmarshal([]byte(r.body), &out); err != nil {
			t.Fatal(err)
		}
		return out.Token
	}
	first, second := issue(acmeAdmin, "acme", "al"), issue(acmeAdmin, "acme", "bo")
	issue(betaAdmin, "beta", "cy")
	type listed struct {
		Tokens []struct {
			JTI, Sub, IssuedAt, ExpiresAt, IssuedBy string
			Permissions                             []string
			Revoked, Expired                        bool
		}
	}
	list := func(token, tenant, query string) (int, listed) {
		t.Helper()
		r := f.do("GET", "/v1/admin/tenants/"+tenant+"/tokens"+query, token, "")
		var l listed
		_ = json.Unmarshal([]byte(r.body), &l)
		return r.status, l
	}
	status, l := list(acmeAdmin, "acme", "")
	if status != 200 || len(l.Tokens) != 2 || l.Tokens[0].Sub != "bo" || l.Tokens[1].Sub != "al" ||
		l.Tokens[0].IssuedBy != "ann" || l.Tokens[0].ExpiresAt == "" || !slices.Equal(l.Tokens[0].Permissions, []string{"swarm:execute"}) || l.Tokens[0].Revoked {
		t.Fatalf("acme's tokens = %d %+v", status, l)
	}
	if status, l := list(acmeAdmin, "acme", "?limit=1"); status != 200 || len(l.Tokens) != 1 {
		t.Fatalf("limit=1: %d %+v", status, l)
	}
	for _, q := range []string{"?limit=0", "?limit=201", "?limit=x", "?since=1h"} {
		if r := f.do("GET", "/v1/admin/tenants/acme/tokens"+q, acmeAdmin, ""); r.status != 400 || r.code(t) != "validation_failed" {
			t.Errorf("GET tokens%s = %d %s; want 400 validation_failed", q, r.status, r.body)
		}
	}
	if status, _ := list(acmeAdmin, "beta", ""); status != 404 {
		t.Fatalf("acme's admin listing beta's tokens = %d; want 404", status)
	}
	if status, _ := list(f.mint("acme", "u", auth.PermSwarmExecute).Token, "acme", ""); status != 403 {
		t.Fatalf("a plain user listing tokens = %d; want 403", status)
	}

	// Revoke by jti alone: kept as long as any token may live (the fixture's 24 h horizon).
	r := f.do("POST", "/v1/admin/tokens/revoke", acmeAdmin, `{"jti":"`+l.Tokens[1].JTI+`"}`)
	var rv struct{ KeptUntil string }
	_ = json.Unmarshal([]byte(r.body), &rv)
	kept, err := time.Parse(time.RFC3339Nano, rv.KeptUntil)
	if r.status != 200 || err != nil || kept.Before(time.Now().Add(23*time.Hour)) {
		t.Fatalf("revoke without expiresAt: %d %s", r.status, r.body)
	}
	if f.do("POST", "/v1/ws-ticket", first, "").status != 401 || f.do("POST", "/v1/ws-ticket", second, "").status != 201 {
		t.Fatal("after revoking the first token: want it refused and the second accepted")
	}
	if _, l := list(acmeAdmin, "acme", ""); !l.Tokens[1].Revoked || l.Tokens[0].Revoked {
		t.Fatalf("after the revocation: %+v", l)
	}
}

func (f *tokFixture) mustPrincipal(tok string) *auth.Principal {
	f.t.Helper()
	p, err := f.verifier.Verify(context.Background(), tok)
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// TestOriginPolicy: exact scheme://host[:port] matches; no Origin (non-browser) passes; the
// gateway's own origin (its dashboard) passes; everything else is 403 before any upgrade or
// API work.
func TestOriginPolicy(t *testing.T) {
	f := newTokFixture(t, "https://app.example.com", "http://localhost:3000", "https://admin.example.com:443")
	tok := f.mint("acme", "al", auth.PermSwarmExecute).Token
	self := strings.TrimPrefix(f.srv.URL, "http://")
	tests := []struct {
		origin string
		want   int
	}{
		{"", 201},
		{"https://app.example.com", 201},
		{"HTTPS://APP.EXAMPLE.COM", 201},
		{"http://localhost:3000", 201},
		{"https://admin.example.com", 201}, // browsers omit the default port
		{"http://" + self, 201},            // the dashboard's own origin
		{"https://evil.example", 403},
		{"null", 403},
		{"http://app.example.com", 403}, // wrong scheme
		{"https://app.example.com:8443", 403},
		{"https://app.example.com.evil.example", 403},
		{"https://evil.example/https://app.example.com", 403},
		{"https://app.example.com/", 403},
		{"https://user@app.example.com", 403},
		{"http://localhost:3001", 403},
		{"https://" + self + ".evil.example", 403},
		{"file://", 403},
	}
	for _, tt := range tests {
		var hdr []string
		if tt.origin != "" {
			hdr = []string{"Origin", tt.origin}
		}
		if r := f.do("POST", "/v1/ws-ticket", tok, "", hdr...); r.status != tt.want {
			t.Errorf("Origin %q: %d; want %d", tt.origin, r.status, tt.want)
		}
		// The same policy guards the WebSocket handshake.
		req := httptest.NewRequest("GET", "/ws", nil)
		req.Host = self
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		if got := newOriginPolicy([]string{"https://app.example.com", "http://localhost:3000", "https://admin.example.com:443"}).check(req); got != (tt.want == 201) {
			t.Errorf("handshake Origin %q: allowed=%v", tt.origin, got)
		}
	}
	// Two Origin headers are refused, not guessed between.
	req := httptest.NewRequest("GET", "/ws", nil)
	req.Header.Add("Origin", "https://app.example.com")
	req.Header.Add("Origin", "https://evil.example")
	if newOriginPolicy([]string{"https://app.example.com"}).check(req) {
		t.Fatal("two Origin headers accepted")
	}
}

// TestQueryTokensAndReferrer: query tokens are off outside --dev, never logged, and every
// response says Referrer-Policy: no-referrer.
func TestQueryTokensAndReferrer(t *testing.T) {
	env := func(string) string { return "" }
	prod, err := config.Load(nil, env, false)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := config.Load(nil, env, true)
	if err != nil {
		t.Fatal(err)
	}
	if prod.QueryTokensAllowed() || !dev.QueryTokensAllowed() {
		t.Fatalf("query tokens: default %v, dev %v; want off and on", prod.QueryTokensAllowed(), dev.QueryTokensAllowed())
	}

	f := newTokFixture(t)
	tok := f.mint("acme", "al", auth.PermSwarmExecute).Token
	for _, path := range []string{
		"/healthz?token=" + tok, "/ws?token=" + tok, "/?ticket=tk_secretticketvalue", "/nope?token=" + tok,
		"/.well-known/jwks.json", "/v1/admin/tokens/revoke?token=" + tok,
	} {
		r := f.do("GET", path, "", "")
		if r.header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: Referrer-Policy %q", strings.SplitN(path, "?", 2)[0], r.header.Get("Referrer-Policy"))
		}
	}
	r := f.do("POST", "/v1/ws-ticket", tok, "")
	if r.status != 201 || r.header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("ticket: %d %v", r.status, r.header)
	}
	logs := f.logs.String()
	if strings.Contains(logs, tok) || strings.Contains(logs, tok[len(tok)-24:]) || strings.Contains(logs, "secretticketvalue") {
		t.Fatal("a query-string credential reached the log")
	}
	if !strings.Contains(logs, `"path":"/healthz"`) {
		t.Fatal("no access log line (the check above proves nothing)")
	}
}
