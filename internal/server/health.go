package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/flowgate/flowgate/internal/auth"
)

// handleHealth is liveness: the process serves HTTP.
func handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// handleReady is readiness: not draining, and dependencies answer within a second. ready and
// draining may be nil (always ready, never draining).
func handleReady(ready func(ctx context.Context) error, draining func() bool, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining != nil && draining() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
			return
		}
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), time.Second)
			defer cancel()
			if err := ready(ctx); err != nil {
				log.Warn("not ready", "err", err)
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "a dependency is not answering"})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

// handleJWKS publishes flowgate's own verification keys; signer is nil when flowgate issues
// no tokens.
func handleJWKS(signer *auth.Signer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if signer == nil {
			writeJSON(w, http.StatusOK, map[string]any{"keys": []any{}})
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(signer.JWKS())
	})
}
