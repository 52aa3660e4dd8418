package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"
)

// Permissions (DESIGN §5). Owners always see and cancel their own tasks; nothing crosses
// tenants except PermPlatformAdmin.
const (
	PermSwarmExecute  = "swarm:execute"
	PermTaskAdmin     = "task:admin"
	PermTenantAdmin   = "tenant:admin"
	PermAuditRead     = "audit:read"
	PermPlatformAdmin = "platform:admin"
)

// AllPermissions lists every permission in a stable order.
func AllPermissions() []string {
	return []string{PermSwarmExecute, PermTaskAdmin, PermTenantAdmin, PermAuditRead, PermPlatformAdmin}
}

// KnownPermission reports whether p is a permission flowgate understands.
func KnownPermission(p string) bool {
	return slices.Contains(AllPermissions(), p)
}

// Principal is who a verified token speaks for.
type Principal struct {
	Tenant      string
	Subject     string
	Permissions []string // known permissions only, sorted, no duplicates
	JTI         string
	Issuer      string
	ExpiresAt   time.Time
	// TokenFP identifies the token in logs and audit records without revealing it.
	TokenFP string
}

// Has reports whether the principal holds permission p.
func (p *Principal) Has(perm string) bool {
	_, found := slices.BinarySearch(p.Permissions, perm)
	return found
}

// SameUser reports whether q is the same tenant and subject as p.
func (p *Principal) SameUser(q *Principal) bool {
	return p.Tenant == q.Tenant && p.Subject == q.Subject
}

// CanAccessTenant reports whether p may act on tenant's resources at all.
func (p *Principal) CanAccessTenant(tenant string) bool {
	return p.Tenant == tenant || p.Has(PermPlatformAdmin)
}

// Fingerprint names a token without revealing it: "sha256:" and the first 12 hex digits of
// its SHA-256. Tokens carry a signature, so the prefix cannot be inverted.
func Fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

func normalizePermissions(perms []string) []string {
	out := make([]string, 0, len(perms))
	for _, p := range perms {
		if KnownPermission(p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
