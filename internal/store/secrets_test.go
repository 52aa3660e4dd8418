package store_test

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

func TestSecrets(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.OpenWithTenants(t, driver, "acme")

		if _, err := db.GetSecret(ctx, "acme"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("get missing = %v", err)
		}
		if err := db.DeleteSecret(ctx, "acme"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("delete missing = %v", err)
		}
		rec := store.SecretRecord{Tenant: "acme", Ciphertext: []byte{0, 1, 2, 255}, Nonce: bytes.Repeat([]byte{7}, 12), Fingerprint: "sha256:0123456789ab", Version: 99}
		v1, err := db.PutSecret(ctx, rec)
		if err != nil {
			t.Fatalf("put: %v", err)
		}
		if v1.Version != 1 || !bytes.Equal(v1.Ciphertext, rec.Ciphertext) || !bytes.Equal(v1.Nonce, rec.Nonce) ||
			v1.Fingerprint != rec.Fingerprint || v1.CreatedAt.IsZero() || v1.CreatedAt.Location() != time.UTC {
			t.Fatalf("v1 = %+v", v1)
		}
		rec.Ciphertext, rec.Fingerprint = []byte("new"), "sha256:ba9876543210"
		v2, err := db.PutSecret(ctx, rec)
		if err != nil {
			t.Fatal(err)
		}
		if v2.Version != 2 || string(v2.Ciphertext) != "new" || !v2.CreatedAt.Equal(v1.CreatedAt) || v2.UpdatedAt.Before(v1.UpdatedAt) {
			t.Fatalf("v2 = %+v", v2)
		}
		got, err := db.GetSecret(ctx, "acme")
		if err != nil || got.Version != 2 || string(got.Ciphertext) != "new" || got.Fingerprint != rec.Fingerprint {
			t.Fatalf("get = %+v, %v", got, err)
		}

		if _, err := db.PutSecret(ctx, store.SecretRecord{Tenant: "ghost", Ciphertext: []byte("x"), Nonce: []byte("n")}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("put for unknown tenant = %v, want ErrNotFound", err)
		}
		for _, bad := range []store.SecretRecord{
			{Tenant: "acme", Nonce: []byte("n")},
			{Tenant: "acme", Ciphertext: []byte("x")},
			{Tenant: "acme", Ciphertext: make([]byte, store.MaxCiphertextBytes+1), Nonce: []byte("n")},
		} {
			if _, err := db.PutSecret(ctx, bad); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("put invalid = %v, want ErrInvalid", err)
			}
		}

		if err := db.DeleteSecret(ctx, "acme"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := db.GetSecret(ctx, "acme"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("get after delete = %v", err)
		}
	})
}

// Concurrent PutSecret calls each get their own version: no lost update, no duplicate, no error.
func TestSecretVersionsConcurrent(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.OpenWithTenants(t, driver, "acme")
		const writers = 20
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			versions []int64
		)
		for i := range writers {
			wg.Go(func() {
				r, err := db.PutSecret(ctx, store.SecretRecord{Tenant: "acme", Ciphertext: []byte{byte(i)}, Nonce: []byte("nonce"), Fingerprint: "fp"})
				if err != nil {
					t.Errorf("writer %d: %v", i, err)
					return
				}
				mu.Lock()
				versions = append(versions, r.Version)
				mu.Unlock()
			})
		}
		wg.Wait()
		slices.Sort(versions)
		want := make([]int64, writers)
		for i := range want {
			want[i] = int64(i + 1)
		}
		if !slices.Equal(versions, want) {
			t.Fatalf("versions = %v, want 1..%d each once", versions, writers)
		}
		got, err := db.GetSecret(ctx, "acme")
		if err != nil || got.Version != writers {
			t.Fatalf("final = %+v, %v; want version %d", got, err, writers)
		}
	})
}
