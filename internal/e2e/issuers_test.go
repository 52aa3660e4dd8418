package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flowgate/flowgate/internal/auth/authtest"
	"github.com/flowgate/flowgate/internal/client"
)

// TestExternalIssuerCannotEscalate: an external issuer grants only what
// auth.issuers[].permissions lists (default swarm:execute) for the tenants it lists, whatever
// its tokens claim in permissions or scope; tokens past auth.max_token_lifetime and tokens
// with a non-string sub are refused — through the real gateway, on the WebSocket and the
// admin API.
func TestExternalIssuerCannotEscalate(t *testing.T) {
	dir := t.TempDir()
	secret := strings.Repeat("escalate-", 5)
	secretFile := filepath.Join(dir, "hs.secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	key := []map[string]any{{"kid": "hs-1", "alg": "HS256", "file": secretFile}}
	cfgFile := devConfigWithIssuers(t, dir, []map[string]any{
		{"issuer": "https://saas.example/", "keys": key},
		{"issuer": "https://ops.example/", "keys": key, "permissions": []string{"swarm:execute", "platform:admin"}},
		{"issuer": "https://other.example/", "keys": key, "tenants": []string{"other"}},
	})
	g := startGateway(t, gwOptions{args: []string{"--config", cfgFile}})

	now := time.Now()
	token := func(iss string, mod func(jwt.MapClaims)) string {
		c := jwt.MapClaims{"iss": iss, "aud": "flowgate", "sub": "eve", "tenant": "demo",
			"permissions": []string{"swarm:execute", "platform:admin"}, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return authtest.Sign(t, jwt.SigningMethodHS256, "hs-1", []byte(secret), c, nil)
	}
	adminAPI := g.HTTP + "/v1/admin/tenants"
	tests := []struct {
		name, token string
		handshake   string // "" = accepted, else the refusal reason (a 401)
		admin       int    // status of GET /v1/admin/tenants
	}{
		{"default issuer claiming platform:admin", token("https://saas.example/", nil), "", 403},
		{"default issuer claiming it in scope", token("https://saas.example/", func(c jwt.MapClaims) {
			delete(c, "permissions")
			c["scope"] = "swarm:execute platform:admin"
		}), "", 403},
		{"issuer that lists platform:admin", token("https://ops.example/", nil), "", 200},
		{"issuer for another tenant", token("https://other.example/", nil), "tenant_not_allowed", 401},
		{"exp beyond the max lifetime", token("https://saas.example/", func(c jwt.MapClaims) { c["exp"] = int64(9e18) }), "lifetime_too_long", 401},
		{"numeric sub", token("https://saas.example/", func(c jwt.MapClaims) { c["sub"] = 7; c["userId"] = "admin" }), "missing_subject", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, he := g.tryDial(t, client.Options{Token: tt.token})
			switch {
			case tt.handshake == "" && he != nil:
				t.Fatalf("handshake refused: %+v", he)
			case tt.handshake != "" && (he == nil || he.Status != 401 || !strings.Contains(he.Detail, tt.handshake)):
				t.Fatalf("handshake: %+v, want %s", he, tt.handshake)
			case he == nil:
				if strings.Contains(string(c.Welcome.Raw), "platform:admin") != (tt.admin == 200) {
					t.Errorf("welcome permissions: %s", c.Welcome.Raw)
				}
				c.Close()
			}
			if resp, body := g.get(t, adminAPI, tt.token); resp.StatusCode != tt.admin {
				t.Errorf("GET /v1/admin/tenants: %d %s, want %d", resp.StatusCode, body, tt.admin)
			}
		})
	}
	if !strings.Contains(g.Logs(), "permissions dropped from a token") {
		t.Error("the dropped permissions were not logged")
	}
}
