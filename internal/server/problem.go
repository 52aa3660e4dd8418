package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// problem is an RFC 9457 problem+json body with flowgate's error code.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	// Reason says why a credential was refused (auth.Reason*: token_expired,
	// origin_not_allowed, …), so a client can tell an expired token from a bad one.
	Reason       string            `json:"reason,omitempty"`
	Detail       string            `json:"detail,omitempty"`
	RequestID    string            `json:"requestId,omitempty"`
	RetryAfterMs int64             `json:"retryAfterMs,omitempty"`
	Fields       map[string]string `json:"fields,omitempty"`
}

// writeProblem answers with a problem+json body. detail must be safe for the client: it is
// never an internal error's text.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, code, detail string) {
	writeProblemExt(w, r, status, code, detail, 0, nil)
}

func writeProblemExt(w http.ResponseWriter, r *http.Request, status int, code, detail string, retryAfter time.Duration, fields map[string]string) {
	writeProblemBody(w, r, status, code, "", detail, retryAfter, fields)
}

// writeAuthProblem answers a refused credential with its reason.
func writeAuthProblem(w http.ResponseWriter, r *http.Request, status int, code, reason, detail string, retryAfter time.Duration) {
	writeProblemBody(w, r, status, code, reason, detail, retryAfter, nil)
}

func writeProblemBody(w http.ResponseWriter, r *http.Request, status int, code, reason, detail string, retryAfter time.Duration, fields map[string]string) {
	p := problem{
		Reason:    reason,
		Type:      "https://flowgate.dev/errors/" + code,
		Title:     http.StatusText(status),
		Status:    status,
		Code:      code,
		Detail:    detail,
		RequestID: requestIDFrom(r.Context()),
		Fields:    fields,
	}
	if retryAfter > 0 {
		p.RetryAfterMs = ceilMillis(retryAfter)
		w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ceilMillis rounds up, so a client that waits retryAfterMs is never early.
func ceilMillis(d time.Duration) int64 {
	return max(1, int64((d+time.Millisecond-1)/time.Millisecond))
}
