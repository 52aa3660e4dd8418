package server

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/tenant"
)

// mapTenants is a tenant directory in memory; "broken" cannot be read.
type mapTenants map[string]string // id → status

func (m mapTenants) Get(_ context.Context, id string) (store.Tenant, error) {
	if id == "broken" {
		return store.Tenant{}, errors.New("database is down")
	}
	st, ok := m[id]
	if !ok {
		return store.Tenant{}, tenant.ErrNotFound
	}
	return store.Tenant{ID: id, Status: st}, nil
}

// TestAuthenticationSequence pins the one sequence (verify or redeem → revocation → tenant →
// status) on both surfaces, and every place where they are meant to differ: only the
// handshake redeems tickets (the API never extracts one), and only the API lets a platform
// admin of a suspended tenant through.
func TestAuthenticationSequence(t *testing.T) {
	signer, verifier := testSigner(t)
	a := &authenticator{
		verifier: verifier, tickets: auth.NewTickets(0, 0, nil), revocations: auth.NewRevocations(nil),
		tenants: mapTenants{"acme": store.TenantActive, "frozen": store.TenantSuspended, "broken": store.TenantActive},
	}
	mint := func(tenantID string, perms ...string) (string, string) {
		t.Helper()
		iss, err := signer.Issue(auth.IssueRequest{Tenant: tenantID, Subject: "u-" + tenantID, Permissions: perms, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return iss.Token, iss.JTI
	}
	user, _ := mint("acme", auth.PermSwarmExecute)
	revoked, revokedJTI := mint("acme", auth.PermSwarmExecute)
	if err := a.revocations.Add("acme", revokedJTI, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ghost, _ := mint("ghost", auth.PermSwarmExecute)
	frozenUser, _ := mint("frozen", auth.PermSwarmExecute)
	frozenAdmin, _ := mint("frozen", auth.PermPlatformAdmin)
	broken, _ := mint("broken", auth.PermSwarmExecute)
	ticket := func() string {
		p, err := verifier.Verify(context.Background(), user)
		if err != nil {
			t.Fatal(err)
		}
		tk, _, err := a.tickets.Issue(p)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}

	type want struct {
		status int // 0: accepted
		code   string
		reason string
	}
	ok := want{}
	for _, tc := range []struct {
		name      string
		cred      func() auth.Credential
		handshake want
		api       want
	}{
		{"valid token", func() auth.Credential { return auth.Credential{Source: auth.SourceHeader, Value: user} }, ok, ok},
		{"garbage", func() auth.Credential { return auth.Credential{Source: auth.SourceHeader, Value: "not.a.jwt"} },
			want{401, protocol.CodeUnauthorized, auth.ReasonMalformed}, want{401, protocol.CodeUnauthorized, auth.ReasonMalformed}},
		{"revoked", func() auth.Credential { return auth.Credential{Source: auth.SourceHeader, Value: revoked} },
			want{401, protocol.CodeUnauthorized, auth.ReasonRevoked}, want{401, protocol.CodeUnauthorized, auth.ReasonRevoked}},
		{"unknown tenant", func() auth.Credential { return auth.Credential{Source: auth.SourceHeader, Value: ghost} },
			want{401, protocol.CodeUnauthorized, auth.ReasonTenantUnknown}, want{401, protocol.CodeUnauthorized, auth.ReasonTenantUnknown}},
		{"suspended tenant", func() auth.Credential { return auth.Credential{Source: auth.SourceHeader, Value: frozenUser} },
			want{403, protocol.CodeTenantSuspended, auth.ReasonSuspended}, want{403, protocol.CodeTenantSuspended, auth.ReasonSuspended}},
		// Intended difference: a platform admin may still use the API to resume its tenant;
		// its sessions are closed like everyone's.
		{"platform admin of a suspended tenant", func() auth.Credential { return auth.Credential{Source: auth.SourceHeader, Value: frozenAdmin} },
			want{403, protocol.CodeTenantSuspended, auth.ReasonSuspended}, ok},
		{"tenant store down", func() auth.Credential { return auth.Credential{Source: auth.SourceHeader, Value: broken} },
			want{503, protocol.CodeInternal, ""}, want{503, protocol.CodeInternal, ""}},
		// Intended difference: tickets are a handshake credential (the API only ever reads
		// the bearer header, so it never sees one); a ticket works once.
		{"ticket", func() auth.Credential { return auth.Credential{Source: auth.SourceTicket, Value: ticket()} }, ok, ok},
	} {
		for _, s := range []struct {
			surface surface
			want    want
		}{{surfaceHandshake, tc.handshake}, {surfaceAPI, tc.api}} {
			name := map[surface]string{surfaceHandshake: "handshake", surfaceAPI: "api"}[s.surface]
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				p, rf := a.authenticateCredential(context.Background(), tc.cred(), s.surface)
				var got want
				if rf != nil {
					got = want{rf.status, rf.code, rf.reason}
					if rf.unavailable != (rf.status == http.StatusServiceUnavailable) {
						t.Fatalf("unavailable = %v for status %d", rf.unavailable, rf.status)
					}
				} else if p == nil {
					t.Fatal("accepted without a principal")
				}
				if got != s.want {
					t.Fatalf("got %+v; want %+v", got, s.want)
				}
			})
		}
	}
}
