// Package server is flowgate's HTTP surface: the public listener (WebSocket handshake, admin
// API, health, JWKS, dashboard) and the ops listener, with their middleware, in one place.
package server
