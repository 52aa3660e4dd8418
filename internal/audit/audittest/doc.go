// Package audittest tests audit.Storage implementations: an in-memory storage, a tampering
// interface and the shared conformance, concurrency and tamper-detection suite.
package audittest
