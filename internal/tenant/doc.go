// Package tenant is what a tenant is (its id rule, status and limits) and answers "does this
// tenant exist, is it active" on the hot path, from a small cache in front of the store.
package tenant
