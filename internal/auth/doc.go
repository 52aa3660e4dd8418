// Package auth turns bearer tokens into a Principal: strict JWT verification against keys bound
// to issuers, token extraction from a handshake, flowgate's own Ed25519 issuer and revocation.
package auth
