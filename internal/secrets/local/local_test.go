package local_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/secrets/local"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

const (
	keyA = "sk-ant-api03-local-A-0123456789abcdef"
	keyB = "sk-ant-api03-local-B-fedcba9876543210"
)

var fpKey = []byte("fingerprint-key-for-local-tests-01234")

func masterKey(t *testing.T) []byte {
	t.Helper()
	key, _, err := local.LoadOrGenerateMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newProvider(t *testing.T, db local.Store, mk []byte, logs *bytes.Buffer) *local.Provider {
	t.Helper()
	opts := local.Options{MasterKey: mk, FingerprintKey: fpKey, Store: db}
	if logs != nil {
		opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, err := local.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	storetest.Each(t, func(t *testing.T, driver string) {
		db := storetest.Open(t, driver)
		storetest.CreateTenant(t, db, "acme")
		p := newProvider(t, db, masterKey(t), nil)
		ctx := t.Context()

		if _, _, err := p.Get(ctx, "acme", ""); !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("Get before Put = %v; want ErrNotFound", err)
		}
		m1, err := p.Put(ctx, "acme", "ignored-keyref", keyA)
		if err != nil {
			t.Fatal(err)
		}
		if m1.Tenant != "acme" || m1.Version != "1" || m1.Provider != "local" || m1.Fingerprint != secrets.Fingerprint(fpKey, keyA) || m1.UpdatedAt.IsZero() {
			t.Fatalf("Put metadata = %+v", m1)
		}
		got, ver, err := p.Get(ctx, "acme", "")
		if err != nil || got != keyA || ver != "1" {
			t.Fatalf("Get = %q, %q, %v", got, ver, err)
		}
		m2, err := p.Put(ctx, "acme", "", keyB)
		if err != nil || m2.Version != "2" {
			t.Fatalf("second Put = %+v, %v", m2, err)
		}
		got, ver, err = p.Get(ctx, "acme", "other-keyref")
		if err != nil || got != keyB || ver != "2" {
			t.Fatalf("Get after rotation = %q, %q, %v", got, ver, err)
		}
		d, err := p.Describe(ctx, "acme", "")
		if err != nil || d.Fingerprint != secrets.Fingerprint(fpKey, keyB) || d.Version != "2" {
			t.Fatalf("Describe = %+v, %v", d, err)
		}
		rec, err := db.GetSecret(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(rec.Ciphertext, []byte(keyB)) || rec.Fingerprint != d.Fingerprint {
			t.Fatalf("stored record holds the plaintext or a wrong fingerprint")
		}
		if err := p.Delete(ctx, "acme", ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.Get(ctx, "acme", ""); !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("Get after Delete = %v", err)
		}
		if err := p.Delete(ctx, "acme", ""); !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("second Delete = %v", err)
		}
		if _, err := p.Describe(ctx, "acme", ""); !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("Describe after Delete = %v", err)
		}
	})
}

func TestPutValidation(t *testing.T) {
	db := storetest.Open(t, store.DriverSQLite)
	storetest.CreateTenant(t, db, "acme")
	p := newProvider(t, db, masterKey(t), nil)
	for _, v := range []string{"", "two words", "tab\there", "nl\n", strings.Repeat("k", secrets.MaxKeyBytes+1), "zero\u200bwidth", "\xff\xfe"} {
		if _, err := p.Put(t.Context(), "acme", "", v); !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("Put(%q) = %v; want ErrInvalid", v[:min(len(v), 10)], err)
		}
	}
	if _, err := p.Put(t.Context(), "acme", "", strings.Repeat("k", secrets.MaxKeyBytes)); err != nil {
		t.Errorf("Put of a %d-byte key: %v", secrets.MaxKeyBytes, err)
	}
	if _, err := p.Put(t.Context(), "ghost", "", keyA); !errors.Is(err, secrets.ErrInvalid) {
		t.Errorf("Put for a tenant that does not exist = %v; want ErrInvalid", err)
	}
	if _, err := p.Put(t.Context(), "Bad/Tenant", "", keyA); !errors.Is(err, secrets.ErrInvalid) {
		t.Errorf("Put for a malformed tenant = %v; want ErrInvalid", err)
	}
}

func TestWrongMasterKeyFails(t *testing.T) {
	db := storetest.Open(t, store.DriverSQLite)
	storetest.CreateTenant(t, db, "acme")
	logs := &bytes.Buffer{}
	if _, err := newProvider(t, db, masterKey(t), nil).Put(t.Context(), "acme", "", keyA); err != nil {
		t.Fatal(err)
	}
	other := newProvider(t, db, masterKey(t), logs)
	_, _, err := other.Get(t.Context(), "acme", "")
	if !errors.Is(err, secrets.ErrUnavailable) || !errors.Is(err, local.ErrDecrypt) {
		t.Fatalf("Get with another master key = %v; want ErrUnavailable+ErrDecrypt", err)
	}
	if _, err := other.Describe(t.Context(), "acme", ""); !errors.Is(err, local.ErrDecrypt) {
		t.Fatalf("Describe with another master key = %v", err)
	}
	if !strings.Contains(logs.String(), "decryption failed") || strings.Contains(logs.String(), keyA) {
		t.Fatalf("logs = %s", logs)
	}
}

