// Package local is the single-node secrets provider: tenant API keys encrypted with
// AES-256-GCM under a master key file and kept in the database (also used by --dev).
package local
