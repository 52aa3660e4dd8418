//go:build !unix

package main

// raiseFDLimit: there is no RLIMIT_NOFILE here; 0 means "unknown", and no check is made.
func raiseFDLimit() (soft, hard uint64, err error) { return 0, 0, nil }
