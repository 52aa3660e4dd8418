// Package audit is the tamper-evident audit log: bounded records, canonical JSON, one SHA-256
// hash chain per tenant, group-committed appends, Ed25519-signed checkpoints, verify, query, prune.
package audit
