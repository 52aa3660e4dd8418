package auth

import (
	"errors"
	"sync"
	"time"
)

// AnyTenant scopes a revocation to every tenant: a platform admin's revocation. A tenant
// admin's revocation names its own tenant and refuses only that tenant's token with the jti,
// so one tenant can never revoke (deny service to) another tenant's tokens, even when jtis
// collide across issuers. Tenant ids never contain "*".
const AnyTenant = "*"

// MaxRevocationsPerTenant bounds the live revocations of one scope (a tenant, or AnyTenant):
// a tenant admin flooding revocations fills its own tenant's quota, not the process.
const MaxRevocationsPerTenant = 100_000

// revocationGrace keeps a revocation past the token's exp by the largest verification
// leeway, during which the token is still accepted.
const revocationGrace = time.Minute

// ErrTooManyRevocations is a revocation refused because its scope is at its bound.
var ErrTooManyRevocations = errors.New("auth: too many live revocations for this tenant")

// Revocations is the in-memory set of revoked tokens, by (tenant, jti), consulted on every
// handshake, API call and reauth and by the session sweep. Entries live until the token's own
// expiry (plus the leeway), after which the token is refused anyway. The store holds the
// durable copy; this set is warmed from it at start, fed by the revoke API and refreshed from
// the store so revocations made elsewhere (CLI, other replicas) apply.
type Revocations struct {
	now func() time.Time

	mu    sync.RWMutex
	m     map[revKey]time.Time // → token expiry
	count map[string]int       // live entries per scope
}

type revKey struct{ tenant, jti string }

// NewRevocations returns an empty set.
func NewRevocations(now func() time.Time) *Revocations {
	if now == nil {
		now = time.Now
	}
	return &Revocations{now: now, m: map[revKey]time.Time{}, count: map[string]int{}}
}

func scope(tenant string) string {
	if tenant == "" {
		return AnyTenant // an unscoped revocation errs on the side of refusing more
	}
	return tenant
}

// Add marks (tenant, jti) revoked until exp; tenant AnyTenant revokes jti in every tenant.
// Revoking again keeps the later expiry.
func (r *Revocations) Add(tenant, jti string, exp time.Time) error {
	if jti == "" {
		return nil
	}
	k := revKey{scope(tenant), jti}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.m[k]; ok {
		if exp.After(old) {
			r.m[k] = exp
		}
		return nil
	}
	if r.count[k.tenant] >= MaxRevocationsPerTenant {
		r.pruneLocked(r.now())
		if r.count[k.tenant] >= MaxRevocationsPerTenant {
			return ErrTooManyRevocations
		}
	}
	r.m[k] = exp
	r.count[k.tenant]++
	return nil
}

// Room reports whether tenant's scope can take one more revocation.
func (r *Revocations) Room(tenant string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.count[scope(tenant)] < MaxRevocationsPerTenant
}

// Revoked reports whether the token jti of tenant is revoked: by its own tenant's admin or
// platform-wide.
func (r *Revocations) Revoked(tenant, jti string) bool {
	if jti == "" {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.m[revKey{AnyTenant, jti}]; ok {
		return true
	}
	_, ok := r.m[revKey{scope(tenant), jti}]
	return ok
}

// Prune forgets entries whose tokens have expired.
func (r *Revocations) Prune() {
	r.mu.Lock()
	r.pruneLocked(r.now())
	r.mu.Unlock()
}

func (r *Revocations) pruneLocked(now time.Time) {
	for k, exp := range r.m {
		if now.After(exp.Add(revocationGrace)) {
			delete(r.m, k)
			if r.count[k.tenant]--; r.count[k.tenant] <= 0 {
				delete(r.count, k.tenant)
			}
		}
	}
}

// Len is the number of revoked tokens held.
func (r *Revocations) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.m)
}

// RevokedToken is a revoked token id as the store keeps it, until the token would have expired
// anyway. It is keyed by (Tenant, JTI); Tenant is a tenant id or AnyTenant.
type RevokedToken struct {
	JTI       string    `json:"jti"`
	Tenant    string    `json:"tenant"`
	ExpiresAt time.Time `json:"expiresAt"`
	RevokedAt time.Time `json:"revokedAt"`
	RevokedBy string    `json:"revokedBy,omitempty"`
}

// ErrInvalidRevocation is a revocation the store refuses (a malformed jti or scope); the
// store's errors match it.
var ErrInvalidRevocation = errors.New("invalid revocation")
