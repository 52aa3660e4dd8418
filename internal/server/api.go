package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
)

// authenticate checks the bearer token of an API request. API calls take the
// Authorization header only: never a query string, never a ticket.
func (a *authenticator) authenticate(w http.ResponseWriter, r *http.Request) (*auth.Principal, bool) {
	deny := func(status int, code, reason, detail string, p *auth.Principal) {
		a.metrics.authFailure(reason)
		rec := audit.Record{Action: audit.ActionAuthFailure, Outcome: audit.OutcomeDenied, Reason: reason,
			Source: a.source(r), RequestID: requestIDFrom(r.Context()), Details: map[string]any{"path": r.URL.Path}}
		if p != nil {
			rec.Tenant, rec.Actor = p.Tenant, audit.Actor{Sub: p.Subject, TokenFP: p.TokenFP}
		}
		a.recordAuthFailure(context.WithoutCancel(r.Context()), a.clientBlock(r), rec)
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="flowgate"`)
		}
		writeAuthProblem(w, r, status, code, reason, detail, 0)
	}
	if !a.origins.check(r) {
		deny(http.StatusForbidden, protocol.CodeForbidden, "origin_not_allowed", "authentication failed: origin_not_allowed", nil)
		return nil, false
	}
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		deny(http.StatusUnauthorized, protocol.CodeUnauthorized, auth.ReasonMissing, "authentication failed: "+auth.ReasonMissing, nil)
		return nil, false
	}
	p, rf := a.authenticateCredential(r.Context(), auth.Credential{Source: auth.SourceHeader, Value: strings.TrimSpace(tok)}, surfaceAPI)
	if rf != nil {
		if rf.unavailable {
			a.log.Error("tenant lookup failed", "tenant", rf.p.Tenant, "err", rf.cause)
			writeProblem(w, r, rf.status, rf.code, "temporarily unavailable")
			return nil, false
		}
		deny(rf.status, rf.code, rf.reason, rf.detail(), rf.p)
		return nil, false
	}
	return p, true
}

func (a *authenticator) source(r *http.Request) audit.Source {
	return audit.Source{IP: a.clientIP(r), Origin: trimHeader(r.Header.Get("Origin"), 256), UserAgent: trimHeader(r.UserAgent(), 256)}
}

// decodeJSON reads a JSON request body strictly: a JSON content type, at most maxBody
// bytes, one object, no unknown fields, nothing after it.
func (a *adminAPI) decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			writeProblem(w, r, http.StatusUnsupportedMediaType, protocol.CodeInvalidMessage, "the body must be application/json")
			return false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, r, http.StatusRequestEntityTooLarge, protocol.CodeInvalidMessage, fmt.Sprintf("the body is larger than %d bytes", mbe.Limit))
			return false
		}
		writeProblem(w, r, http.StatusBadRequest, protocol.CodeInvalidMessage, "the body could not be read")
		return false
	}
	if err := checkDuplicateKeys(body); err != nil {
		writeProblem(w, r, http.StatusBadRequest, protocol.CodeInvalidMessage, err.Error())
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeProblem(w, r, http.StatusBadRequest, protocol.CodeInvalidMessage, jsonProblem(err))
		return false
	}
	if dec.More() {
		writeProblem(w, r, http.StatusBadRequest, protocol.CodeInvalidMessage, "the body must hold exactly one JSON object")
		return false
	}
	return true
}

// checkDuplicateKeys refuses objects that repeat a key: parsers disagree on which copy
// wins, which is how a value slips past one check and into another component.
func checkDuplicateKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	type scope struct {
		seen map[string]bool
		key  bool
	}
	var stack []*scope
	for depth := 0; ; {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errors.New("the body is not valid JSON")
		}
		var top *scope
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok {
		case json.Delim('{'):
			depth++
			if depth > 16 {
				return errors.New("the body is nested too deeply")
			}
			stack = append(stack, &scope{seen: map[string]bool{}, key: true})
			continue
		case json.Delim('['):
			depth++
			if depth > 16 {
				return errors.New("the body is nested too deeply")
			}
			stack = append(stack, &scope{})
			continue
		case json.Delim('}'), json.Delim(']'):
			depth--
			stack = stack[:len(stack)-1]
		default:
			if top != nil && top.seen != nil && top.key {
				k, _ := tok.(string)
				if top.seen[protocol.FoldKey(k)] {
					return fmt.Errorf("duplicate key %q (keys that differ only in case are the same key)", k)
				}
				top.seen[protocol.FoldKey(k)] = true
				top.key = false
				continue
			}
		}
		if len(stack) > 0 && stack[len(stack)-1].seen != nil {
			stack[len(stack)-1].key = true
		}
	}
}

func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("field %q has the wrong JSON type", te.Field)
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return "unknown field " + strings.TrimPrefix(msg, "json: unknown field ")
	}
	return "the body is not valid JSON"
}

// handleTicket exchanges a bearer token for a single-use WebSocket ticket (DESIGN §4).
func handleTicket(authn *authenticator, tickets TicketStore, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := authn.authenticate(w, r)
		if !ok {
			return
		}
		t, exp, err := tickets.Issue(p)
		switch {
		case errors.Is(err, auth.ErrTooManyTickets):
			// This principal's (or, rarely, everyone's) outstanding tickets: they expire
			// within the ticket TTL.
			writeProblemExt(w, r, http.StatusTooManyRequests, protocol.CodeRateLimited, "too many outstanding tickets", time.Second, nil)
			return
		case err != nil:
			log.Error("ticket not issued", "err", err)
			writeProblemExt(w, r, http.StatusServiceUnavailable, protocol.CodeInternal, "tickets are unavailable", time.Second, nil)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"ticket": t, "expiresAt": protocol.Time(exp)})
	})
}
