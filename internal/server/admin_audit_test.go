package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/admin"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/tenant"
	"github.com/flowgate/flowgate/internal/validation"
)

// seedAudit writes n records on each of acme, globex and the platform chain, each actor
// named after its chain, so that a leak shows in any field.
func seedAudit(t *testing.T, f *adminFixture, n int) {
	t.Helper()
	for i := range n {
		for _, chain := range []string{"acme", "globex", ""} {
			name := chain
			if name == "" {
				name = "platform"
			}
			outcome := audit.OutcomeSuccess
			if i%3 == 2 {
				outcome = audit.OutcomeDenied
			}
			if err := f.recorder.Record(t.Context(), audit.Record{
				Action: audit.ActionTaskCreate, Outcome: outcome, Tenant: chain, Reason: "seed " + name,
				Actor:  audit.Actor{Sub: "actor-" + name, TokenFP: "sha256:" + name},
				Target: audit.Target{Type: "task", ID: fmt.Sprintf("%s-task-%d", name, i)},
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

type auditAnswer struct {
	Records    []map[string]any `json:"records"`
	NextCursor string           `json:"nextCursor"`
}

// auditQuery GETs /v1/admin/audit and checks every record is canonical and hashes right.
func auditQuery(t *testing.T, f *adminFixture, token, query string) auditAnswer {
	t.Helper()
	r := f.do("GET", "/v1/admin/audit?"+query, token, "")
	f.expect(r, 200, "")
	var raw struct {
		Records    []json.RawMessage `json:"records"`
		NextCursor string            `json:"nextCursor"`
	}
	r.json(t, &raw)
	var out auditAnswer
	r.json(t, &out)
	for _, b := range raw.Records {
		checkCanonical(t, []byte(b))
	}
	return out
}

// checkCanonical decodes a record as exported and checks its hash and canonical form.
func checkCanonical(t *testing.T, b []byte) audit.Record {
	t.Helper()
	rec, err := audit.UnmarshalRecord(b)
	if err != nil {
		t.Fatalf("record %s: %v", b, err)
	}
	if h, err := audit.ComputeHash(rec); err != nil || h != rec.Hash {
		t.Fatalf("record %s: hash %s, recomputed %s (%v)", b, rec.Hash, h, err)
	}
	again, err := audit.MarshalCanonical(rec)
	if err != nil || string(again) != string(b) {
		t.Fatalf("record is not canonical:\n%s\n%s", b, again)
	}
	return rec
}

func tenantsOf(recs []map[string]any) map[string]int {
	out := map[string]int{}
	for _, r := range recs {
		out[r["tenant"].(string)]++
	}
	return out
}

func TestAuditQueryScope(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	seedAudit(t, f, 6)
	reader := f.token("acme", auth.PermAuditRead)
	platform := f.token("acme", auth.PermPlatformAdmin)

	a := auditQuery(t, f, reader, "")
	if got := tenantsOf(a.Records); len(got) != 1 || got["acme"] != 6 || a.NextCursor != "" {
		t.Fatalf("acme reader sees %v (next %q)", got, a.NextCursor)
	}
	for i, r := range a.Records {
		if r["seq"].(float64) != float64(6-i) {
			t.Fatalf("not newest first: %v", r)
		}
	}
	if a := auditQuery(t, f, reader, "tenant=acme"); len(a.Records) != 6 {
		t.Fatalf("own tenant named: %d records", len(a.Records))
	}

	// Filters narrow the token's scope and never widen it.
	for _, q := range []string{"actor=actor-globex", "actor=actor-platform", "action=tenant.create", "outcome=failure"} {
		if a := auditQuery(t, f, reader, q); len(a.Records) != 0 {
			t.Fatalf("%s: %d records", q, len(a.Records))
		}
	}
	if a := auditQuery(t, f, reader, "outcome=denied&action=task.create&actor=actor-acme"); len(a.Records) != 2 {
		t.Fatalf("combined filters: %d records", len(a.Records))
	}

	// Other scopes are not found, whatever the spelling; each attempt is on record.
	denied := len(f.records("acme", audit.ActionAuthzDenied))
	for _, q := range []string{"tenant=globex", "tenant=nobody", "tenant=@platform", "tenant=@all", "tenant=%2A"} {
		f.expect(f.do("GET", "/v1/admin/audit?"+q, reader, ""), 404, "not_found")
		f.expect(f.do("GET", "/v1/admin/audit/export?"+q, reader, ""), 404, "not_found")
		f.expect(f.do("GET", "/v1/admin/audit/verify?"+q, reader, ""), 404, "not_found")
	}
	if n := len(f.records("acme", audit.ActionAuthzDenied)) - denied; n != 15 {
		t.Fatalf("%d authz.denied records for 15 refused scopes", n)
	}
	// Without audit:read: 403 for the own tenant, 404 for another.
	f.expect(f.do("GET", "/v1/admin/audit", f.token("acme", auth.PermTenantAdmin, auth.PermTaskAdmin), ""), 403, "forbidden")
	f.expect(f.do("GET", "/v1/admin/audit?tenant=acme", f.token("globex", auth.PermTenantAdmin), ""), 404, "not_found")
	f.expect(f.do("GET", "/v1/admin/audit", "", ""), 401, "unauthorized")

	// Paging by two covers the chain (now with the refusals on it) once; a cursor only
	// continues the query it came from.
	total := len(auditQuery(t, f, reader, "limit=1000").Records)
	seen := map[float64]bool{}
	q := "limit=2"
	for range total {
		a := auditQuery(t, f, reader, q)
		for _, r := range a.Records {
			if seen[r["seq"].(float64)] {
				t.Fatalf("seq %v listed twice", r["seq"])
			}
			seen[r["seq"].(float64)] = true
		}
		if a.NextCursor == "" {
			break
		}
		q = "limit=2&cursor=" + url.QueryEscape(a.NextCursor)
	}
	if len(seen) != total || total < 20 {
		t.Fatalf("paging saw %d of %d records", len(seen), total)
	}
	// A cursor taken from a platform admin's view of globex or of every chain does not open
	// them to the acme reader: it is refused, never followed.
	for _, scope := range []string{"tenant=globex", "tenant=@all", "tenant=@platform"} {
		other := auditQuery(t, f, platform, scope+"&limit=1")
		if other.NextCursor == "" {
			t.Fatalf("%s: no cursor", scope)
		}
		r := f.do("GET", "/v1/admin/audit?limit=1&cursor="+url.QueryEscape(other.NextCursor), reader, "")
		f.expect(r, 400, "validation_failed")
		if pr := r.problem(t); pr.Fields["cursor"] == "" {
			t.Fatalf("fields %v", pr.Fields)
		}
	}
	// Reused with a different filter, a cursor of the reader's own scope is refused too.
	own := auditQuery(t, f, reader, "limit=1")
	f.expect(f.do("GET", "/v1/admin/audit?limit=1&outcome=success&cursor="+url.QueryEscape(own.NextCursor), reader, ""), 400, "validation_failed")

	// The platform admin chooses any scope; without ?tenant= it sees its own tenant.
	for _, tc := range []struct {
		query string
		want  map[string]int
	}{
		{"action=task.create", map[string]int{"acme": 6}},
		{"tenant=globex&action=task.create", map[string]int{"globex": 6}},
		{"tenant=@platform&action=task.create", map[string]int{"": 6}},
		{"tenant=@all&action=task.create", map[string]int{"acme": 6, "globex": 6, "": 6}},
		{"tenant=%2A&actor=actor-globex", map[string]int{"globex": 6}},
	} {
		a := auditQuery(t, f, platform, tc.query)
		if got := tenantsOf(a.Records); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("platform %q: %v, want %v", tc.query, got, tc.want)
		}
	}

	for _, tc := range []struct{ query, field string }{
		{"outcome=ok", "outcome"}, {"limit=0", "limit"}, {"limit=1001", "limit"}, {"since=yesterday", "since"},
		{"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"}, {"action=Key.Set", "action"},
		{"tenant=Bad!", "tenant"}, {"tenant=acme&tenant=globex", "tenant"}, {"page=2", "page"},
		{"actor=a%00b", "actor"}, {"cursor=%20x", "cursor"}, {"cursor=AAAA", "cursor"},
	} {
		r := f.do("GET", "/v1/admin/audit?"+tc.query, reader, "")
		f.expect(r, 400, "validation_failed")
		if pr := r.problem(t); pr.Fields[tc.field] == "" {
			t.Errorf("%s: fields %v do not name %s", tc.query, pr.Fields, tc.field)
		}
	}
	for _, path := range []string{"/v1/admin/audit", "/v1/admin/audit/export", "/v1/admin/audit/verify"} {
		f.expect(f.do("POST", path, reader, `{}`), 405, "method_not_allowed")
	}
	if r := f.do("HEAD", "/v1/admin/audit/export", reader, ""); r.status != 405 {
		t.Fatalf("HEAD export: %d", r.status)
	}
}

// exportLines GETs an export and checks each line.
func exportLines(t *testing.T, f *adminFixture, token, query string) []audit.Record {
	t.Helper()
	r := f.do("GET", "/v1/admin/audit/export?"+query, token, "")
	f.expect(r, 200, "")
	if ct := r.header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("content type %q", ct)
	}
	var out []audit.Record
	sc := bufio.NewScanner(strings.NewReader(r.body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, checkCanonical(t, sc.Bytes()))
	}
	return out
}

func TestAuditExport(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	seedAudit(t, f, 4)
	reader := f.token("acme", auth.PermAuditRead)

	recs := exportLines(t, f, reader, "")
	// The export's own record was written before the stream was read, so it is in it.
	if len(recs) != 5 || recs[4].Action != audit.ActionAuditExport {
		t.Fatalf("%d lines, last %+v", len(recs), recs[len(recs)-1])
	}
	for i, r := range recs {
		if r.Tenant != "acme" || r.Seq != int64(i+1) {
			t.Fatalf("line %d: %+v", i, r)
		}
		if i > 0 && r.PrevHash != recs[i-1].Hash {
			t.Fatalf("line %d does not link", i)
		}
	}
	exp := recs[4]
	if exp.Outcome != audit.OutcomeSuccess || exp.Actor.Sub != "user-acme" || !strings.HasPrefix(exp.Actor.TokenFP, "sha256:") ||
		exp.Target.Type != "audit_chain" || exp.Target.ID != "acme" || exp.RequestID == "" ||
		exp.Details["scope"] != "acme" || exp.Details["actorTenant"] != "acme" {
		t.Fatalf("audit.export record %+v", exp)
	}

	// Filters apply; limit and cursor are not export parameters.
	if recs := exportLines(t, f, reader, "action=audit.export&since=2020-01-01T00:00:00Z"); len(recs) != 2 {
		t.Fatalf("filtered export: %d lines", len(recs))
	}
	for _, q := range []string{"limit=10", "cursor=abc", "outcome=nope"} {
		f.expect(f.do("GET", "/v1/admin/audit/export?"+q, reader, ""), 400, "validation_failed")
	}

	// A platform admin's export of globex is recorded on globex's chain, naming the admin's
	// tenant; of every chain, on the platform chain.
	platform := f.token("acme", auth.PermPlatformAdmin)
	if recs := exportLines(t, f, platform, "tenant=globex"); len(recs) != 5 || recs[4].Details["actorTenant"] != "acme" {
		t.Fatalf("globex export: %d lines", len(recs))
	}
	if recs := exportLines(t, f, platform, "tenant=@all"); len(recs) < 15 {
		t.Fatalf("full export: %d lines", len(recs))
	}
	if got := f.records(audit.ScopePlatform, audit.ActionAuditExport); len(got) != 1 || got[0].Target.ID != audit.ScopeAll {
		t.Fatalf("platform export records %+v", got)
	}

	// Fail closed: no record, no export.
	f.audit.failing.Store(true)
	r := f.do("GET", "/v1/admin/audit/export", reader, "")
	f.audit.failing.Store(false)
	f.expect(r, 503, "internal")
	if strings.Contains(r.body, "seed") {
		t.Fatal("records left in a refused export")
	}
	if n := len(f.records("acme", audit.ActionAuditExport)); n != 2 {
		t.Fatalf("%d audit.export records on acme, want 2", n)
	}
}

func TestAuditVerifyRoute(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	seedAudit(t, f, 5)
	reader := f.token("acme", auth.PermAuditRead)
	platform := f.token("acme", auth.PermPlatformAdmin)
	verify := func(token, query string) audit.Report {
		t.Helper()
		r := f.do("GET", "/v1/admin/audit/verify?"+query, token, "")
		f.expect(r, 200, "")
		var rep audit.Report
		r.json(t, &rep)
		return rep
	}
	if rep := verify(reader, ""); !rep.OK || len(rep.Chains) != 1 || rep.Chains[0].Tenant != "acme" || rep.Chains[0].LastSeq != 5 {
		t.Fatalf("acme verify %+v", rep)
	}

	// globex's record 3 is edited in the database.
	if _, err := f.db.SQL().ExecContext(t.Context(),
		`UPDATE audit_records SET body = replace(body, '"seed globex"', '"nothing here"') WHERE chain = 'globex' AND seq = 3`); err != nil {
		t.Fatal(err)
	}
	// acme's reader neither sees nor is told about it.
	if rep := verify(reader, ""); !rep.OK || len(rep.Chains) != 1 {
		t.Fatalf("acme verify after globex tampering %+v", rep)
	}
	rep := verify(platform, "tenant=globex")
	if rep.OK || rep.FirstProblem == nil || rep.FirstProblem.Tenant != "globex" || rep.FirstProblem.Seq != 3 ||
		rep.FirstProblem.Kind != audit.ProblemEdited {
		t.Fatalf("globex verify %+v", rep)
	}
	if rep := verify(platform, "tenant=@all"); rep.OK || len(rep.Chains) != 3 || rep.FirstProblem.Tenant != "globex" {
		t.Fatalf("full verify %+v", rep)
	}
	if rep := verify(platform, "tenant=@platform"); !rep.OK || len(rep.Chains) != 1 || rep.Chains[0].Tenant != "" {
		t.Fatalf("platform verify %+v", rep)
	}
	for _, q := range []string{"actor=x", "tenant=Bad!"} {
		f.expect(f.do("GET", "/v1/admin/audit/verify?"+q, reader, ""), 400, "validation_failed")
	}
}

func TestAuditWalksAreBounded(t *testing.T) {
	t.Parallel()
	a := newAuditRoutes(&adminAPI{authenticator: &authenticator{}}, nil, nil, nil)
	take := func(tenant string) (func(), int) {
		w := httptest.NewRecorder()
		rel, ok := a.acquire(w, httptest.NewRequestWithContext(context.Background(), "GET", "/", nil), tenant)
		if !ok {
			return nil, w.Code
		}
		return rel, 0
	}
	// One tenant gets maxTenantWalks, no more.
	var acme []func()
	for range maxTenantWalks {
		rel, code := take("acme")
		if rel == nil {
			t.Fatalf("acme refused below its bound: %d", code)
		}
		acme = append(acme, rel)
	}
	if _, code := take("acme"); code != http.StatusTooManyRequests {
		t.Fatalf("acme beyond its bound: %d", code)
	}
	// Others still get theirs, up to the process bound.
	var others []func()
	for i := 0; len(acme)+len(others) < maxAuditWalks; i++ {
		rel, code := take(fmt.Sprintf("t%d", i))
		if rel == nil {
			t.Fatalf("tenant %d refused below the bound: %d", i, code)
		}
		others = append(others, rel)
	}
	if _, code := take("fresh"); code != http.StatusTooManyRequests {
		t.Fatalf("beyond the process bound: %d", code)
	}
	acme[0]()
	acme[0]() // releasing twice frees one slot only
	if rel, _ := take("acme"); rel == nil {
		t.Fatal("released slot not reusable")
	}
	if _, code := take("fresh"); code != http.StatusTooManyRequests {
		t.Fatalf("a double release freed two slots: %d", code)
	}
}

// brokenLog is an audit log whose export fails after writing lines (0 = at once).
type brokenLog struct {
	AuditReader
	lines int
}

func (b brokenLog) Export(ctx context.Context, f audit.Filter, w io.Writer) error {
	for i := range b.lines {
		if _, err := fmt.Fprintf(w, "{\"line\":%d}\n", i); err != nil {
			return err
		}
	}
	return errors.New("storage went away")
}

// TestAuditExportFailure: an export that fails before its first line answers 500; one that
// fails midway is cut off (the client sees a broken transfer, never a clean end). Both leave a
// failure record after the success record written before streaming.
func TestAuditExportFailure(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	reader := f.token("acme", auth.PermAuditRead)
	verifier, err := auth.NewVerifier(auth.VerifierOptions{Issuers: []auth.IssuerConfig{f.signer.IssuerConfig()}})
	if err != nil {
		t.Fatal(err)
	}
	for _, lines := range []int{0, 20000} {
		log := brokenLog{AuditReader: f.recorder, lines: lines}
		svc, err := admin.New(admin.Options{Audit: f.recorder, Tenants: f.db, AuditLog: log, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(Public(&Deps{
			Logger: slog.New(slog.DiscardHandler), Verifier: verifier, Revocations: auth.NewRevocations(nil),
			Tenants: tenant.NewDirectory(f.db, 10, time.Second), Audit: f.recorder, Validator: validation.New(),
			AuditLog: log, Admin: svc,
		}))
		req, _ := http.NewRequest("GET", srv.URL+"/v1/admin/audit/export", nil)
		req.Header.Set("Authorization", "Bearer "+reader)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		switch lines {
		case 0:
			if resp.StatusCode != 500 || rerr != nil {
				t.Fatalf("failure before the first line: %d %v %s", resp.StatusCode, rerr, body)
			}
		default:
			if resp.StatusCode != 200 || rerr == nil {
				t.Fatalf("failure midway: %d, read error %v after %d bytes", resp.StatusCode, rerr, len(body))
			}
		}
	}
	recs := f.records("acme", audit.ActionAuditExport)
	if len(recs) != 4 || recs[0].Outcome != audit.OutcomeSuccess || recs[1].Outcome != audit.OutcomeFailure ||
		recs[1].Details["lines"] != float64(0) || recs[3].Outcome != audit.OutcomeFailure || recs[3].Details["lines"].(float64) < 1 {
		t.Fatalf("export records %+v", recs)
	}
}
