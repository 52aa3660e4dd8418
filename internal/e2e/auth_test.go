package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/auth/authtest"
	"github.com/flowgate/flowgate/internal/client"
)

func TestTokenSources(t *testing.T) {
	g := startGateway(t, gwOptions{})
	ticket := func() string {
		req, _ := http.NewRequest("POST", g.HTTP+"/v1/ws-ticket", nil)
		req.Header.Set("Authorization", "Bearer "+g.UserToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Ticket string }
		if err := jsonDecode(resp.Body, &body); err != nil || resp.StatusCode != 201 || !strings.HasPrefix(body.Ticket, "tk_") {
			t.Fatalf("ticket: %d %v %+v", resp.StatusCode, err, body)
		}
		return body.Ticket
	}
	for _, src := range []string{client.TokenHeader, client.TokenSubprotocol, client.TokenQuery, client.TokenTicket} {
		t.Run(src, func(t *testing.T) {
			tok := g.UserToken
			if src == client.TokenTicket {
				tok = ticket()
			}
			c := g.dialWith(t, client.Options{Token: tok, TokenSource: src})
			if c.Welcome.Type != "connection" || c.Subprotocol() != "flowgate.v1" {
				t.Fatalf("welcome %s subprotocol %q", c.Welcome.Raw, c.Subprotocol())
			}
			if strings.Contains(c.Subprotocol(), "bearer") {
				t.Fatal("server echoed the bearer subprotocol")
			}
			if src == client.TokenTicket {
				// A ticket is single use.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, err := client.Dial(ctx, g.URL, client.Options{Token: tok, TokenSource: src})
				var he *client.HandshakeError
				if !errors.As(err, &he) || he.Status != 401 {
					t.Fatalf("ticket replay: %v", err)
				}
			}
		})
	}
	if strings.Contains(g.Logs(), g.UserToken) || strings.Contains(g.Logs(), g.UserToken[len(g.UserToken)-20:]) {
		t.Fatal("a token reached the log")
	}
}

// signingKey reads the --dev signing key, so the test can mint tokens the gateway trusts and
// then break them one property at a time.
func signingKey(t *testing.T, g *gateway) ed25519.PrivateKey {
	t.Helper()
	k, err := auth.LoadSigningKey(filepath.Join(g.dataDir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestHandshakeRefusals(t *testing.T) {
	g := startGateway(t, gwOptions{})
	key := signingKey(t, g)
	kid := auth.KeyID(key.Public().(ed25519.PublicKey))
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	base := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": "flowgate", "aud": "flowgate", "sub": "mallory", "tenant": "demo",
			"permissions": []string{"swarm:execute"}, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "jti": "x1"}
	}
	mint := func(c jwt.MapClaims, k ed25519.PrivateKey) string {
		return authtest.Sign(t, jwt.SigningMethodEdDSA, kid, k, c, nil)
	}
	with := func(f func(jwt.MapClaims)) string {
		c := base()
		f(c)
		return mint(c, key)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name   string
		token  string
		status int
		reason string
	}{
		{"valid control", mint(base(), key), 101, ""},
		{"alg none", b64([]byte(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`)) + "." + b64([]byte(`{"iss":"flowgate","aud":"flowgate","sub":"m","tenant":"demo","exp":9999999999}`)) + ".", 401, auth.ReasonAlgorithm},
		{"wrong key", mint(base(), otherKey), 401, auth.ReasonSignature},
		{"expired", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-5 * time.Minute).Unix() }), 401, auth.ReasonExpired},
		{"wrong audience", with(func(c jwt.MapClaims) { c["aud"] = "other" }), 401, auth.ReasonAudience},
		{"wrong issuer", with(func(c jwt.MapClaims) { c["iss"] = "evil" }), 401, auth.ReasonUnknownIssuer},
		{"missing tenant", with(func(c jwt.MapClaims) { delete(c, "tenant") }), 401, auth.ReasonTenant},
		{"unknown tenant", with(func(c jwt.MapClaims) { c["tenant"] = "nobody" }), 401, auth.ReasonTenantUnknown},
		{"no exp", with(func(c jwt.MapClaims) { delete(c, "exp") }), 401, auth.ReasonMissingExp},
		{"oversized", strings.Repeat("a", 9000), 401, auth.ReasonTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, g.URL, client.Options{Token: tt.token})
			if tt.status == 101 {
				if err != nil {
					t.Fatalf("control token refused: %v", err)
				}
				c.Close()
				return
			}
			var he *client.HandshakeError
			if !errors.As(err, &he) {
				if c != nil {
					c.Close()
				}
				t.Fatalf("dial = %v; want HTTP %d", err, tt.status)
			}
			if he.Status != tt.status || he.Code != "unauthorized" || !strings.Contains(he.Detail, tt.reason) {
				t.Fatalf("refusal = %+v; want %d with %s", he, tt.status, tt.reason)
			}
		})
	}
	// No token at all, and query tokens are refused by default outside --dev (covered in
	// config tests); two different tokens → 400.
	resp := rawHandshake(t, context.Background(), g.URL+"?token=abc", "Bearer def")
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("two tokens: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Nothing about a refused token reached the log, and no session was opened for one.
	logs := g.Logs()
	for _, tt := range tests[1:] {
		if len(tt.token) > 40 && strings.Contains(logs, tt.token[len(tt.token)-30:]) {
			t.Fatalf("token %q reached the log", tt.name)
		}
	}
	if n := strings.Count(logs, `"upgraded":true`); n != 1 {
		t.Fatalf("%d upgraded connections; want only the control one", n)
	}
}
