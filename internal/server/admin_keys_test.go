package server

import (
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
)

func TestKeyLifecycle(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	const (
		key1 = "sk-ant-canary-handler-key-one-0001"
		key2 = "sk-ant-canary-handler-key-two-0002"
	)
	admin := f.token("acme", auth.PermTenantAdmin)
	var answers []string
	do := func(method, body string) apiResponse {
		t.Helper()
		r := f.do(method, "/v1/admin/tenants/acme/key", admin, body)
		answers = append(answers, r.body)
		return r
	}

	f.expect(do("GET", ""), 404, "not_found")
	f.expect(do("DELETE", ""), 404, "not_found")
	before, _ := f.db.GetTenant(t.Context(), "acme")
	time.Sleep(2 * time.Millisecond) // updated_at must be able to move

	r := do("PUT", `{"apiKey":"`+key1+`"}`)
	f.expect(r, 201, "")
	var kv keyView
	r.json(t, &kv)
	if kv.Tenant != "acme" || !strings.HasPrefix(kv.Fingerprint, "sha256:") || len(kv.Fingerprint) != len("sha256:")+12 ||
		kv.Provider != "local" || kv.UpdatedAt == "" {
		t.Fatalf("key metadata %s", r.body)
	}
	fp1 := kv.Fingerprint
	if got, err := f.keys.APIKey(t.Context(), "acme", ""); err != nil || got != key1 {
		t.Fatalf("stored key does not serve: %v", err)
	}
	after, _ := f.db.GetTenant(t.Context(), "acme")
	if !after.UpdatedAt.After(before.UpdatedAt) {
		t.Fatal("a key change did not move the tenant's change marker")
	}
	if kc := f.keyChanges(); len(kc) != 1 || kc[0] != "acme" {
		t.Fatalf("KeyChanged calls = %v", kc)
	}

	r = do("GET", "")
	f.expect(r, 200, "")
	r.json(t, &kv)
	if kv.Fingerprint != fp1 {
		t.Fatalf("GET fingerprint %s, PUT said %s", kv.Fingerprint, fp1)
	}

	// Rotation: 200, a new fingerprint, the new key served at once.
	r = do("PUT", `{"apiKey":"`+key2+`"}`)
	f.expect(r, 200, "")
	r.json(t, &kv)
	if kv.Fingerprint == fp1 {
		t.Fatal("rotation kept the fingerprint")
	}
	fp2 := kv.Fingerprint
	if got, _ := f.keys.APIKey(t.Context(), "acme", ""); got != key2 {
		t.Fatal("rotation not served at once")
	}

	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"empty", `{}`, 400, "validation_failed"},
		{"blank", `{"apiKey":""}`, 400, "validation_failed"},
		{"whitespace", `{"apiKey":"sk-ant-with space"}`, 400, "validation_failed"},
		{"newline", `{"apiKey":"sk-ant-line\nbreak"}`, 400, "validation_failed"},
		{"too long", `{"apiKey":"` + strings.Repeat("k", 4097) + `"}`, 400, "validation_failed"},
		{"number", `{"apiKey":12345}`, 400, "invalid_message"},
		{"duplicate", `{"apiKey":"` + key1 + `","apiKey":"` + key2 + `"}`, 400, "invalid_message"},
		{"case-variant duplicate", `{"apiKey":"` + key1 + `","APIKEY":"` + key2 + `"}`, 400, "invalid_message"},
		{"unknown field", `{"apiKey":"` + key1 + `","key":"x"}`, 400, "invalid_message"},
		{"oversized", `{"apiKey":"` + strings.Repeat("k", fixtureMaxBody) + `"}`, 413, "invalid_message"},
		{"not json", key1, 400, "invalid_message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do("PUT", tc.body)
			f.expect(r, tc.status, tc.code)
			if tc.code == "validation_failed" && r.problem(t).Fields["apiKey"] == "" {
				t.Fatalf("fields do not name apiKey: %s", r.body)
			}
		})
	}
	if got, _ := f.keys.APIKey(t.Context(), "acme", ""); got != key2 {
		t.Fatal("a refused PUT changed the key")
	}

	f.expect(do("DELETE", ""), 204, "")
	f.expect(do("GET", ""), 404, "not_found")
	if _, err := f.keys.APIKey(t.Context(), "acme", ""); err == nil {
		t.Fatal("a deleted key still serves")
	}

	// Records: fingerprints, never a key.
	sets := f.records("acme", audit.ActionKeySet)
	dels := f.records("acme", audit.ActionKeyDelete)
	if len(sets) != 2 || sets[0].Details["previousFingerprint"] != nil || sets[1].Details["previousFingerprint"] != fp1 ||
		sets[0].Details["fingerprint"] != fp1 || sets[1].Details["fingerprint"] != fp2 ||
		sets[0].Details["version"] == sets[1].Details["version"] || sets[1].Details["version"] == "" {
		t.Fatalf("key.set records = %+v; want each naming the new key's fingerprint and version", sets)
	}
	if len(dels) != 1 || dels[0].Details["fingerprint"] != fp2 {
		t.Fatalf("key.delete records = %+v", dels)
	}
	all, _, err := f.recorder.Query(t.Context(), audit.Filter{Tenant: audit.ScopeAll, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var everything strings.Builder
	for _, a := range answers {
		everything.WriteString(a)
	}
	for _, rec := range all {
		everything.WriteString(rec.Reason)
		for k, v := range rec.Details {
			everything.WriteString(k)
			if s, ok := v.(string); ok {
				everything.WriteString(s)
			}
		}
	}
	for _, k := range []string{key1, key2} {
		if strings.Contains(everything.String(), k) {
			t.Fatalf("key %s… appears in an answer or an audit record", k[:12])
		}
	}
}

func TestKeyRoutesScope(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	acmeAdmin := f.token("acme", auth.PermTenantAdmin)
	acmeUser := f.token("acme", auth.PermSwarmExecute, auth.PermTaskAdmin, auth.PermAuditRead)
	platform := f.token("globex", auth.PermPlatformAdmin)
	body := `{"apiKey":"sk-ant-scope-test-0001"}`
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		b := ""
		if m == "PUT" {
			b = body
		}
		f.expect(f.do(m, "/v1/admin/tenants/globex/key", acmeAdmin, b), 404, "not_found")
		f.expect(f.do(m, "/v1/admin/tenants/acme/key", acmeUser, b), 403, "forbidden")
		f.expect(f.do(m, "/v1/admin/tenants/nosuch/key", platform, b), 404, "not_found")
	}
	f.expect(f.do("PUT", "/v1/admin/tenants/acme/key", platform, body), 201, "")
	f.expect(f.do("GET", "/v1/admin/tenants/acme/key", platform, ""), 200, "")
	f.expect(f.do("DELETE", "/v1/admin/tenants/acme/key", platform, ""), 204, "")
	f.expect(f.do("POST", "/v1/admin/tenants/acme/key", platform, body), 405, "method_not_allowed")
	if len(f.keyChanges()) != 2 {
		t.Fatalf("KeyChanged calls = %v", f.keyChanges())
	}
}

