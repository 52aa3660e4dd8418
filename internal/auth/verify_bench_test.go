package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flowgate/flowgate/internal/auth"
)

// BenchmarkVerify is the handshake's token check per algorithm: parse, signature, claims,
// principal. Compare runs with benchstat (go test -bench Verify -benchmem -count 10).
// The handshake target is ≥ 5,000/s on two cores, so one verification must stay far below
// 200 µs of CPU.
func BenchmarkVerify(b *testing.B) {
	hsKey := []byte("0123456789abcdef0123456789abcdef-bench")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		alg    string
		method jwt.SigningMethod
		sign   any
		verify any
	}{
		{auth.AlgHS256, jwt.SigningMethodHS256, hsKey, hsKey},
		{auth.AlgRS256, jwt.SigningMethodRS256, rsaKey, &rsaKey.PublicKey},
		{auth.AlgES256, jwt.SigningMethodES256, ecKey, &ecKey.PublicKey},
		{auth.AlgEdDSA, jwt.SigningMethodEdDSA, edKey, edPub},
	}
	for _, c := range cases {
		b.Run(c.alg, func(b *testing.B) {
			v, err := auth.NewVerifier(auth.VerifierOptions{
				Issuers: []auth.IssuerConfig{{Issuer: "https://issuer.example/", Audience: "flowgate",
					Keys: []auth.VerificationKey{{KID: "k1", Alg: c.alg, Key: c.verify}}}},
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
	s, err := auth.NewSigner(auth.SignerOptions{Issuer: "flowgate", Audience: "flowgate", Key: key})
	if err != nil {
		b.Fatal(err)
	}
	iss, err := s.Issue(auth.IssueRequest{Tenant: "demo", Subject: "load-1", Permissions: []string{auth.PermSwarmExecute}})
	if err != nil {
		b.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.VerifierOptions{Issuers: []auth.IssuerConfig{s.IssuerConfig()}})
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
