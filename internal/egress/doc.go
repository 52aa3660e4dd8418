// Package egress is the engines' only way out to the network: an HTTP proxy (CONNECT, and
// absolute-form forwarding for http:// URLs) that admits exactly engine.egress.allow.
package egress
