package auth

import (
	"errors"
	"net/http"
	"strings"
)

// Where a handshake's credential came from.
const (
	SourceHeader      = "header"
	SourceSubprotocol = "subprotocol"
	SourceTicket      = "ticket"
	SourceQuery       = "query"
)

// Credential is what a handshake presented: a token or a ticket, and where it was found.
type Credential struct {
	Value  string
	Source string
}

// ErrConflictingCredentials is two different credentials in one request (HTTP 400).
var ErrConflictingCredentials = errors.New("auth: request carries two different credentials")

// FromRequest finds the credential of a request, first found wins in DESIGN §4's order:
// Authorization: Bearer, Sec-WebSocket-Protocol flowgate.bearer.<jwt>, ?ticket=, ?token=.
// Two different values are refused rather than guessed between. A query token when
// allowQuery is false is reported as ReasonQueryDisabled so the client learns why.
func FromRequest(r *http.Request, subprotocolPrefix string, allowQuery bool) (Credential, error) {
	var found []Credential
	if h := r.Header.Values("Authorization"); len(h) > 0 {
		if len(h) > 1 {
			return Credential{}, ErrConflictingCredentials
		}
		scheme, tok, ok := strings.Cut(h[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return Credential{}, fail(ReasonMalformed, errors.New("authorization header is not a bearer token"))
		}
		found = append(found, Credential{Value: strings.TrimSpace(tok), Source: SourceHeader})
	}
	for _, p := range subprotocols(r) {
		if tok, ok := strings.CutPrefix(p, subprotocolPrefix); ok {
			found = append(found, Credential{Value: tok, Source: SourceSubprotocol})
		}
	}
	q := r.URL.Query()
	for _, t := range q["ticket"] {
		found = append(found, Credential{Value: t, Source: SourceTicket})
	}
	queryTokens := q["token"]
	if len(queryTokens) > 0 && !allowQuery {
		if len(found) == 0 {
			return Credential{}, fail(ReasonQueryDisabled, nil)
		}
		queryTokens = nil // ignored, a better credential is present
	}
	for _, t := range queryTokens {
		found = append(found, Credential{Value: t, Source: SourceQuery})
	}
	if len(found) == 0 {
		return Credential{}, fail(ReasonMissing, nil)
	}
	for _, c := range found[1:] {
		if c.Value != found[0].Value || (c.Source == SourceTicket) != (found[0].Source == SourceTicket) {
			return Credential{}, ErrConflictingCredentials
		}
	}
	return found[0], nil
}

func subprotocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
