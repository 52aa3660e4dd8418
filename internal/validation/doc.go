// Package validation checks every request a client or an admin can send — WebSocket messages
// and HTTP API bodies — in one place, and reports every failing field by its wire name.
package validation
