package validation

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"
)

// wantFields checks err names exactly the given fields, each message containing its substring.
func wantFields(t *testing.T, err error, want map[string]string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("rejected: %v", err)
		}
		return
	}
	fields := fieldsOf(t, err)
	for f, sub := range want {
		msg, ok := fields[f]
		if !ok {
			t.Errorf("field %q not reported; got %v", f, fields)
			continue
		}
		if !strings.Contains(msg, sub) {
			t.Errorf("%s = %q; want it to contain %q", f, msg, sub)
		}
	}
	if len(fields) != len(want) {
		t.Errorf("got fields %v; want exactly %v", fields, want)
	}
}

func globalLimits() Limits {
	l := designLimits()
	l.Strategies = []string{"auto", "parallel", "sequential", "research", "development"}
	return l
}

func TestTenantCreate(t *testing.T) {
	v := New()
	tests := []struct {
		name string
		in   TenantCreate
		want map[string]string
	}{
		{"minimal", TenantCreate{ID: "acme"}, nil},
		{"full", TenantCreate{ID: "acme-2", Name: "Acme Inc. — Ünïcode", Limits: &TenantLimits{
			ConcurrentTasks: ptr(10000), SwarmsPerMinute: ptr(1), SwarmBurst: ptr(100000), MaxAgents: ptr(20),
			AllowedStrategies: []string{"parallel", "research"},
		}}, nil},
		{"empty limits", TenantCreate{ID: "ab", Limits: &TenantLimits{}}, nil},
		{"id missing", TenantCreate{}, map[string]string{"id": "is required"}},
		{"id one char", TenantCreate{ID: "a"}, map[string]string{"id": "2 to 63"}},
		{"id uppercase", TenantCreate{ID: "Acme"}, map[string]string{"id": "lowercase"}},
		{"id leading dash", TenantCreate{ID: "-acme"}, map[string]string{"id": "starting with"}},
		{"id too long", TenantCreate{ID: strings.Repeat("a", 64)}, map[string]string{"id": "2 to 63"}},
		{"id traversal", TenantCreate{ID: "../x"}, map[string]string{"id": "lowercase"}},
		{"name too long", TenantCreate{ID: "acme", Name: strings.Repeat("n", 201)}, map[string]string{"name": "at most 200 characters"}},
		{"name control", TenantCreate{ID: "acme", Name: "a\nb"}, map[string]string{"name": "printable"}},
		{"name bidi", TenantCreate{ID: "acme", Name: "a\u202eb"}, map[string]string{"name": "printable"}},
		{"name blank", TenantCreate{ID: "acme", Name: "   "}, map[string]string{"name": "blank"}},
		{"limits out of range", TenantCreate{ID: "acme", Limits: &TenantLimits{
			ConcurrentTasks: ptr(0), SwarmsPerMinute: ptr(100001), SwarmBurst: ptr(-1), MaxAgents: ptr(21),
			AllowedStrategies: []string{"auto", "evil"},
		}}, map[string]string{
			"limits.concurrentTasks":      "between 1 and 10000",
			"limits.swarmsPerMinute":      "between 1 and 100000",
			"limits.swarmBurst":           "between 1 and 100000",
			"limits.maxAgents":            "between 1 and 20",
			"limits.allowedStrategies[1]": "must be one of",
		}},
		{"duplicate strategy", TenantCreate{ID: "acme", Limits: &TenantLimits{AllowedStrategies: []string{"auto", "auto"}}},
			map[string]string{"limits.allowedStrategies": "twice"}},
		{"too many strategies", TenantCreate{ID: "acme", Limits: &TenantLimits{AllowedStrategies: make([]string, 33)}},
			map[string]string{"limits.allowedStrategies": "at most 32 entries"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := v.TenantCreate(tt.in, globalLimits())
			wantFields(t, err, tt.want)
			if err == nil && out.Name == "" {
				t.Fatal("name not defaulted")
			}
		})
	}
	out, _ := v.TenantCreate(TenantCreate{ID: "acme"}, globalLimits())
	if out.Name != "acme" {
		t.Fatalf("default name = %q", out.Name)
	}
	// MaxAgents may not exceed a server maximum lower than 20.
	low := globalLimits()
	low.MaxAgents = 8
	_, err := v.TenantCreate(TenantCreate{ID: "acme", Limits: &TenantLimits{MaxAgents: ptr(9)}}, low)
	wantFields(t, err, map[string]string{"limits.maxAgents": "server's maximum of 8"})
}

