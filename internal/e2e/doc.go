// Package e2e holds the end-to-end tests: they build the real flowgate binary, start it on
// loopback ports and drive it from the outside with real WebSocket clients and /proc.
package e2e
