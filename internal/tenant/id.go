package tenant

// IDRule describes the tenant id rule (DESIGN §8) for messages and docs. ValidID is its one
// implementation, shared by every layer that checks an id: tokens, the store, validation,
// secrets and the audit log.
const IDRule = "^[a-z0-9][a-z0-9-]{1,62}$"

// MaxIDLen is the longest valid id.
const MaxIDLen = 63

// ValidID reports whether id matches IDRule: 2-63 characters of lower-case letters, digits
// and dashes, not starting with a dash. (Hand-written: a bounded-repetition regexp compiles to
// a program with one state per repetition, which costs every process that links it.)
func ValidID(id string) bool {
	if len(id) < 2 || len(id) > MaxIDLen || id[0] == '-' {
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
