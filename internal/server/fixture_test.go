package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
)

// testSigner returns a signer with a fresh Ed25519 key (issuer and audience "flowgate") and
// a verifier that trusts it.
func testSigner(t *testing.T) (*auth.Signer, *auth.Verifier) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := auth.NewSigner(auth.SignerOptions{Issuer: "flowgate", Audience: "flowgate", Key: key,
		TenantClaim: "tenant", DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.VerifierOptions{Issuers: []auth.IssuerConfig{signer.IssuerConfig()}})
	if err != nil {
		t.Fatal(err)
	}
	return signer, verifier
}

// testRecorder returns an audit recorder over storage without checkpoints, closed at cleanup.
func testRecorder(t *testing.T, storage audit.Storage, log *slog.Logger) *audit.Recorder {
	t.Helper()
	rec, err := audit.NewRecorder(audit.Options{Storage: storage, CheckpointInterval: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rec.Close(context.WithoutCancel(t.Context())) })
	return rec
}
