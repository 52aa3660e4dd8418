// Package tenantid is the one definition of a valid tenant id (DESIGN §8), shared by every
// layer that checks one: tokens, the store, validation, secrets and the audit log.
package tenantid

// Rule describes the rule for messages and docs.
const Rule = "^[a-z0-9][a-z0-9-]{1,62}$"

// MaxLen is the longest valid id.
const MaxLen = 63

// Valid reports whether id matches Rule: 2-63 characters of lower-case letters, digits and
// dashes, not starting with a dash. (Hand-written: a bounded-repetition regexp compiles to a
// program with one state per repetition, which costs every process that links it.)
func Valid(id string) bool {
	if len(id) < 2 || len(id) > MaxLen || id[0] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
