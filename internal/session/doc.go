// Package session runs one authenticated WebSocket connection: a reader that decodes,
// validates, authorizes and rate-limits client messages, and an on-demand writer that drains
// direct replies and task subscriptions under a bounded send queue.
package session
