package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify is the handshake's token check per algorithm: parse, signature, claims,
// principal. Compare runs with benchstat (go test -bench Verify -benchmem -count 10).
// The handshake target is ≥ 5,000/s on two cores, so one verification must stay far below
// 200 µs of CPU.
func BenchmarkVerify(b *testing.B) {
	k := newKeys(b)
	cases := []struct {
		alg    string
		method jwt.SigningMethod
		sign   any
		verify any
	}{
		{AlgHS256, jwt.SigningMethodHS256, k.hs, k.hs},
		{AlgRS256, jwt.SigningMethodRS256, k.rsa, &k.rsa.PublicKey},
		{AlgES256, jwt.SigningMethodES256, k.ec, &k.ec.PublicKey},
		{AlgEdDSA, jwt.SigningMethodEdDSA, k.ed, k.ed.Public()},
	}
	for _, c := range cases {
		b.Run(c.alg, func(b *testing.B) {
			v, err := NewVerifier(VerifierOptions{
				Issuers: []IssuerConfig{{Issuer: "https://issuer.example/", Audience: "flowgate",
					Keys: []VerificationKey{{KID: "k1", Alg: c.alg, Key: c.verify}}}},
				Leeway: 30 * time.Second,
			})
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			tok := jwt.NewWithClaims(c.method, jwt.MapClaims{
				"iss": "https://issuer.example/", "aud": "flowgate", "sub": "user-42", "tenant": "acme",
				"permissions": []string{"swarm:execute", "task:admin"}, "jti": "0123456789abcdef0123456789abcdef",
				"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			})
			tok.Header["kid"] = "k1"
			raw, err := tok.SignedString(c.sign)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				p, err := v.Verify(ctx, raw)
				if err != nil || p.Tenant != "acme" {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifySigned is the --dev path end to end: a token from flowgate's own Signer,
// checked with the Signer's issuer configuration.
func BenchmarkVerifySigned(b *testing.B) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewSigner(SignerOptions{Issuer: "flowgate", Audience: "flowgate", Key: key, TenantClaim: "tenant", MaxTTL: 24 * time.Hour, DefaultTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	iss, err := s.Issue(IssueRequest{Tenant: "demo", Subject: "load-1", Permissions: []string{PermSwarmExecute}})
	if err != nil {
		b.Fatal(err)
	}
	v, err := NewVerifier(VerifierOptions{Issuers: []IssuerConfig{s.IssuerConfig()}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, iss.Token); err != nil {
			b.Fatal(err)
		}
	}
}