func TestKeyProviderDown(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	admin := f.token("acme", auth.PermTenantAdmin)
	f.expect(f.do("PUT", "/v1/admin/tenants/acme/key", admin, `{"apiKey":"sk-ant-provider-down-0001"}`), 201, "")
	f.provider.failing.Store(true)
	f.expect(f.do("GET", "/v1/admin/tenants/acme/key", admin, ""), 503, "tenant_key_unavailable")
	f.expect(f.do("PUT", "/v1/admin/tenants/acme/key", admin, `{"apiKey":"sk-ant-provider-down-0002"}`), 503, "tenant_key_unavailable")
	f.expect(f.do("DELETE", "/v1/admin/tenants/acme/key", admin, ""), 503, "tenant_key_unavailable")
	f.provider.failing.Store(false)

	// key.set carries the real outcome, written after the write; key.set.requested, written
	// before, is what keeps the change fail-closed.
	sets := f.records("acme", audit.ActionKeySet)
	if len(sets) != 2 || sets[0].Outcome != audit.OutcomeSuccess || sets[1].Outcome != audit.OutcomeFailure ||
		sets[1].Reason != "secrets provider unavailable" || sets[1].Details["previousFingerprint"] != "unknown" {
		t.Fatalf("key.set records = %+v", sets)
	}
	if reqs := f.records("acme", audit.ActionKeySetRequested); len(reqs) != 2 || reqs[1].Details["previousFingerprint"] != "unknown" {
		t.Fatalf("key.set.requested records = %+v", reqs)
	}
	if got, _ := f.keys.APIKey(t.Context(), "acme", ""); got != "sk-ant-provider-down-0001" {
		t.Fatal("the key changed during the outage")
	}
	if kc := f.keyChanges(); len(kc) != 1 {
		t.Fatalf("KeyChanged ran for failed changes: %v", kc)
	}
}
