package auth

import (
	"sync"
	"time"
)

// Revocations is the in-memory set of revoked token ids, consulted on every handshake and
// by the session sweep. Entries live until the token's own expiry, after which the token is
// refused anyway. The store holds the durable copy; this set is warmed from it at start and
// fed by the revoke API (and, in a cluster, by other replicas).
type Revocations struct {
	now func() time.Time

	mu sync.RWMutex
	m  map[string]time.Time // jti → token expiry
}

// NewRevocations returns an empty set.
func NewRevocations(now func() time.Time) *Revocations {
	if now == nil {
		now = time.Now
	}
	return &Revocations{now: now, m: map[string]time.Time{}}
}

// Add marks jti revoked until exp.
func (r *Revocations) Add(jti string, exp time.Time) {
	if jti == "" {
		return
	}
	r.mu.Lock()
	r.m[jti] = exp
	r.mu.Unlock()
}

// Revoked reports whether jti is revoked.
func (r *Revocations) Revoked(jti string) bool {
	r.mu.RLock()
	_, ok := r.m[jti]
	r.mu.RUnlock()
	return ok
}

// Prune forgets entries whose tokens have expired.
func (r *Revocations) Prune() {
	now := r.now()
	r.mu.Lock()
	for jti, exp := range r.m {
		if now.After(exp.Add(time.Minute)) { // past exp plus the largest leeway
			delete(r.m, jti)
		}
	}
	r.mu.Unlock()
}

// Len is the number of revoked tokens held.
func (r *Revocations) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.m)
}