func TestTenantPatch(t *testing.T) {
	v := New()
	tests := []struct {
		name string
		in   TenantPatch
		want map[string]string
	}{
		{"status", TenantPatch{Status: ptr("suspended")}, nil},
		{"name", TenantPatch{Name: ptr("New name")}, nil},
		{"limits", TenantPatch{Limits: &TenantLimits{MaxAgents: ptr(3)}}, nil},
		{"nothing", TenantPatch{}, map[string]string{BodyField: "at least one"}},
		{"bad status", TenantPatch{Status: ptr("deleted")}, map[string]string{"status": "active, suspended"}},
		{"empty status", TenantPatch{Status: ptr("")}, map[string]string{"status": "one of"}},
		{"empty name", TenantPatch{Name: ptr("")}, map[string]string{"name": "must not be empty"}},
		{"all bad", TenantPatch{Name: ptr("\x00"), Status: ptr("x"), Limits: &TenantLimits{SwarmBurst: ptr(0)}},
			map[string]string{"name": "printable", "status": "one of", "limits.swarmBurst": "between"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.TenantPatch(tt.in, globalLimits())
			wantFields(t, err, tt.want)
		})
	}
}

func TestKeyPut(t *testing.T) {
	v := New()
	key := "sk-ant-api03-canary0123456789abcdefghijklmnopqrstuvwxyz"
	if out, err := v.KeyPut(KeyPut{APIKey: key}); err != nil || out.APIKey != key {
		t.Fatalf("KeyPut = %v", err)
	}
	for name, in := range map[string]KeyPut{
		"empty":    {},
		"space":    {APIKey: key + " x"},
		"newline":  {APIKey: key + "\n"},
		"nul":      {APIKey: key + "\x00"},
		"nbsp":     {APIKey: key + "\u00a0"},
		"bidi":     {APIKey: key + "\u202e"},
		"too long": {APIKey: key + strings.Repeat("k", MaxAPIKeyBytes)},
		"not utf8": {APIKey: key + "\xff"},
	} {
		_, err := v.KeyPut(in)
		fields := fieldsOf(t, err)
		if fields["apiKey"] == "" || len(fields) != 1 {
			t.Errorf("%s: fields %v", name, fields)
		}
		if strings.Contains(err.Error(), "canary") {
			t.Errorf("%s: error echoes the key: %v", name, err)
		}
	}
	// The body type never prints its key, whichever way it is formatted or logged.
	in := KeyPut{APIKey: key}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("put", "body", in)
	for _, s := range []string{fmt.Sprint(in), fmt.Sprintf("%+v", in), fmt.Sprintf("%#v", in), fmt.Sprintf("%s", in), b.String()} {
		if strings.Contains(s, "canary") {
			t.Errorf("formatted body leaks the key: %s", s)
		}
	}
}

func TestTokenIssue(t *testing.T) {
	v := New()
	tests := []struct {
		name   string
		in     TokenIssue
		maxTTL time.Duration
		want   map[string]string
		ttl    time.Duration
	}{
		{name: "ok", in: TokenIssue{Sub: "alice", Permissions: []string{"swarm:execute"}, TTL: "1h"}, ttl: time.Hour},
		{name: "min ttl", in: TokenIssue{Sub: "bob@example.com", Permissions: []string{"task:admin", "audit:read"}, TTL: "1m"}, ttl: time.Minute},
		{name: "max ttl", in: TokenIssue{Sub: "a", Permissions: []string{"tenant:admin"}, TTL: "24h"}, ttl: 24 * time.Hour},
		{name: "custom max ttl", in: TokenIssue{Sub: "a", Permissions: []string{"swarm:execute"}, TTL: "2h"}, maxTTL: time.Hour,
			want: map[string]string{"ttl": "between 1m and 1h"}},
		{name: "empty", in: TokenIssue{}, want: map[string]string{"sub": "is required", "permissions": "is required", "ttl": "is required"}},
		{name: "no permissions", in: TokenIssue{Sub: "a", Permissions: []string{}, TTL: "1h"}, want: map[string]string{"permissions": "must not be empty"}},
		{name: "unknown permission", in: TokenIssue{Sub: "a", Permissions: []string{"swarm:execute", "root"}, TTL: "1h"},
			want: map[string]string{"permissions[1]": "not a known permission"}},
		{name: "duplicate permission", in: TokenIssue{Sub: "a", Permissions: []string{"audit:read", "audit:read"}, TTL: "1h"},
			want: map[string]string{"permissions": "twice"}},
		{name: "too many permissions", in: TokenIssue{Sub: "a", Permissions: make([]string, 17), TTL: "1h"},
			want: map[string]string{"permissions": "at most 16"}},
		{name: "ttl too short", in: TokenIssue{Sub: "a", Permissions: []string{"swarm:execute"}, TTL: "59s"}, want: map[string]string{"ttl": "between 1m and 24h"}},
		{name: "ttl too long", in: TokenIssue{Sub: "a", Permissions: []string{"swarm:execute"}, TTL: "24h1s"}, want: map[string]string{"ttl": "between"}},
		{name: "ttl negative", in: TokenIssue{Sub: "a", Permissions: []string{"swarm:execute"}, TTL: "-1h"}, want: map[string]string{"ttl": "between"}},
		{name: "ttl number", in: TokenIssue{Sub: "a", Permissions: []string{"swarm:execute"}, TTL: "3600"}, want: map[string]string{"ttl": "between"}},
		{name: "sub too long", in: TokenIssue{Sub: strings.Repeat("s", 257), Permissions: []string{"swarm:execute"}, TTL: "1h"}, want: map[string]string{"sub": "at most 256"}},
		{name: "sub control", in: TokenIssue{Sub: "a\x1b", Permissions: []string{"swarm:execute"}, TTL: "1h"}, want: map[string]string{"sub": "printable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.maxTTL == 0 {
				tt.maxTTL = 24 * time.Hour // auth.signing.max_ttl's default
			}
			out, err := v.TokenIssue(tt.in, tt.maxTTL)
			wantFields(t, err, tt.want)
			if err == nil && (out.TTL != tt.ttl || out.Sub != tt.in.Sub || len(out.Permissions) != len(tt.in.Permissions)) {
				t.Fatalf("got %+v", out)
			}
		})
	}
}

