package auth

import (
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/clocktest"
	"testing"
	"time"
)

func TestRevocationsScopedByTenant(t *testing.T) {
	clock := clocktest.New(testNow)
	r := NewRevocations(clock.Now)
	exp := testNow.Add(time.Hour)
	if err := r.Add("acme", "j1", exp); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(AnyTenant, "j2", exp); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tenant, jti string
		want        bool
	}{
		{"acme", "j1", true},
		{"beta", "j1", false}, // acme's admin cannot revoke beta's token with the same jti
		{"acme", "j2", true},  // a platform revocation applies to every tenant
		{"beta", "j2", true},
		{"acme", "j3", false},
		{"acme", "", false},
	}
	for _, tt := range tests {
		if got := r.Revoked(tt.tenant, tt.jti); got != tt.want {
			t.Errorf("Revoked(%q, %q) = %v; want %v", tt.tenant, tt.jti, got, tt.want)
		}
	}
	// An unscoped revocation is treated as platform-wide, never as none.
	_ = r.Add("", "j4", exp)
	if !r.Revoked("beta", "j4") {
		t.Fatal("unscoped revocation ignored")
	}
	// Kept until exp plus the leeway, then pruned.
	clock.Advance(time.Hour + 30*time.Second)
	r.Prune()
	if !r.Revoked("acme", "j1") {
		t.Fatal("revocation pruned within the leeway after exp")
	}
	clock.Advance(time.Minute)
	r.Prune()
	if r.Revoked("acme", "j1") || r.Len() != 0 {
		t.Fatalf("expired revocations kept: %d", r.Len())
	}
}

func TestRevocationsBoundPerTenant(t *testing.T) {
	clock := clocktest.New(testNow)
	r := NewRevocations(clock.Now)
	exp := testNow.Add(time.Hour)
	for i := range MaxRevocationsPerTenant {
		if err := r.Add("acme", fmt.Sprint("j", i), exp); err != nil {
			t.Fatal(err)
		}
	}
	if r.Room("acme") {
		t.Fatal("room reported at the bound")
	}
	if err := r.Add("acme", "one-more", exp); !errors.Is(err, ErrTooManyRevocations) {
		t.Fatalf("over the bound: %v", err)
	}
	// Another tenant (and the platform) are unaffected by acme's flood.
	if !r.Room("beta") || r.Add("beta", "j0", exp) != nil || r.Add(AnyTenant, "j0", exp) != nil {
		t.Fatal("one tenant's revocations filled another's quota")
	}
	// Re-revoking an existing entry is not a new one.
	if err := r.Add("acme", "j1", exp.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Once acme's tokens expire, room frees up.
	clock.Advance(time.Hour + 2*time.Minute)
	if err := r.Add("acme", "one-more", clock.Now().Add(time.Hour)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if !r.Revoked("acme", "j1") { // kept: its later expiry won
		t.Fatal("re-revocation with a later exp did not extend the entry")
	}
}
