package server

import (
	"encoding/json"
	"testing"

	"github.com/flowgate/flowgate/internal/auth"
)

// TestWhoami: a token learns who it is, a refused one why (code and reason), and a page on
// another origin can read either answer (CORS), an allowed origin its identity, a disallowed
// one only its refusal.
func TestWhoami(t *testing.T) {
	f := newTokFixture(t, "https://app.example.com")
	user := f.mint("acme", "al", auth.PermSwarmExecute)
	revoked := f.mint("acme", "rv", auth.PermSwarmExecute)
	if err := f.rev.Add("acme", revoked.JTI, revoked.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	other := newTokFixture(t).mint("acme", "x", auth.PermSwarmExecute) // another signing key
	tests := []struct {
		name, token, origin string
		status              int
		code, reason        string
		cors                bool
	}{
		{"valid", user.Token, "", 200, "", "", false},
		{"valid from an allowed page", user.Token, "https://app.example.com", 200, "", "", true},
		{"disallowed page", user.Token, "https://evil.example", 403, "forbidden", "origin_not_allowed", true},
		{"no token", "", "https://app.example.com", 401, "unauthorized", "missing_token", true},
		{"revoked", revoked.Token, "", 401, "unauthorized", "token_revoked", false},
		{"another key", other.Token, "", 401, "unauthorized", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.origin != "" {
				hdr = []string{"Origin", tt.origin}
			}
			r := f.do("GET", "/v1/whoami", tt.token, "", hdr...)
			if r.status != tt.status {
				t.Fatalf("status %d %s; want %d", r.status, r.body, tt.status)
			}
			if got := r.header.Get("Access-Control-Allow-Origin"); (got == tt.origin && got != "") != tt.cors {
				t.Fatalf("Access-Control-Allow-Origin %q for Origin %q; want reflected=%v", got, tt.origin, tt.cors)
			}
			if tt.status == 200 {
				var w struct {
					Tenant, Sub, JTI, ExpiresAt string
					Permissions                 []string
				}
				if err := json.Unmarshal([]byte(r.body), &w); err != nil || w.Tenant != "acme" || w.Sub != "al" || w.JTI != user.JTI ||
					w.ExpiresAt == "" || len(w.Permissions) != 1 {
					t.Fatalf("whoami = %s", r.body)
				}
				return
			}
			var p struct{ Code, Reason string }
			_ = json.Unmarshal([]byte(r.body), &p)
			if p.Code != tt.code || (tt.reason != "" && p.Reason != tt.reason) || p.Reason == "" {
				t.Fatalf("problem %s; want code %s reason %q", r.body, tt.code, tt.reason)
			}
		})
	}
	// The preflight allows the Authorization header from a page; without a request method it
	// is no preflight.
	r := f.do("OPTIONS", "/v1/whoami", "", "", "Origin", "https://app.example.com", "Access-Control-Request-Method", "GET",
		"Access-Control-Request-Headers", "authorization")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		r.header.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type" || r.header.Get("Access-Control-Allow-Methods") != "GET" {
		t.Fatalf("preflight = %d %v", r.status, r.header)
	}
	if r := f.do("OPTIONS", "/v1/ws-ticket", "", "", "Origin", "null", "Access-Control-Request-Method", "POST"); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from Origin null reflected it: %v", r.header)
	}
	// A ticket can be fetched from an allowed page, and the page can read it.
	r = f.do("POST", "/v1/ws-ticket", user.Token, "", "Origin", "https://app.example.com")
	if r.status != 201 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("ticket from an allowed page = %d %v", r.status, r.header)
	}
}
