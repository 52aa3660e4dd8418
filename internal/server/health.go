package server

import (
	"context"
	"net/http"
	"time"
)

// handleHealth is liveness: the process serves HTTP.
func handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// handleReady is readiness: not draining, and dependencies answer within a second.
func handleReady(d *Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.Draining != nil && d.Draining() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
			return
		}
		if d.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), time.Second)
			defer cancel()
			if err := d.Ready(ctx); err != nil {
				d.Logger.Warn("not ready", "err", err)
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "a dependency is not answering"})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

// handleJWKS publishes flowgate's own verification keys.
func handleJWKS(d *Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.Signer == nil {
			writeJSON(w, http.StatusOK, map[string]any{"keys": []any{}})
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(d.Signer.JWKS())
	})
}
