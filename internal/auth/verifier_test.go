package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flowgate/flowgate/internal/auth/authtest"
)

type keys struct {
	hs      []byte
	rsa     *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
	otherEd ed25519.PrivateKey
}

func newKeys(t testing.TB) keys {
	t.Helper()
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	return keys{hs: []byte(strings.Repeat("k", 32)), rsa: r, ec: e, ed: ed, otherEd: other}
}

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newVerifier(t *testing.T, k keys) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierOptions{
		Issuers: []IssuerConfig{
			{Issuer: "https://platform.example/", Audience: "flowgate", Keys: []VerificationKey{
				{KID: "hs", Alg: AlgHS256, Key: k.hs},
				{KID: "rs", Alg: AlgRS256, Key: &k.rsa.PublicKey},
				{KID: "es", Alg: AlgES256, Key: &k.ec.PublicKey},
				{KID: "ed", Alg: AlgEdDSA, Key: k.ed.Public()},
			}, Permissions: []string{PermSwarmExecute, PermTaskAdmin}},
			{Issuer: "other", Audience: "other-aud", Keys: []VerificationKey{
				{KID: "ed2", Alg: AlgEdDSA, Key: k.otherEd.Public()},
			}},
		},
		Leeway: 30 * time.Second,
		Now:    func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": "https://platform.example/", "aud": "flowgate", "sub": "alice", "tenant": "acme",
		"permissions": []string{"swarm:execute", "bogus"}, "exp": testNow.Add(time.Hour).Unix(),
		"iat": testNow.Unix(), "jti": "j1",
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func TestVerify(t *testing.T) {
	k := newKeys(t)
	v := newVerifier(t, k)
	b64 := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name   string
		token  func() string
		reason string // "" = accepted
	}{
		{"HS256", func() string { return authtest.Sign(t, jwt.SigningMethodHS256, "hs", k.hs, claims(nil), nil) }, ""},
		{"RS256", func() string { return authtest.Sign(t, jwt.SigningMethodRS256, "rs", k.rsa, claims(nil), nil) }, ""},
		{"ES256", func() string { return authtest.Sign(t, jwt.SigningMethodES256, "es", k.ec, claims(nil), nil) }, ""},
		{"EdDSA", func() string { return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(nil), nil) }, ""},
		{"typ at+jwt", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(nil), map[string]any{"typ": "at+jwt"})
		}, ""},
		{"seed userId and scope", func() string {
			return authtest.Sign(t, jwt.SigningMethodHS256, "hs", k.hs, claims(func(c jwt.MapClaims) {
				delete(c, "sub")
				delete(c, "permissions")
				c["userId"] = "bob"
				c["scope"] = "swarm:execute audit:read"
			}), nil)
		}, ""},
		{"alg none", func() string {
			h := b64([]byte(`{"alg":"none","typ":"JWT","kid":"hs"}`))
			p := b64([]byte(`{"iss":"https://platform.example/","aud":"flowgate","sub":"a","tenant":"acme","exp":9999999999}`))
			return h + "." + p + "."
		}, ReasonAlgorithm},
		{"HS256 signed with RSA public key bytes (alg confusion)", func() string {
			der, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
			pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			return authtest.Sign(t, jwt.SigningMethodHS256, "rs", pemBytes, claims(nil), nil)
		}, ReasonAlgorithm},
		{"EdDSA key presented as HS256 kid", func() string { return authtest.Sign(t, jwt.SigningMethodEdDSA, "hs", k.ed, claims(nil), nil) }, ReasonAlgorithm},
		{"wrong key", func() string { return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.otherEd, claims(nil), nil) }, ReasonSignature},
		{"wrong HS secret", func() string {
			return authtest.Sign(t, jwt.SigningMethodHS256, "hs", []byte(strings.Repeat("x", 32)), claims(nil), nil)
		}, ReasonSignature},
		{"kid of issuer B presented as issuer A", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed2", k.otherEd, claims(nil), nil)
		}, ReasonUnknownKey},
		{"unknown kid", func() string { return authtest.Sign(t, jwt.SigningMethodEdDSA, "nope", k.ed, claims(nil), nil) }, ReasonUnknownKey},
		{"unknown issuer", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(func(c jwt.MapClaims) { c["iss"] = "evil" }), nil)
		}, ReasonUnknownIssuer},
		{"expired", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(func(c jwt.MapClaims) { c["exp"] = testNow.Add(-time.Minute).Unix() }), nil)
		}, ReasonExpired},
		{"expired within leeway", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(func(c jwt.MapClaims) { c["exp"] = testNow.Add(-10 * time.Second).Unix() }), nil)
		}, ""},
		{"no exp", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(func(c jwt.MapClaims) { delete(c, "exp") }), nil)
		}, ReasonMissingExp},
		{"iat in future", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(func(c jwt.MapClaims) { c["iat"] = testNow.Add(5 * time.Minute).Unix() }), nil)
		}, ReasonIssuedInFuture},
		{"nbf in future", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(func(c jwt.MapClaims) { c["nbf"] = testNow.Add(5 * time.Minute).Unix() }), nil)
		}, ReasonNotYetValid},
		{"wrong audience", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(func(c jwt.MapClaims) { c["aud"] = "someone-else" }), nil)
		}, ReasonAudience},
		{"no audience", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(func(c jwt.MapClaims) { delete(c, "aud") }), nil)
		}, ReasonAudience},
		{"missing tenant", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(func(c jwt.MapClaims) { delete(c, "tenant") }), nil)
		}, ReasonTenant},
		{"tenant breaks id rule", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(func(c jwt.MapClaims) { c["tenant"] = "../acme" }), nil)
		}, ReasonTenant},
		{"missing subject", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(func(c jwt.MapClaims) { delete(c, "sub") }), nil)
		}, ReasonSubject},
		{"permissions not an array", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(func(c jwt.MapClaims) { c["permissions"] = "swarm:execute" }), nil)
		}, ReasonClaims},
		{"crit header", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(nil), map[string]any{"crit": []string{"exp"}})
		}, ReasonBadHeader},
		{"typ JWE-ish", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(nil), map[string]any{"typ": "JOSE+JSON"})
		}, ReasonBadHeader},
		{"jku header is ignored, not fetched", func() string {
			return authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.otherEd, claims(nil), map[string]any{"jku": "http://127.0.0.1:1/jwks"})
		}, ReasonSignature},
		{"too long", func() string { return strings.Repeat("a", 8193) }, ReasonTooLong},
		{"garbage", func() string { return "not-a-jwt" }, ReasonMalformed},
		{"empty", func() string { return "" }, ReasonMissing},
		{"padded base64 (not strict)", func() string {
			s := authtest.Sign(t, jwt.SigningMethodEdDSA, "ed", k.ed, claims(nil), nil)
			parts := strings.Split(s, ".")
			return parts[0] + "=." + parts[1] + "." + parts[2]
		}, ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tt.token())
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if p.Tenant != "acme" || p.ExpiresAt.IsZero() || !strings.HasPrefix(p.TokenFP, "sha256:") {
					t.Fatalf("principal = %+v", p)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", p)
			}
			if got := ReasonOf(err); got != tt.reason {
				t.Fatalf("reason = %s (%v); want %s", got, err, tt.reason)
			}
		})
	}
}

