// Package client is a Go client of the flowgate.v1 WebSocket protocol, used by the
// `flowgate swarm` command, the load tool and the end-to-end tests.
package client