func TestCiphertextBoundToTenant(t *testing.T) {
	db := storetest.Open(t, store.DriverSQLite)
	storetest.CreateTenant(t, db, "tenant-a")
	storetest.CreateTenant(t, db, "tenant-b")
	mk := masterKey(t)
	p := newProvider(t, db, mk, nil)
	ctx := t.Context()
	if _, err := p.Put(ctx, "tenant-a", "", keyA); err != nil {
		t.Fatal(err)
	}
	recA, err := db.GetSecret(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	// Someone with database access copies A's sealed key into B's row.
	moved := recA
	moved.Tenant = "tenant-b"
	if _, err := db.PutSecret(ctx, moved); err != nil {
		t.Fatal(err)
	}
	_, _, err = p.Get(ctx, "tenant-b", "")
	if !errors.Is(err, local.ErrDecrypt) || !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("Get of a ciphertext moved to another tenant = %v; want ErrDecrypt", err)
	}
	if got, _, err := p.Get(ctx, "tenant-a", ""); err != nil || got != keyA {
		t.Fatalf("tenant-a = %q, %v", got, err)
	}

	// Tampering is caught too.
	tampered := recA
	tampered.Ciphertext = bytes.Clone(recA.Ciphertext)
	tampered.Ciphertext[0] ^= 1
	if _, err := db.PutSecret(ctx, tampered); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Get(ctx, "tenant-a", ""); !errors.Is(err, local.ErrDecrypt) {
		t.Fatalf("Get of a tampered ciphertext = %v; want ErrDecrypt", err)
	}
}

// failingStore is a Store whose every call fails, for error mapping.
type failingStore struct{}

func (failingStore) GetSecret(context.Context, string) (store.SecretRecord, error) {
	return store.SecretRecord{}, errors.New("database is locked")
}
func (failingStore) PutSecret(context.Context, store.SecretRecord) (store.SecretRecord, error) {
	return store.SecretRecord{}, errors.New("database is locked")
}
func (failingStore) DeleteSecret(context.Context, string) error {
	return errors.New("database is locked")
}

func TestStoreFailureIsUnavailable(t *testing.T) {
	p := newProvider(t, failingStore{}, masterKey(t), nil)
	ctx := t.Context()
	if _, _, err := p.Get(ctx, "acme", ""); !errors.Is(err, secrets.ErrUnavailable) {
		t.Errorf("Get = %v", err)
	}
	if _, err := p.Put(ctx, "acme", "", keyA); !errors.Is(err, secrets.ErrUnavailable) {
		t.Errorf("Put = %v", err)
	}
	if err := p.Delete(ctx, "acme", ""); !errors.Is(err, secrets.ErrUnavailable) {
		t.Errorf("Delete = %v", err)
	}
}

func TestNewValidation(t *testing.T) {
	db := storetest.Open(t, store.DriverSQLite)
	for _, o := range []local.Options{
		{MasterKey: make([]byte, 16), FingerprintKey: fpKey, Store: db},
		{MasterKey: make([]byte, 32), Store: db},
		{MasterKey: make([]byte, 32), FingerprintKey: fpKey},
	} {
		if _, err := local.New(o); err == nil {
			t.Errorf("New accepted %d-byte master key, %d-byte fp key, store %v", len(o.MasterKey), len(o.FingerprintKey), o.Store != nil)
		}
	}
}

func TestMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "master.key")
	if err := local.GenerateMasterKey(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("generated key file mode = %04o; want 0600", st.Mode().Perm())
	}
	if dst, _ := os.Stat(filepath.Dir(path)); dst.Mode().Perm()&0o077 != 0 {
		t.Fatalf("created directory mode = %04o", dst.Mode().Perm())
	}
	k1, err := local.LoadMasterKey(path)
	if err != nil || len(k1) != 32 {
		t.Fatalf("LoadMasterKey = %d bytes, %v", len(k1), err)
	}
	if err := local.GenerateMasterKey(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("GenerateMasterKey over an existing file = %v; want ErrExist", err)
	}
	k2, created, err := local.LoadOrGenerateMasterKey(path)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("LoadOrGenerateMasterKey on existing = created %v, %v", created, err)
	}
	other := filepath.Join(dir, "other.key")
	k3, created, err := local.LoadOrGenerateMasterKey(other)
	if err != nil || !created || bytes.Equal(k1, k3) {
		t.Fatalf("LoadOrGenerateMasterKey new = created %v, %v", created, err)
	}

	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o602} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := local.LoadMasterKey(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("mode %04o: LoadMasterKey = %v; want a refusal naming the file", mode, err)
		}
		if _, _, err := local.LoadOrGenerateMasterKey(path); err == nil {
			t.Errorf("mode %04o: LoadOrGenerateMasterKey accepted it", mode)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := local.LoadMasterKey(path); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}