func TestPrincipalClaims(t *testing.T) {
	k := newKeys(t)
	v := newVerifier(t, k)
	tok := authtest.Sign(t, jwt.SigningMethodHS256, "hs", k.hs, claims(func(c jwt.MapClaims) {
		c["permissions"] = []string{"task:admin", "swarm:execute", "swarm:execute", "made:up"}
	}), nil)
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Permissions, ",") != "swarm:execute,task:admin" {
		t.Fatalf("permissions = %v", p.Permissions)
	}
	if !p.Has(PermTaskAdmin) || p.Has(PermPlatformAdmin) || p.Subject != "alice" || p.JTI != "j1" || p.Issuer != "https://platform.example/" {
		t.Fatalf("principal = %+v", p)
	}
	if strings.Contains(p.TokenFP, tok[:20]) {
		t.Fatal("fingerprint leaks the token")
	}
}

func TestSignerRoundTrip(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	_, old, _ := ed25519.GenerateKey(rand.Reader)
	now := testNow
	s, err := NewSigner(SignerOptions{Issuer: "flowgate", Audience: "flowgate", Key: key, TenantClaim: "tenant", DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour, Previous: []ed25519.PrivateKey{old}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifierOptions{Issuers: []IssuerConfig{s.IssuerConfig()}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := s.Issue(IssueRequest{Tenant: "demo", Subject: "demo-user", Permissions: []string{PermSwarmExecute}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(context.Background(), iss.Token)
	if err != nil {
		t.Fatal(err)
	}
	if p.JTI != iss.JTI || p.JTI == "" || !p.ExpiresAt.Equal(iss.ExpiresAt) {
		t.Fatalf("principal %+v vs issued %+v", p, iss)
	}
	// A token from the previous key still verifies during the overlap window.
	prev, _ := NewSigner(SignerOptions{Issuer: "flowgate", Audience: "flowgate", Key: old, TenantClaim: "tenant", DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour, Now: func() time.Time { return now }})
	oldTok, _ := prev.Issue(IssueRequest{Tenant: "demo", Subject: "u", Permissions: []string{PermSwarmExecute}})
	if _, err := v.Verify(context.Background(), oldTok.Token); err != nil {
		t.Fatalf("previous key: %v", err)
	}
	if _, err := s.Issue(IssueRequest{Tenant: "demo", Subject: "u", Permissions: []string{"root"}}); err == nil {
		t.Fatal("unknown permission accepted")
	}
	if _, err := s.Issue(IssueRequest{Tenant: "demo", Subject: "u", Permissions: []string{PermSwarmExecute}, TTL: 48 * time.Hour}); err == nil {
		t.Fatal("ttl beyond max accepted")
	}
	if !strings.Contains(string(s.JWKS()), `"kty":"OKP"`) || strings.Count(string(s.JWKS()), `"kid"`) != 2 {
		t.Fatalf("jwks = %s", s.JWKS())
	}
}

func TestLoadVerificationKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k := newKeys(t)
	der, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	rsaPEM := write("rsa.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if _, err := LoadVerificationKey(rsaPEM, AlgRS256); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadVerificationKey(rsaPEM, AlgEdDSA); err == nil {
		t.Fatal("RSA key accepted for EdDSA")
	}
	if _, err := LoadVerificationKey(write("short", []byte("short-secret\n")), AlgHS256); err == nil {
		t.Fatal("short HS256 secret accepted")
	}
	if b, err := LoadVerificationKey(write("ok", []byte(strings.Repeat("s", 32)+"\n")), AlgHS256); err != nil || len(b.([]byte)) != 32 {
		t.Fatalf("hs256: %v", err)
	}
}

func TestEnsureSigningKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d", "signing.key")
	k1, created, err := EnsureSigningKey(p)
	if err != nil || !created {
		t.Fatal(err, created)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	k2, created, err := EnsureSigningKey(p)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatal("second call must load the same key")
	}
	os.Chmod(p, 0o644)
	if _, _, err := EnsureSigningKey(p); err == nil {
		t.Fatal("world-readable key accepted")
	}
}

func TestHS256SecretFileMustBePrivate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hs.secret")
	if err := os.WriteFile(p, []byte(strings.Repeat("s", 32)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadVerificationKey(p, AlgHS256); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable HS256 secret: %v", err)
	}
	if err := os.Chmod(p, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadVerificationKey(p, AlgHS256); err != nil {
		t.Fatalf("a 0400 secret: %v", err)
	}
}

// An issuer grants only what auth.issuers[].permissions lists (default swarm:execute), speaks
// only for its tenants, and no token outlives auth.max_token_lifetime; sub must be a string.
func TestIssuerBoundsAndTokenEdges(t *testing.T) {
	k := newKeys(t)
	var dropped []string
	mk := func(perms, tenants []string) *Verifier {
		v, err := NewVerifier(VerifierOptions{
			Issuers: []IssuerConfig{{Issuer: "https://platform.example/", Audience: "flowgate",
				Keys: []VerificationKey{{KID: "hs", Alg: AlgHS256, Key: k.hs}}, Permissions: perms, Tenants: tenants}},
			Leeway: 30 * time.Second, MaxLifetime: 24 * time.Hour, Now: func() time.Time { return testNow },
			OnDropped: func(_, _, _ string, d []string) { dropped = append(dropped, d...) },
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tok := func(mod func(jwt.MapClaims)) string {
		return authtest.Sign(t, jwt.SigningMethodHS256, "hs", k.hs, claims(mod), nil)
	}
	admin := func(c jwt.MapClaims) { c["permissions"] = []string{"platform:admin", "swarm:execute"} }
	adminScope := func(c jwt.MapClaims) { delete(c, "permissions"); c["scope"] = "platform:admin tenant:admin" }
	tests := []struct {
		name           string
		v              *Verifier
		token          string
		reason         string // "" = accepted
		perms, dropped string
	}{
		{"default issuer: platform:admin dropped", mk(nil, nil), tok(admin), "", "swarm:execute", "platform:admin"},
		{"default issuer: scope cannot escalate", mk(nil, nil), tok(adminScope), "", "", "platform:admin,tenant:admin"},
		{"issuer that lists platform:admin", mk([]string{"swarm:execute", "platform:admin"}, nil), tok(admin), "", "platform:admin,swarm:execute", ""},
		{"tenant not among the issuer's", mk(nil, []string{"other"}), tok(nil), ReasonTenantNotAllowed, "", ""},
		{"tenant among the issuer's", mk(nil, []string{"acme"}), tok(nil), "", "swarm:execute", ""},
		{"wildcard tenants", mk(nil, []string{"*"}), tok(nil), "", "swarm:execute", ""},
		{"exp far beyond the max lifetime", mk(nil, nil), tok(func(c jwt.MapClaims) { c["exp"] = int64(9e18) }), ReasonLifetime, "", ""},
		{"exp 25h after iat", mk(nil, nil), tok(func(c jwt.MapClaims) { c["exp"] = testNow.Add(25 * time.Hour).Unix() }), ReasonLifetime, "", ""},
		{"no iat: measured from now", mk(nil, nil), tok(func(c jwt.MapClaims) { delete(c, "iat"); c["exp"] = testNow.Add(48 * time.Hour).Unix() }), ReasonLifetime, "", ""},
		{"numeric sub does not fall back to userId", mk(nil, nil), tok(func(c jwt.MapClaims) { c["sub"] = 42; c["userId"] = "mallory" }), ReasonSubject, "", ""},
		{"empty sub", mk(nil, nil), tok(func(c jwt.MapClaims) { c["sub"] = "" }), ReasonSubject, "", ""},
		{"userId when sub is absent", mk(nil, nil), tok(func(c jwt.MapClaims) { delete(c, "sub"); c["userId"] = "seed-user" }), "", "swarm:execute", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dropped = nil
			p, err := tt.v.Verify(context.Background(), tt.token)
			if tt.reason != "" {
				if got := ReasonOf(err); got != tt.reason {
					t.Fatalf("reason = %q (%v), want %s", got, err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(p.Permissions, ","); got != tt.perms {
				t.Errorf("permissions = %q, want %q", got, tt.perms)
			}
			if got := strings.Join(dropped, ","); got != tt.dropped {
				t.Errorf("dropped = %q, want %q", got, tt.dropped)
			}
		})
	}
	if _, err := NewVerifier(VerifierOptions{Issuers: []IssuerConfig{{Issuer: "x", Audience: "a",
		Keys: []VerificationKey{{KID: "hs", Alg: AlgHS256, Key: k.hs}}, Permissions: []string{"root"}}}}); err == nil {
		t.Error("an unknown permission was accepted")
	}
}

// Claims that repeat a key, exactly or in another case, are refused: parsers disagree on which
// copy wins.
func TestDuplicateClaimsRefused(t *testing.T) {
	k := newKeys(t)
	v := newVerifier(t, k)
	for _, payload := range []string{
		`{"iss":"https://platform.example/","aud":"flowgate","sub":"alice","tenant":"acme","Tenant":"other","exp":%d}`,
		`{"iss":"https://platform.example/","aud":"flowgate","sub":"alice","sub":"bob","tenant":"acme","exp":%d}`,
		`{"iss":"https://platform.example/","aud":"flowgate","sub":"alice","tenant":"acme","PERMISSIONS":["platform:admin"],"permissions":[],"exp":%d}`,
	} {
		tok := signRaw(t, k.hs, fmt.Sprintf(payload, testNow.Add(time.Hour).Unix()))
		if _, err := v.Verify(context.Background(), tok); ReasonOf(err) != ReasonClaims {
			t.Errorf("%s: err %v, want %s", payload, err, ReasonClaims)
		}
	}
}

// signRaw signs a payload exactly as given (HS256, kid hs): jwt.MapClaims cannot hold
// duplicate keys.
func signRaw(t *testing.T, key []byte, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	unsigned := enc.EncodeToString([]byte(`{"alg":"HS256","kid":"hs","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(unsigned, key)
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + enc.EncodeToString(sig)
}

// TestNewSignerRefusesMissingBounds: the signer's claim name and lifetimes are configuration
// (auth.tenant_claim, auth.signing.*): a zero is refused, never replaced by a value of its own.
func TestNewSignerRefusesMissingBounds(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ok := SignerOptions{Issuer: "flowgate", Audience: "flowgate", Key: key, TenantClaim: "tenant", DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour}
	if _, err := NewSigner(ok); err != nil {
		t.Fatalf("complete options refused: %v", err)
	}
	for _, tt := range []struct {
		key   string
		spoil func(*SignerOptions)
	}{
		{"auth.tenant_claim", func(o *SignerOptions) { o.TenantClaim = "" }},
		{"auth.signing.max_ttl", func(o *SignerOptions) { o.MaxTTL = 0 }},
		{"auth.signing.default_ttl", func(o *SignerOptions) { o.DefaultTTL = 0 }},
		{"auth.signing.default_ttl", func(o *SignerOptions) { o.DefaultTTL = 25 * time.Hour }},
	} {
		o := ok
		tt.spoil(&o)
		if _, err := NewSigner(o); err == nil || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("%s: err = %v; want it named", tt.key, err)
		}
	}
}