func TestTokenRevoke(t *testing.T) {
	v := New()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   TokenRevoke
		want map[string]string
	}{
		{"ok", TokenRevoke{JTI: "01J8Z", ExpiresAt: now.Add(time.Hour)}, nil},
		{"one year", TokenRevoke{JTI: "j", ExpiresAt: now.Add(MaxRevokeAhead)}, nil},
		{"missing", TokenRevoke{}, map[string]string{"jti": "is required"}},
		{"no expiry", TokenRevoke{JTI: "j"}, nil},
		{"past", TokenRevoke{JTI: "j", ExpiresAt: now.Add(-time.Second)}, map[string]string{"expiresAt": "in the future"}},
		{"now", TokenRevoke{JTI: "j", ExpiresAt: now}, map[string]string{"expiresAt": "in the future"}},
		{"too far", TokenRevoke{JTI: "j", ExpiresAt: now.Add(MaxRevokeAhead + time.Second)}, map[string]string{"expiresAt": "one year"}},
		{"jti too long", TokenRevoke{JTI: strings.Repeat("j", 129), ExpiresAt: now.Add(time.Hour)}, map[string]string{"jti": "at most 128"}},
		{"jti control", TokenRevoke{JTI: "j\n", ExpiresAt: now.Add(time.Hour)}, map[string]string{"jti": "printable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.TokenRevoke(tt.in, now)
			wantFields(t, err, tt.want)
		})
	}
}

func TestAuditQuery(t *testing.T) {
	v := New()
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	out, err := v.AuditQuery(url.Values{})
	if err != nil || out.Limit != DefaultAuditLimit {
		t.Fatalf("empty query = %+v, %v", out, err)
	}
	q, _ := url.ParseQuery("actor=alice&action=auth.failure&outcome=denied&since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00.5%2B01:00&limit=1000&cursor=eyJzIjo0Mn0&tenant=acme")
	out, err = v.AuditQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	if out.Actor != "alice" || out.Action != "auth.failure" || out.Outcome != "denied" || !out.Since.Equal(since) ||
		out.Until == nil || out.Limit != 1000 || out.Cursor != "eyJzIjo0Mn0" || out.Tenant != "acme" {
		t.Fatalf("got %+v", out)
	}
	tests := []struct {
		query string
		want  map[string]string
	}{
		{"limit=0", map[string]string{"limit": "between 1 and 1000"}},
		{"limit=1001", map[string]string{"limit": "between 1 and 1000"}},
		{"limit=ten", map[string]string{"limit": "between 1 and 1000"}},
		{"limit=99999999999999999999", map[string]string{"limit": "between 1 and 1000"}},
		{"limit=1&limit=2", map[string]string{"limit": "once"}},
		{"outcome=maybe", map[string]string{"outcome": "success, failure, denied"}},
		{"since=yesterday", map[string]string{"since": "RFC 3339"}},
		{"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", map[string]string{"until": "before since"}},
		{"cursor=" + strings.Repeat("c", 513), map[string]string{"cursor": "at most 512"}},
		{"cursor=a%20b", map[string]string{"cursor": "previous page"}},
		{"action=DROP%20TABLE", map[string]string{"action": "audit action"}},
		{"actor=" + strings.Repeat("a", 257), map[string]string{"actor": "at most 256"}},
		{"tenant=UPPER", map[string]string{"tenant": "lowercase"}},
		{"bogus=1", map[string]string{"bogus": "not a known filter"}},
		{"limit=0&outcome=x&bogus=1&since=x", map[string]string{"limit": "between", "outcome": "one of", "bogus": "filter", "since": "RFC"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.AuditQuery(q)
			wantFields(t, err, tt.want)
		})
	}
	// Hundreds of unknown parameters give a bounded reply.
	many := url.Values{}
	for i := range 300 {
		many.Set(fmt.Sprintf("p%d", i), "1")
	}
	_, err = v.AuditQuery(many)
	if fields := fieldsOf(t, err); len(fields) > maxNamedUnknown+1 || fields["query"] == "" {
		t.Fatalf("fields %v", fields)
	}
}
