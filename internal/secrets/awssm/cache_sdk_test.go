package awssm_test

import (
	"errors"
	"github.com/flowgate/flowgate/internal/clocktest"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/secrets/awssm/smtest"
	"github.com/flowgate/flowgate/internal/secrets/secretstest"
)

func newSDKCache(t *testing.T, f *fixture) (*secrets.Cache, *clocktest.Clock) {
	t.Helper()
	clk := clocktest.New(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	c, err := secrets.NewCache(secrets.CacheOptions{
		Provider: f.p, TTL: 5 * time.Minute, MaxStale: 15 * time.Minute, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

func TestCacheSDKConcurrentCallsOneFetch(t *testing.T) {
	f := newFixture(t, nil)
	c, _ := newSDKCache(t, f)
	f.srv.SetSecret(defaultID("acme"), keyA, nil)
	release := f.srv.Pause(smtest.OpGetSecretValue)

	const n = 100
	secretstest.Stampede(t, n, func() error {
		k, err := c.APIKey(t.Context(), "acme", "")
		if err == nil && k != keyA {
			err = errors.New("wrong key")
		}
		return err
	}, release)
	if got := f.srv.Count(smtest.OpGetSecretValue); got != 1 {
		t.Fatalf("%d concurrent APIKey calls sent %d GetSecretValue; want exactly 1", n, got)
	}
}

func TestCacheSDKRotation(t *testing.T) {
	f := newFixture(t, nil)
	c, clk := newSDKCache(t, f)
	ctx := t.Context()
	f.srv.SetSecret(defaultID("acme"), keyA, nil)
	if k, err := c.APIKey(ctx, "acme", ""); err != nil || k != keyA {
		t.Fatalf("APIKey = %q, %v", k, err)
	}

	// Rotated out of band: invisible until TTL expiry.
	f.srv.SetSecret(defaultID("acme"), keyB, nil)
	if k, _ := c.APIKey(ctx, "acme", ""); k != keyA {
		t.Fatalf("within TTL got the new key already")
	}
	clk.Advance(5 * time.Minute)
	if k, err := c.APIKey(ctx, "acme", ""); err != nil || k != keyB {
		t.Fatalf("after TTL: %q, %v; want the rotated key", k, err)
	}

	// Rotated again: Invalidate (what a key set or a cluster message does) shows it at once.
	f.srv.SetSecret(defaultID("acme"), keyA, nil)
	c.Invalidate("acme")
	if k, err := c.APIKey(ctx, "acme", ""); err != nil || k != keyA {
		t.Fatalf("after Invalidate: %q, %v", k, err)
	}
	if n := f.srv.Count(smtest.OpGetSecretValue); n != 3 {
		t.Fatalf("GetSecretValue calls = %d; want 3", n)
	}

	// Set through the cache invalidates too.
	if _, err := c.Set(ctx, "acme", "", keyB); err != nil {
		t.Fatal(err)
	}
	if k, err := c.APIKey(ctx, "acme", ""); err != nil || k != keyB {
		t.Fatalf("after Set: %q, %v", k, err)
	}
	if err := c.Delete(ctx, "acme", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.APIKey(ctx, "acme", ""); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("after Delete: %v; want ErrNotFound", err)
	}
}

func TestCacheSDKStaleBounded(t *testing.T) {
	f := newFixture(t, nil)
	c, clk := newSDKCache(t, f)
	ctx := t.Context()
	f.srv.SetSecret(defaultID("acme"), keyA, nil)
	if _, err := c.APIKey(ctx, "acme", ""); err != nil {
		t.Fatal(err)
	}
	f.srv.Fail(smtest.OpGetSecretValue, smtest.Throttle, 1000)

	clk.Advance(6 * time.Minute)
	if k, err := c.APIKey(ctx, "acme", ""); err != nil || k != keyA {
		t.Fatalf("refresh failed within max_stale: %q, %v; want the stale key", k, err)
	}
	if n := f.srv.Count(smtest.OpGetSecretValue); n != 1+3 {
		t.Fatalf("GetSecretValue calls = %d; want 1 + 3 bounded attempts", n)
	}
	clk.Advance(9 * time.Minute) // 15m after the fetch
	if _, err := c.APIKey(ctx, "acme", ""); !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("past max_stale: %v; want ErrUnavailable", err)
	}

	f.srv.Reset()
	f.srv.Fail(smtest.OpGetSecretValue, smtest.InternalError, 1000)
	if _, err := c.APIKey(ctx, "acme", ""); !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("5xx with nothing cached: %v; want ErrUnavailable", err)
	}
	f.srv.Reset()
	if k, err := c.APIKey(ctx, "acme", ""); err != nil || k != keyA {
		t.Fatalf("after recovery: %q, %v", k, err)
	}
}

func TestCacheSDKTenantIsolation(t *testing.T) {
	f := newFixture(t, nil)
	c, _ := newSDKCache(t, f)
	f.srv.SetSecret(defaultID("tenant-a"), keyA, nil)
	f.srv.SetSecret(defaultID("tenant-b"), keyB, nil)
	ka, err := c.APIKey(t.Context(), "tenant-a", "")
	if err != nil || ka != keyA {
		t.Fatalf("tenant-a: %q, %v", ka, err)
	}
	for _, r := range f.srv.Requests() {
		if r.SecretID != defaultID("tenant-a") {
			t.Fatalf("tenant-a's fetch requested %q", r.SecretID)
		}
	}
	if _, err := c.APIKey(t.Context(), "tenant-c", ""); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("tenant without a key: %v; want ErrNotFound (no fallback)", err)
	}
}
