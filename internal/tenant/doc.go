// Package tenant answers "does this tenant exist, is it active, what are its limits" on the
// hot path, from a small expiring cache in front of the store, invalidated on every change.
package tenant
