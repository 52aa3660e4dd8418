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
		p.allowed[canonicalOrigin(strings.ToLower(o))] = true
	}
	return p
}

// canonicalOrigin drops a default port, as browsers do when they send Origin, so that a
// configured "https://app.example.com:443" matches what the browser says. Nothing else is
// rewritten: the comparison stays exact on scheme, host and port.
func canonicalOrigin(o string) string {
	if s, ok := strings.CutSuffix(o, ":443"); ok && strings.HasPrefix(o, "https://") {
		return s
	}
	if s, ok := strings.CutSuffix(o, ":80"); ok && strings.HasPrefix(o, "http://") {
		return s
	}
	return o
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
	if p.any || p.allowed[canonicalOrigin(o)] {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || u.User != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}
