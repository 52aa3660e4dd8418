package store_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

func TestRevokedTokens(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.Open(t, driver)
		now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

		if ok, err := db.IsRevoked(ctx, "acme", "j1"); ok || err != nil {
			t.Fatalf("IsRevoked before = %v, %v", ok, err)
		}
		r1 := store.RevokedToken{JTI: "j1", Tenant: "acme", ExpiresAt: now.Add(time.Hour), RevokedAt: now, RevokedBy: "admin"}
		for range 2 { // idempotent
			if err := db.RevokeToken(ctx, r1); err != nil {
				t.Fatalf("revoke: %v", err)
			}
		}
		// A second revocation of the same jti keeps the first record.
		again := r1
		again.RevokedBy, again.RevokedAt = "someone-else", now.Add(time.Minute)
		if err := db.RevokeToken(ctx, again); err != nil {
			t.Fatal(err)
		}
		if err := db.RevokeToken(ctx, store.RevokedToken{JTI: "j2", Tenant: "acme", ExpiresAt: now.Add(-time.Minute), RevokedAt: now.Add(time.Second)}); err != nil {
			t.Fatal(err)
		}
		if err := db.RevokeToken(ctx, store.RevokedToken{JTI: "j3", Tenant: "beta", ExpiresAt: now.Add(2 * time.Hour), RevokedAt: now.Add(2 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []store.RevokedToken{{}, {JTI: "x"}, {JTI: "x", ExpiresAt: now}, {JTI: "x", Tenant: "../x", ExpiresAt: now}} {
			if err := db.RevokeToken(ctx, bad); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("revoke %+v = %v, want ErrInvalid", bad, err)
			}
		}
		if ok, err := db.IsRevoked(ctx, "acme", "j1"); !ok || err != nil {
			t.Fatalf("IsRevoked(j1) = %v, %v", ok, err)
		}
		// Scoped by tenant: acme's revocation of j1 says nothing about beta's j1.
		if ok, err := db.IsRevoked(ctx, "beta", "j1"); ok || err != nil {
			t.Fatalf("IsRevoked(beta, j1) = %v, %v; want false", ok, err)
		}

		all, err := db.ListRevoked(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		var jtis []string
		for _, r := range all {
			jtis = append(jtis, r.JTI)
		}
		if !slices.Equal(jtis, []string{"j1", "j2", "j3"}) {
			t.Fatalf("ListRevoked(all) = %v", jtis)
		}
		if all[0] != r1 {
			t.Fatalf("first record = %+v, want %+v", all[0], r1)
		}
		recent, err := db.ListRevoked(ctx, now.Add(time.Second))
		if err != nil || len(recent) != 2 || recent[0].JTI != "j2" {
			t.Fatalf("ListRevoked(since) = %+v, %v", recent, err)
		}

		n, err := db.PruneRevoked(ctx, now)
		if err != nil || n != 1 {
			t.Fatalf("prune = %d, %v; want 1", n, err)
		}
		if ok, _ := db.IsRevoked(ctx, "acme", "j2"); ok {
			t.Fatal("expired revocation survived prune")
		}
		if ok, _ := db.IsRevoked(ctx, "acme", "j1"); !ok {
			t.Fatal("live revocation pruned")
		}
	})
}

// TestRevokedTokensScope: a tenant's revocation of a jti does not block another tenant's (or
// the platform's) revocation of the same jti, and a platform revocation covers every tenant.
func TestRevokedTokensScope(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.Open(t, driver)
		now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		for i, r := range []store.RevokedToken{
			{JTI: "shared", Tenant: "mallory", ExpiresAt: now.Add(time.Hour), RevokedAt: now},
			{JTI: "shared", Tenant: "acme", ExpiresAt: now.Add(time.Hour), RevokedAt: now.Add(time.Second)},
			{JTI: "global", Tenant: store.AnyTenant, ExpiresAt: now.Add(time.Hour), RevokedAt: now.Add(2 * time.Second)},
		} {
			if err := db.RevokeToken(ctx, r); err != nil {
				t.Fatalf("revoke %d: %v", i, err)
			}
		}
		for _, tc := range []struct {
			tenant, jti string
			want        bool
		}{
			{"acme", "shared", true}, {"mallory", "shared", true}, {"beta", "shared", false},
			{"acme", "global", true}, {"beta", "global", true},
		} {
			if ok, err := db.IsRevoked(ctx, tc.tenant, tc.jti); ok != tc.want || err != nil {
				t.Errorf("IsRevoked(%s, %s) = %v, %v; want %v", tc.tenant, tc.jti, ok, err, tc.want)
			}
		}
		all, err := db.ListRevoked(ctx, time.Time{})
		if err != nil || len(all) != 3 || all[1].Tenant != "acme" || all[2].Tenant != store.AnyTenant {
			t.Fatalf("ListRevoked = %+v, %v", all, err)
		}
	})
}
