package server

import (
	"net/http"
	"net/url"
	"strings"
)

// originPolicy decides whether a browser's Origin may open a WebSocket or call the API.
type originPolicy struct {
	allowed map[string]bool
	any     bool // "*", accepted only with --dev
}

func newOriginPolicy(list []string) originPolicy {
	p := originPolicy{allowed: map[string]bool{}}
	for _, o := range list {
		if o == "*" {
			p.any = true
			continue
		}
		p.allowed[strings.ToLower(o)] = true
	}
	return p
}

// check reports whether r's Origin is acceptable: absent (not a browser), exactly listed,
// or the gateway's own origin (its dashboard). "null" (sandboxed frames, file: pages) and
// anything merely resembling a listed origin are refused: the comparison is exact.
func (p originPolicy) check(r *http.Request) bool {
	vals := r.Header.Values("Origin")
	if len(vals) == 0 {
		return true
	}
	if len(vals) > 1 {
		return false
	}
	o := strings.ToLower(vals[0])
	if o == "null" || o == "" {
		return false
	}
	if p.any || p.allowed[o] {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || u.User != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}
