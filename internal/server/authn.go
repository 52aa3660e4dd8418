package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/clientip"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/tenant"
)

// authenticator says who is asking and whether they may: the one authentication sequence,
// the authorization of admin routes, and the audit records and metrics of their refusals.
// The WebSocket handshake, the HTTP API and the admin routes share one, so a credential is
// judged, and its refusal recorded and flood-limited, the same way on every surface.
type authenticator struct {
	log         *slog.Logger
	verifier    Verifier
	tickets     TicketStore // only the handshake presents tickets
	revocations *auth.Revocations
	tenants     Tenants
	audit       Auditor
	flood       *authFlood // nil: every auth.failure record is written
	ips         IPResolver
	origins     originPolicy
	queryTokens bool // the handshake may take a token from the query string
	metrics     metricsShim
}

func (a *authenticator) clientIP(r *http.Request) string {
	if a.ips == nil {
		return ""
	}
	ip := a.ips.IP(r)
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}

// clientBlock is the rate-limit key of a request's client: its IPv4 address, or its IPv6 /64.
func (a *authenticator) clientBlock(r *http.Request) string {
	if a.ips == nil {
		return "unknown"
	}
	ip := a.ips.IP(r)
	if !ip.IsValid() {
		return "unknown"
	}
	return clientip.Block(ip).String()
}

// surface is where a credential is presented. The authentication sequence is one; it differs
// between surfaces only where authn_test.go's table pins it.
type surface int

const (
	// surfaceHandshake is the WebSocket handshake: a token or a single-use ticket; a suspended
	// tenant is refused for every principal (its sessions are being closed).
	surfaceHandshake surface = iota
	// surfaceAPI is the HTTP API: a bearer token only; a platform admin whose own tenant is
	// suspended still passes (it must be able to resume it).
	surfaceAPI
)

// refusal is why a credential was refused, for the surface to answer and audit.
type refusal struct {
	status int
	code   string
	reason string          // auth.Reason*: the metric label and the audit reason
	p      *auth.Principal // set once the credential verified
	// unavailable: the tenant could not be read. Answered 503 and logged, not audited as an
	// authentication failure: the client did nothing wrong.
	unavailable bool
	cause       error
}

// detail is the client-safe message.
func (rf *refusal) detail() string {
	if rf.reason == auth.ReasonSuspended {
		return "the tenant is suspended"
	}
	return "authentication failed: " + rf.reason
}

// authenticateCredential is the one authentication sequence (DESIGN §5): verify the token (or
// redeem the ticket) → revocation → the tenant exists → the tenant is active.
func (a *authenticator) authenticateCredential(ctx context.Context, cred auth.Credential, s surface) (*auth.Principal, *refusal) {
	var (
		p   *auth.Principal
		err error
	)
	// Only the handshake extracts tickets (auth.FromRequest); the API reads the bearer header.
	if cred.Source == auth.SourceTicket {
		p, err = a.tickets.Redeem(cred.Value)
	} else {
		p, err = a.verifier.Verify(ctx, cred.Value)
	}
	if err != nil {
		return nil, &refusal{status: http.StatusUnauthorized, code: protocol.CodeUnauthorized, reason: auth.ReasonOf(err)}
	}
	if a.revocations.Revoked(p.Tenant, p.JTI) {
		return nil, &refusal{status: http.StatusUnauthorized, code: protocol.CodeUnauthorized, reason: auth.ReasonRevoked, p: p}
	}
	t, err := a.tenants.Get(ctx, p.Tenant)
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		return nil, &refusal{status: http.StatusUnauthorized, code: protocol.CodeUnauthorized, reason: auth.ReasonTenantUnknown, p: p}
	case err != nil:
		return nil, &refusal{status: http.StatusServiceUnavailable, code: protocol.CodeInternal, p: p, unavailable: true, cause: err}
	case !tenant.Active(t) && !(s == surfaceAPI && p.Has(auth.PermPlatformAdmin)):
		return nil, &refusal{status: http.StatusForbidden, code: protocol.CodeTenantSuspended, reason: auth.ReasonSuspended, p: p}
	}
	return p, nil
}
