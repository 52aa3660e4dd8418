// Package metrics is flowgate's Prometheus instrumentation: one registry the server owns, the
// adapters the task, session, server, secrets and audit packages report through, and /metrics.
package metrics
