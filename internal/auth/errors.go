package auth

import "errors"

// Reasons a token is refused. They are safe to show a client, to use as a metric label
// (a fixed set) and to write in an audit record.
const (
	ReasonMissing        = "missing_token"
	ReasonConflict       = "conflicting_tokens"
	ReasonTooLong        = "token_too_long"
	ReasonMalformed      = "malformed_token"
	ReasonBadHeader      = "unsupported_header"
	ReasonUnknownIssuer  = "unknown_issuer"
	ReasonUnknownKey     = "unknown_key"
	ReasonAlgorithm      = "algorithm_not_allowed"
	ReasonSignature      = "bad_signature"
	ReasonExpired        = "token_expired"
	ReasonNotYetValid    = "token_not_yet_valid"
	ReasonIssuedInFuture = "issued_in_future"
	ReasonMissingExp     = "missing_exp"
	ReasonAudience       = "bad_audience"
	ReasonIssuer         = "bad_issuer"
	ReasonClaims         = "bad_claims"
	ReasonTenant         = "missing_tenant"
	ReasonSubject        = "missing_subject"
	// ReasonTenantNotAllowed: the issuer may not speak for the token's tenant
	// (auth.issuers[].tenants).
	ReasonTenantNotAllowed = "tenant_not_allowed"
	// ReasonLifetime: exp lies further from iat (or from now) than auth.max_token_lifetime.
	ReasonLifetime      = "lifetime_too_long"
	ReasonRevoked       = "token_revoked"
	ReasonQueryDisabled = "query_token_disabled"
	ReasonTicket        = "bad_ticket"
	ReasonTenantUnknown = "unknown_tenant"
	ReasonSuspended     = "tenant_suspended"
)

// Error is a refused token. Reason is one of the Reason constants; the wrapped error has the
// library's detail for the log, never the token.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "auth: " + e.Reason + ": " + e.Err.Error()
	}
	return "auth: " + e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

func fail(reason string, err error) error { return &Error{Reason: reason, Err: err} }

// ReasonOf extracts the refusal reason of err, or ReasonMalformed for anything else.
func ReasonOf(err error) string {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return ReasonMalformed
}
